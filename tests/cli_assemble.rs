//! `containix assemble` and `containix run` against the real test node: bundles that runc runs,
//! a rootfs holding exactly the closure, the container's view of the store, exit codes, and
//! bad inputs that leave nothing behind. Every test removes its bundles and leaves no mounts or
//! containers. Needs root and runc, and the `containix` binary built (`$CONTAINIX_BIN` overrides
//! where it is looked up).

use containix_tests::containix_bin;
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use containix_testkit::containerd::mounts_under;
use containix_testkit::fixtures::{self, Built, EXIT_CODE_FIXTURE_STATUS, Fixture};
use containix_testkit::nix_cli::NixCommand;
use serde_json::Value;

/// Runs `containix` with its temporary files in `tmp`, so tests can check it cleaned up.
fn containix(tmp: &Path, args: &[&str]) -> Output {
    Command::new(containix_bin())
        .args(args)
        .env("TMPDIR", tmp)
        .output()
        .unwrap()
}

fn succeeded(output: &Output) -> &Output {
    assert!(
        output.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn flake_ref(built: &Built) -> String {
    format!("path:{}", built.flake_source.display())
}

fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn closure_names(built: &Built) -> BTreeSet<String> {
    built
        .closure
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn container_id(test: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "cli-{test}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `runc run` of a bundle with a private state dir; returns its output.
fn runc_run(bundle: &Path, runc_root: &Path, id: &str) -> Output {
    Command::new("runc")
        .arg("--root")
        .arg(runc_root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .output()
        .unwrap()
}

/// The daemon's GC roots, as `link -> path` lines.
fn gc_roots() -> BTreeSet<String> {
    NixCommand::nix_store()
        .args(["--gc", "--print-roots"])
        .run()
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn assembled_bundles_run_under_runc_in_every_link_mode_and_are_removed() {
    let built = fixtures::example_hello().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for mode in ["hardlink", "copy", "bind"] {
        let bundle = tmp.path().join(format!("bundle-{mode}"));
        let out = succeeded(&containix(
            tmp.path(),
            &[
                "assemble",
                &flake_ref(&built),
                "--out",
                bundle.to_str().unwrap(),
                "--link",
                mode,
                "--json",
            ],
        ))
        .stdout
        .clone();
        let summary: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(summary["link"], mode);
        assert_eq!(summary["paths"].as_u64(), Some(built.closure.len() as u64));

        // The rootfs's store holds exactly the closure.
        let store = bundle.join("rootfs/nix/store");
        assert_eq!(listing(&store), closure_names(&built), "{mode}");
        let program = built.out_path.join("bin/hello");
        let in_rootfs = store.join(program.strip_prefix("/nix/store").unwrap());
        let same_inode = std::fs::metadata(&in_rootfs).unwrap().ino()
            == std::fs::metadata(&program).unwrap().ino();
        assert_eq!(same_inode, mode != "copy", "{mode}");
        let mounts = mounts_under(&bundle);
        assert_eq!(
            mounts.len(),
            if mode == "bind" {
                built.closure.len()
            } else {
                0
            },
            "{mode}: {mounts:?}"
        );

        // The bundle holds the closure's GC root, registered with the daemon.
        let link = bundle
            .join(".containix/gcroots/bundle")
            .join(built.out_path.file_name().unwrap());
        assert_eq!(std::fs::read_link(&link).unwrap(), built.out_path, "{mode}");
        let listed = format!("{} -> {}", link.display(), built.out_path.display());
        assert!(gc_roots().contains(&listed), "{mode}: {listed}");

        let runc_root = tmp.path().join(format!("runc-{mode}"));
        let run = runc_run(&bundle, &runc_root, &container_id(mode));
        assert!(
            stdout(succeeded(&run)).contains("Hello from containix!"),
            "{mode}"
        );

        succeeded(&containix(
            tmp.path(),
            &["assemble", "--remove", bundle.to_str().unwrap()],
        ));
        assert!(!bundle.exists(), "{mode}");
        assert!(mounts_under(tmp.path()).is_empty(), "{mode}");
        assert!(!gc_roots().contains(&listed), "{mode}: {listed}");
    }
}

#[test]
fn run_streams_output_and_propagates_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let hello = fixtures::example_hello().unwrap();
    let run = containix(tmp.path(), &["run", &flake_ref(&hello)]);
    assert!(stdout(succeeded(&run)).contains("Hello from containix!"));
    let by_name = containix(
        tmp.path(),
        &["run", "--entrypoint", "hello", &flake_ref(&hello)],
    );
    assert!(stdout(succeeded(&by_name)).contains("Hello from containix!"));

    let failing = Fixture::ExitCode.build().unwrap();
    let run = containix(tmp.path(), &["run", &flake_ref(&failing)]);
    assert_eq!(run.status.code(), Some(EXIT_CODE_FIXTURE_STATUS));
    assert!(listing(tmp.path()).is_empty(), "{:?}", listing(tmp.path()));
    assert!(mounts_under(tmp.path()).is_empty());
}

#[test]
fn the_container_sees_only_the_closure_and_cannot_write_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let hello = fixtures::example_hello().unwrap();
    let busybox = hello
        .closure
        .iter()
        .find(|p| fixtures::store_path_name(p) == Some("busybox"))
        .expect("busybox is in the example's closure")
        .display()
        .to_string();
    let outside = hello.out_path.display().to_string();
    let script = format!(
        "ls /nix/store; \
         if [ -e {outside} ]; then echo outside=visible; else echo outside=hidden; fi; \
         if echo x > /nix/store/new 2>/dev/null; then echo store=writable; else echo store=readonly; fi; \
         if echo x > {busybox}/new 2>/dev/null; then echo member=writable; else echo member=readonly; fi; \
         echo $PATH"
    );
    let run = containix(
        tmp.path(),
        &[
            "run",
            "--store-paths",
            &busybox,
            "--entrypoint",
            "/busybox",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    let out = stdout(succeeded(&run));
    let first_line = out.lines().next().unwrap();
    assert_eq!(
        first_line,
        Path::new(&busybox).file_name().unwrap().to_str().unwrap()
    );
    assert!(out.contains("outside=hidden"), "{out}");
    assert!(out.contains("store=readonly"), "{out}");
    assert!(out.contains("member=readonly"), "{out}");
    assert!(listing(tmp.path()).is_empty());
}

#[test]
fn bad_inputs_fail_clearly_and_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let hello = fixtures::example_hello().unwrap();
    let reference = flake_ref(&hello);
    let out = tmp.path().join("bundle");
    let out_arg = out.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "assemble",
                &reference,
                "--out",
                out_arg,
                "--entrypoint",
                "/bin/missing",
            ],
            "entrypoint \"/bin/missing\" was not found",
        ),
        (
            &[
                "assemble",
                "--store-paths",
                "nix/store/abc-x",
                "--out",
                out_arg,
            ],
            "--store-paths",
        ),
        (&["assemble", "--out", out_arg, "--", "-rf"], "no source"),
        (
            &["run", "--entrypoint", "missing", &reference],
            "entrypoint \"missing\" was not found",
        ),
    ];
    for (args, expected) in cases {
        let output = containix(tmp.path(), args);
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            listing(tmp.path()).is_empty(),
            "{args:?}: {:?}",
            listing(tmp.path())
        );
    }
    let option_like = Command::new(containix_bin())
        .args(["assemble", "--out", out_arg, "--", "-x"])
        .output()
        .unwrap();
    assert!(!option_like.status.success());

    // A non-empty --out is refused and left as it was.
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep"), "mine").unwrap();
    let output = containix(tmp.path(), &["assemble", &reference, "--out", out_arg]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not empty"));
    assert_eq!(listing(&out), BTreeSet::from(["keep".to_owned()]));

    // --remove refuses a directory that is not a bundle.
    let output = containix(tmp.path(), &["assemble", "--remove", out_arg]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a containix bundle"));
    assert!(out.join("keep").exists());

    // An empty --out is used, and a failure there empties it again without removing it.
    std::fs::remove_file(out.join("keep")).unwrap();
    let output = containix(
        tmp.path(),
        &[
            "assemble",
            &reference,
            "--out",
            out_arg,
            "--link",
            "bind",
            "--entrypoint",
            "nope",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(out.is_dir() && listing(&out).is_empty());
    assert!(mounts_under(tmp.path()).is_empty());
}

#[test]
fn run_stops_the_container_and_cleans_up_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let tmp = tempfile::tempdir().unwrap();
    let hello = fixtures::example_hello().unwrap();
    let busybox = hello
        .closure
        .iter()
        .find(|p| fixtures::store_path_name(p) == Some("busybox"))
        .unwrap()
        .display()
        .to_string();
    let mut child = Command::new(containix_bin())
        .args(["run", "--store-paths", &busybox, "--entrypoint", "/busybox"])
        .args(["--", "sh", "-c"])
        // The container keeps running until the signal arrives: exec the store path's busybox
        // (there is no /busybox at the container's root).
        .arg(format!("echo started; exec {busybox}/busybox sleep 600"))
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "started");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    assert!(listing(tmp.path()).is_empty(), "{:?}", listing(tmp.path()));
    assert!(mounts_under(tmp.path()).is_empty());
}
