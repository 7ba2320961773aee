//! The `containix` binary's read-only commands against the real test node: resolve, sbom, spec,
//! image, and every command's help. Run `cargo build -p containix-cli` (or a workspace build)
//! first; `$CONTAINIX_BIN` overrides where the binary is looked up.

use containix_tests::containix_bin;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use containix_testkit::fixtures::{self, BUILD_LOG_LAST_WORDS, BUILD_LOG_MARKER, Built, Fixture};
use serde_json::Value;

fn containix(args: &[&str]) -> Output {
    containix_in(Path::new("/"), args)
}

fn containix_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(containix_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stdout_json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "status {:?}, stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

fn flake_ref(built: &Built) -> String {
    format!("path:{}", built.flake_source.display())
}

fn closure_strings(built: &Built) -> BTreeSet<String> {
    built
        .closure
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn resolve_json_lists_exactly_the_closure_with_sizes() {
    let built = fixtures::example_hello().unwrap();
    let json = stdout_json(&containix(&["resolve", "--json", &flake_ref(&built)]));
    let paths: BTreeSet<String> = json["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(paths, closure_strings(&built));
    let sum: u64 = json["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["narSize"].as_u64().unwrap())
        .sum();
    assert_eq!(json["narSize"].as_u64(), Some(sum));
    assert_eq!(json["count"].as_u64(), Some(built.closure.len() as u64));
    assert_eq!(json["roots"][0], built.out_path.display().to_string());
    assert_eq!(json["mainProgram"], "hello");
}

#[test]
fn resolve_text_store_paths_and_a_relative_ref_agree() {
    let built = fixtures::example_hello().unwrap();
    let text = containix(&["resolve", &flake_ref(&built)]);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    for member in &built.closure {
        assert!(text.contains(&member.display().to_string()), "{text}");
    }
    assert!(text.lines().last().unwrap().contains("total"), "{text}");

    let out = built.out_path.display().to_string();
    let by_path = stdout_json(&containix(&["resolve", "--json", "--store-paths", &out]));
    let base = built.flake_source.file_name().unwrap().to_str().unwrap();
    let relative = format!("path:./{base}");
    let by_relative = stdout_json(&containix_in(
        Path::new("/nix/store"),
        &["resolve", "--json", &relative],
    ));
    assert_eq!(by_path["paths"], by_relative["paths"]);
}

#[test]
fn resolve_reads_pod_annotations() {
    let built = fixtures::example_hello().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pod.annotations");
    std::fs::write(
        &file,
        format!(
            "# a pod\ncontainix.dev/store-paths.app = {}\ncontainix.dev/timeout=2m\n",
            built.out_path.display()
        ),
    )
    .unwrap();
    let json = stdout_json(&containix(&[
        "resolve",
        "--json",
        "--annotations",
        file.to_str().unwrap(),
    ]));
    assert_eq!(json["count"].as_u64(), Some(built.closure.len() as u64));
    let bad = containix(&[
        "resolve",
        "--annotations",
        file.to_str().unwrap(),
        "--container",
        "other",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("container `other`"));
}

#[test]
fn refs_outside_the_policy_are_refused_without_the_cli_container_prefix() {
    let refused = containix(&["resolve", "git+ssh://git@example.org/app"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.starts_with(
            "containix: flake ref `git+ssh://git@example.org/app` is not allowed on this node"
        ),
        "{stderr}"
    );
    assert!(stderr.contains(", path: ("), "{stderr}");
}

#[test]
fn progress_names_the_resolvers_steps() {
    let built = fixtures::example_hello().unwrap();
    let out = built.out_path.display().to_string();
    let output = containix(&["resolve", "--progress", "--store-paths", &out]);
    assert!(output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    // The path is valid, so the daemon fetches nothing and no "substituting" line shows.
    let steps = [
        "connecting to the Nix daemon at ",
        "protecting ",
        "querying the closure of ",
    ];
    // Steps may pass too quickly to be seen, but every line is one of them.
    assert!(stderr.lines().count() >= 1, "{stderr}");
    for line in stderr.lines() {
        assert!(steps.iter().any(|s| line.starts_with(s)), "{line}");
    }
}

#[test]
fn sbom_is_cyclonedx_of_the_closure() {
    let built = fixtures::example_hello().unwrap();
    let json = stdout_json(&containix(&["sbom", &flake_ref(&built)]));
    assert_eq!(json["bomFormat"], "CycloneDX");
    assert_eq!(json["specVersion"], "1.6");
    // The root is the subject; every other member a component (tests/sbom.rs checks the rest).
    assert_eq!(
        json["components"].as_array().unwrap().len() + 1,
        built.closure.len()
    );
}

#[test]
fn spec_prints_the_bundle_spec_or_only_the_plan() {
    let built = fixtures::example_hello().unwrap();
    let reference = flake_ref(&built);
    let spec = stdout_json(&containix(&[
        "spec",
        "--bundle",
        "/tmp/containix-spec-test",
        &reference,
        "--",
        "--loud",
    ]));
    let program = built.out_path.join("bin/hello").display().to_string();
    assert_eq!(
        spec["process"]["args"],
        serde_json::json!([program, "--loud"])
    );
    assert_eq!(spec["root"]["readonly"], true);
    let store = spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/nix/store")
        .expect("/nix/store is mounted");
    assert_eq!(store["source"], "/tmp/containix-spec-test/rootfs/nix/store");
    assert!(store["options"].as_array().unwrap().contains(&"ro".into()));

    let plan = stdout_json(&containix(&[
        "spec",
        "--diff",
        "--link",
        "bind",
        "--bundle",
        "/tmp/containix-spec-test",
        &reference,
    ]));
    assert_eq!(plan["args"], serde_json::json!([program]));
    let member_binds = plan["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["destination"]
                .as_str()
                .unwrap()
                .starts_with("/nix/store/")
        })
        .count();
    assert_eq!(member_binds, built.closure.len());
    assert!(!Path::new("/tmp/containix-spec-test").exists());
}

#[test]
fn image_empty_writes_a_tar_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("empty.tar");
    let first = containix(&["image", "empty", "--out", out.to_str().unwrap()]);
    assert!(first.status.success(), "{first:?}");
    let bytes = std::fs::read(&out).unwrap();
    // A tar archive: ustar magic in the first header, and the OCI layout's index.
    assert_eq!(&bytes[257..262], b"ustar");
    assert!(bytes.windows(10).any(|w| w == b"index.json"));
    let again = containix(&["image", "empty", "--out", out.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).starts_with("containix: --out"));
}

#[test]
fn every_command_has_help_with_an_example_and_exit_codes() {
    for command in [
        &[][..],
        &["resolve"],
        &["sbom"],
        &["assemble"],
        &["run"],
        &["spec"],
        &["image"],
        &["image", "empty"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let output = containix(&args);
        assert!(output.status.success(), "{args:?}");
        let help = String::from_utf8(output.stdout).unwrap();
        assert!(help.contains("Example"), "{args:?}: {help}");
        assert!(help.contains("Exit status"), "{args:?}: {help}");
    }
}

#[test]
fn usage_errors_exit_2_and_bad_values_exit_1() {
    let none = containix(&["resolve"]);
    assert_eq!(none.status.code(), Some(2));
    let option_like = containix(&["resolve", "--", "-x"]);
    assert_eq!(option_like.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&option_like.stderr);
    assert!(stderr.starts_with("containix: FLAKE-REF"), "{stderr}");
    let relative = containix(&["resolve", "--store-paths", "nix/store/x-y"]);
    assert_eq!(relative.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&relative.stderr).contains("--store-paths"));
    let two = containix(&["resolve", "github:o/r", "--packages", "curl"]);
    assert_eq!(two.status.code(), Some(2));
}

#[test]
fn verbose_shows_build_output_naming_the_derivation_and_keeps_stdout_clean() {
    // Nothing of this flake is built: each resolve below runs the build.
    let flake = Fixture::BuildLog.unbuilt_isolated().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("config.toml");
    std::fs::write(&policy, "realise = \"build\"\n").unwrap();
    let run = |rust_log: Option<&str>, args: &[&str]| {
        let mut command = Command::new(containix_bin());
        command.args(args).env("CONTAINIX_CONFIG", &policy);
        match rust_log {
            Some(value) => command.env("RUST_LOG", value),
            None => command.env_remove("RUST_LOG"),
        };
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output, stderr)
    };
    let broken = flake.flake_ref("broken");
    let last_words = format!("{BUILD_LOG_LAST_WORDS}{}", flake.salt);

    // By default only warnings and the error (which quotes the build's last lines, without
    // colours): no build output as log lines.
    let (output, stderr) = run(None, &["resolve", &broken]);
    assert!(!output.status.success());
    assert!(stderr.starts_with("containix: "), "{stderr}");
    assert!(stderr.contains(&last_words), "{stderr}");
    assert!(!stderr.contains("containix::nix"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr}");

    // -v (or RUST_LOG) shows it, naming the derivation.
    for (rust_log, args) in [
        (None, vec!["-v", "resolve", &broken]),
        (Some("containix::nix=info"), vec!["resolve", &broken]),
    ] {
        let (output, stderr) = run(rust_log, &args);
        assert!(!output.status.success());
        let line = stderr
            .lines()
            .find(|line| line.contains(&last_words))
            .unwrap_or_else(|| panic!("{rust_log:?}: {stderr}"));
        assert!(line.contains("INFO containix::nix"), "{line}");
        assert!(line.contains("drv=/nix/store/"), "{line}");
        assert!(line.contains("-build-log-broken-1.0.drv"), "{line}");
    }

    // A successful build with -v: the log is on stderr, stdout is only the JSON.
    let (output, stderr) = run(
        None,
        &["resolve", "--json", "-v", &flake.flake_ref("default")],
    );
    let json = stdout_json(&output);
    assert!(
        json["roots"][0]
            .as_str()
            .unwrap()
            .ends_with("-build-log-1.0"),
        "{json}"
    );
    let marker = format!("{BUILD_LOG_MARKER}{}", flake.salt);
    assert!(stderr.contains(&marker), "{stderr}");

    flake.delete_from_store().unwrap();
}
