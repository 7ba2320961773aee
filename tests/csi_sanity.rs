//! The CSI conformance suite, csi-sanity (kubernetes-csi/csi-test v5.1.0), against the real
//! plugin: the built `containix-csi` serves a socket in a temporary directory with the test
//! node's nix-daemon behind it, and csi-sanity runs its Identity and Node tests
//! (`--ginkgo.focus 'Node|Identity'`). Volumes it creates name a fixture closure from the test
//! node's store (`--csi.testvolumeparameters`), so its publish tests really mount a closure.
//!
//! csi-sanity is a prebuilt tool kept outside the repository, at `../shared/tools/csi-sanity`
//! relative to the repository root (see that folder's README); `$CONTAINIX_CSI_SANITY` names
//! another. A missing tool fails the test: conformance is not optional. Needs root (mounts) and
//! `cargo build --workspace --bins` first.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use containix_testkit::containerd::mounts_under;
use containix_testkit::fixtures::{Fixture, repo_root};
use containix_testkit::nix_daemon::NixDaemon;
use containix_tests::csi_bin;

/// Where csi-sanity is unless `$CONTAINIX_CSI_SANITY` says: `shared/tools/csi-sanity` beside the
/// repository (`../shared/tools` from its root), or beside a folder holding it (a git worktree
/// such as `/work/wt/<branch>` finds `/work/shared/tools`).
fn csi_sanity() -> PathBuf {
    if let Some(path) = std::env::var_os("CONTAINIX_CSI_SANITY") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "$CONTAINIX_CSI_SANITY names {}, which is not a file",
            path.display()
        );
        return path;
    }
    let root = repo_root();
    let candidates: Vec<PathBuf> = root
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/tools/csi-sanity"))
        .collect();
    candidates
        .iter()
        .find(|candidate| candidate.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "csi-sanity not found (looked at {}); it is the CSI conformance suite \
                 (kubernetes-csi/csi-test v5.1.0, `go build ./cmd/csi-sanity`), kept at \
                 ../shared/tools/csi-sanity next to the repository; or set $CONTAINIX_CSI_SANITY",
                candidates
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// The plugin process; killed if the test fails before stopping it.
struct Plugin {
    child: Child,
    log: PathBuf,
}

impl Plugin {
    fn start(dir: &Path, daemon_socket: &Path) -> (Plugin, PathBuf) {
        let config = dir.join("policy.toml");
        std::fs::write(
            &config,
            format!(
                "daemon-socket = {:?}\nstate-dir = {:?}\n",
                daemon_socket.display().to_string(),
                dir.join("policy-state").display().to_string()
            ),
        )
        .unwrap();
        let socket = dir.join("csi.sock");
        let log = dir.join("plugin.log");
        let child = Command::new(csi_bin())
            .arg(format!("--endpoint=unix://{}", socket.display()))
            .arg("--node-id=csi-sanity-node")
            .arg(format!("--state-dir={}", dir.join("state").display()))
            .arg(format!("--config={}", config.display()))
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut plugin = Plugin { child, log };
        let started = std::time::Instant::now();
        while !socket.exists() {
            if let Some(status) = plugin.child.try_wait().unwrap() {
                panic!("containix-csi exited with {status}: {}", plugin.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no socket: {}",
                plugin.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (plugin, socket)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "plugin exited with {status}: {}",
            self.log()
        );
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The counts of ginkgo's closing line, `... -- 25 Passed | 0 Failed | 0 Pending | 3 Skipped`.
fn summary(output: &str) -> Option<(u32, u32, u32)> {
    let line = output
        .lines()
        .rev()
        .find(|line| line.contains(" Passed | ") && line.contains(" Failed | "))?;
    let count = |label: &str| -> Option<u32> {
        line.split('|')
            .map(str::trim)
            .find_map(|part| part.strip_suffix(label))
            .and_then(|number| number.trim().rsplit(' ').next()?.parse().ok())
    };
    Some((count("Passed")?, count("Failed")?, count("Skipped")?))
}

#[test]
fn csi_sanity_passes_the_identity_and_node_suites() {
    let tool = csi_sanity();
    let built = Fixture::FileAndSymlink.build().unwrap();
    let daemon = NixDaemon::start_or_reuse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (plugin, socket) = Plugin::start(dir.path(), daemon.socket_path());

    // What csi-sanity passes as CreateVolume parameters, and so as the published volume's
    // context: a closure the node's store holds.
    let parameters = dir.path().join("volume-parameters.yaml");
    std::fs::write(
        &parameters,
        format!("storePaths: {}\n", built.out_path.display()),
    )
    .unwrap();
    let output = Command::new(&tool)
        .arg(format!("--csi.endpoint=unix://{}", socket.display()))
        .arg(format!(
            "--csi.mountdir={}",
            dir.path().join("mount").display()
        ))
        .arg(format!(
            "--csi.stagingdir={}",
            dir.path().join("staging").display()
        ))
        .arg(format!(
            "--csi.testvolumeparameters={}",
            parameters.display()
        ))
        .args([
            "--ginkgo.focus",
            "Node|Identity",
            "--ginkgo.no-color",
            "--ginkgo.v",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = format!(
        "{stdout}\n{}\nplugin log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        plugin.log()
    );
    let (passed, failed, skipped) =
        summary(&stdout).unwrap_or_else(|| panic!("no ginkgo summary in: {report}"));
    eprintln!("csi-sanity: {passed} passed, {failed} failed, {skipped} skipped");
    assert_eq!(failed, 0, "{report}");
    assert!(output.status.success(), "{report}");
    // Of the 28 Identity and Node specs, those for staging, expansion and a controller
    // service skip themselves (the plugin advertises none of them); the other 15 run, among
    // them the two that publish a volume of the fixture closure.
    assert!(passed >= 15, "{report}");
    for spec in [
        "NodeUnpublishVolume should remove target path",
        "NodeGetVolumeStats should fail when volume does not exist on the specified path",
    ] {
        assert!(stdout.contains(spec), "{spec:?} did not run: {report}");
    }

    // Everything the suite published was unpublished: no mount, no record, no GC root.
    assert_eq!(mounts_under(dir.path()), Vec::<PathBuf>::new());
    let volumes = dir.path().join("state/volumes");
    let records: Vec<_> = std::fs::read_dir(&volumes)
        .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(records.is_empty(), "records left: {records:?}");
    plugin.stop();
}

#[test]
fn the_summary_line_is_read() {
    let line = "FAIL! -- 3 Passed | 25 Failed | 0 Pending | 80 Skipped";
    assert_eq!(summary(line), Some((3, 25, 80)));
    let line = "SUCCESS! -- 25 Passed | 0 Failed | 0 Pending | 83 Skipped";
    assert_eq!(summary(line), Some((25, 0, 83)));
    assert_eq!(summary("nothing"), None);
}
