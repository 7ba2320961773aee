//! The deploy manifests stay in step with the binaries: every `command:` of the installer
//! DaemonSets is a `containix` invocation the CLI accepts, the CSI plugin accepts its `args:` and
//! none of them insists on the policy file that the optional ConfigMap may not provide, and the
//! RuntimeClass names the handler the installer registers. Run `cargo build --workspace --bins`
//! first.

use std::path::{Path, PathBuf};
use std::process::Command;

use containix_core::node::containerd_config::HANDLER;
use containix_tests::{containix_bin, csi_bin};

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

/// Asserts that `binary` accepts `args`: clap validates every flag before it acts on `--help`.
fn assert_accepts(binary: &Path, args: &[String], file: &str) {
    let output = Command::new(binary)
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{file}: {args:?} is refused by {}: {}",
        binary.display(),
        String::from_utf8_lossy(&output.stderr)
    );
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
        assert_accepts(&containix_bin(), &command[1..], file);
        let text = std::fs::read_to_string(deploy(file)).unwrap();
        assert!(
            text.contains("hostPID: true") && text.contains("privileged: true"),
            "{file}"
        );
    }
}

/// The `args:` block list of the container named `container` in a manifest.
fn container_args(path: &Path, container: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text
        .lines()
        .skip_while(|line| line.trim() != format!("- name: {container}"))
        .skip_while(|line| line.trim() != "args:");
    let header = lines.next().expect("the container has args");
    let indent = header.len() - header.trim_start().len();
    lines
        .take_while(|line| line.len() - line.trim_start().len() > indent)
        .filter_map(|line| line.trim().strip_prefix("- "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn csi_plugin_accepts_its_args_and_needs_no_policy_file() {
    let manifest = deploy("csi/daemonset.yaml");
    let args = container_args(&manifest, "containix-csi");
    assert!(
        args.iter().any(|arg| arg.starts_with("--endpoint=")),
        "{args:?}"
    );
    assert_accepts(&csi_bin(), &args, "csi/daemonset.yaml");
    // The policy comes from an optional ConfigMap: a missing one must mean the defaults, which
    // the plugin only falls back to when no --config names the file.
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("name: containix-node-policy\n            optional: true"));
    assert!(
        !args.iter().any(|arg| arg.starts_with("--config")),
        "{args:?}"
    );
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
