//! The deploy manifests stay in step with the binaries: every `command:` of the installer
//! DaemonSets is a `containix` invocation the CLI accepts, and the RuntimeClass names the handler
//! the installer registers. Run `cargo build -p containix-cli` first.

use std::path::{Path, PathBuf};
use std::process::Command;

use containix_core::containerd_config::HANDLER;
use containix_tests::containix_bin;

fn deploy(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(relative)
}

/// The `command: [...]` flow lists of a manifest (JSON-compatible: double-quoted strings).
fn commands(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|line| line.trim().strip_prefix("command: "))
        .map(|list| serde_json::from_str(list).unwrap())
        .collect()
}

#[test]
fn installer_commands_are_accepted_by_the_cli() {
    for (file, subcommand) in [
        ("installer/daemonset.yaml", "install"),
        ("installer/uninstall.yaml", "uninstall"),
    ] {
        let commands = commands(&deploy(file));
        assert_eq!(commands.len(), 1, "{file}");
        let command = &commands[0];
        assert_eq!(command[..3], ["containix", "node", subcommand], "{file}");
        assert!(command.contains(&"--host-root".to_owned()), "{file}");
        // clap validates every flag before it acts on --help.
        let output = Command::new(containix_bin())
            .args(&command[1..])
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{file}: {command:?} is refused: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = std::fs::read_to_string(deploy(file)).unwrap();
        assert!(
            text.contains("hostPID: true") && text.contains("privileged: true"),
            "{file}"
        );
    }
}

#[test]
fn runtime_class_names_the_installed_handler() {
    let text = std::fs::read_to_string(deploy("kubernetes/runtimeclass.yaml")).unwrap();
    assert!(text.contains(&format!("\nhandler: {HANDLER}\n")), "{text}");
    let label = "containix.dev/node: \"true\"";
    assert!(text.contains(label));
    assert!(
        std::fs::read_to_string(deploy("installer/daemonset.yaml"))
            .unwrap()
            .contains(label)
    );
}
