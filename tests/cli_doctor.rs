//! `containix doctor` and `containix completions` against the real test node: a private
//! containerd with the containix handler, the shim on PATH, the test nix-daemon. Run
//! `cargo build -p containix-cli -p containix-shim` first; `$CONTAINIX_BIN` overrides where the
//! CLI is looked up (and `$CONTAINIX_SHIM_BIN` the shim).

use containix_tests::containix_bin;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output};

use containix_testkit::containerd::{Containerd, ContainerdOptions};
use containix_testkit::nix_daemon::NixDaemon;
use serde_json::Value;

/// Runs `containix doctor --json` against `config`, with `shim_dir` first on PATH and the
/// daemon at `daemon_socket`.
fn doctor(config: &Path, shim_dir: &Path, daemon_socket: &Path, policy: &Path) -> Output {
    let mut path = OsString::from(shim_dir);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    Command::new(containix_bin())
        .args(["doctor", "--json", "--containerd-config"])
        .arg(config)
        .env("PATH", path)
        .env("NIX_DAEMON_SOCKET_PATH", daemon_socket)
        .env("CONTAINIX_CONFIG", policy)
        .output()
        .unwrap()
}

/// The checks of a doctor run, by name: (status, detail, fix).
fn checks(output: &Output) -> Vec<(String, String, String, String)> {
    let json: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "doctor printed no JSON ({err}); stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let field = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (
                field("name"),
                field("status"),
                field("detail"),
                field("fix"),
            )
        })
        .collect()
}

fn check<'a>(
    checks: &'a [(String, String, String, String)],
    name: &str,
) -> &'a (String, String, String, String) {
    checks
        .iter()
        .find(|c| c.0 == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:?}"))
}

#[tokio::test]
async fn doctor_passes_a_ready_node_and_names_what_is_broken() {
    let daemon = NixDaemon::start_or_reuse().unwrap();
    let node = Containerd::start(ContainerdOptions::default())
        .await
        .unwrap_or_else(|err| panic!("starting the test containerd: {err}"));
    let layout = node.layout().clone();
    let config = layout.config();
    let policy = layout.containix_policy();

    let scratch = tempfile::tempdir().unwrap();
    let broken_config = scratch.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let without_handler: String = {
        // Drop the containix handler's table (its header and the lines up to the next table).
        let mut skipping = false;
        text.lines()
            .filter(|line| {
                let trimmed = line.trim_start();
                if trimmed.starts_with('[') {
                    skipping = trimmed.contains("runtimes.containix");
                }
                !skipping
            })
            .map(|line| format!("{line}\n"))
            .collect()
    };
    assert_ne!(text, without_handler);
    std::fs::write(&broken_config, without_handler).unwrap();

    let ready = doctor(&config, &layout.bin(), daemon.socket_path(), &policy);
    let broken = doctor(&broken_config, &layout.bin(), daemon.socket_path(), &policy);
    // The doctor searches the running containerd's PATH, not its own: a shell without the
    // shim's directory still finds it, and taking the shim off containerd's PATH fails.
    let empty_dir = scratch.path().join("no-shim");
    std::fs::create_dir(&empty_dir).unwrap();
    let shell_without_shim = doctor(&config, &empty_dir, daemon.socket_path(), &policy);
    let shim_link = layout.bin().join("containerd-shim-containix-v1");
    let shim_target = std::fs::read_link(&shim_link).unwrap();
    std::fs::remove_file(&shim_link).unwrap();
    let no_shim = doctor(&config, &layout.bin(), daemon.socket_path(), &policy);
    std::os::unix::fs::symlink(&shim_target, &shim_link).unwrap();
    let no_daemon = doctor(
        &config,
        &layout.bin(),
        &scratch.path().join("no-daemon.sock"),
        &policy,
    );
    let containerd_pid = node.pid().expect("containerd runs");
    let report = node.stop().await.unwrap();
    assert!(report.is_clean(), "{report:?}");

    let ready_checks = checks(&ready);
    for name in [
        "nix-daemon",
        "nix trust",
        "containerd",
        "containerd config",
        "containerd socket",
        "runc",
        "shim",
        "node policy",
        "oom_score_adj",
    ] {
        let (_, status, detail, _) = check(&ready_checks, name);
        assert_eq!(status, "pass", "{name}: {detail}");
    }
    assert!(check(&ready_checks, "nix-daemon").2.contains("Nix 2.8"));
    let shim_detail = &check(&ready_checks, "shim").2;
    assert!(
        shim_detail.contains(&layout.bin().display().to_string())
            && shim_detail.contains(&format!("PATH: containerd's (pid {containerd_pid})")),
        "{shim_detail}"
    );
    let (_, status, detail, _) = check(&checks(&shell_without_shim), "shim").clone();
    assert_eq!(status, "pass", "{detail}");
    assert_eq!(shell_without_shim.status.code(), Some(0));
    assert!(
        check(&ready_checks, "node policy")
            .2
            .contains(&policy.display().to_string())
    );
    assert!(
        ready_checks.iter().all(|c| c.1 != "fail"),
        "{ready_checks:?}"
    );
    assert_eq!(ready.status.code(), Some(0));

    let broken_checks = checks(&broken);
    let (_, status, detail, fix) = check(&broken_checks, "containerd config");
    assert_eq!(status, "fail");
    assert!(
        detail.contains("no `containix` runtime handler"),
        "{detail}"
    );
    assert!(
        fix.contains("runtime_type = \"io.containerd.containix.v1\"")
            && fix.contains("containix.dev/*")
            && fix.contains("containix node install"),
        "{fix}"
    );
    assert_eq!(broken.status.code(), Some(1));

    let no_shim_checks = checks(&no_shim);
    let (_, status, detail, fix) = check(&no_shim_checks, "shim");
    assert_eq!(status, "fail");
    assert!(
        detail.contains(&format!(
            "containerd-shim-containix-v1 is not on PATH: containerd (pid {containerd_pid}) \
             looks in {}:",
            layout.bin().display()
        )),
        "{detail}"
    );
    assert!(fix.contains("containix node install"), "{fix}");
    assert_eq!(no_shim.status.code(), Some(1));

    let no_daemon_checks = checks(&no_daemon);
    let (_, status, detail, fix) = check(&no_daemon_checks, "nix-daemon");
    assert_eq!(status, "fail");
    assert!(detail.contains("no-daemon.sock"), "{detail}");
    assert!(fix.contains("start nix-daemon"), "{fix}");
    assert_eq!(no_daemon.status.code(), Some(1));
}

#[test]
fn doctor_help_documents_examples_and_exit_status() {
    let help = Command::new(containix_bin())
        .args(["doctor", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("Example"), "{help}");
    assert!(help.contains("Exit status"), "{help}");
    assert!(help.contains("--containerd-config"), "{help}");
}

#[test]
fn bash_completions_cover_the_commands() {
    let output = Command::new(containix_bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let script = String::from_utf8(output.stdout).unwrap();
    assert!(script.contains("assemble"), "{script}");
    assert!(script.contains("doctor"));
    for shell in ["zsh", "fish"] {
        let output = Command::new(containix_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(
            output.status.success() && !output.stdout.is_empty(),
            "{shell}"
        );
    }
    let bad = Command::new(containix_bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
