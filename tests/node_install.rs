//! `containix node install` and `uninstall` against the test node's private containerd, set up
//! from a stock `containerd config default`: the installer adds exactly the handler, a second
//! run changes nothing, containerd starts with the result and runs a containix pod, and the
//! uninstall gives back the original file. Run `cargo build -p containix-cli -p containix-shim`
//! first (`$CONTAINIX_BIN` and `$CONTAINIX_SHIM_BIN` override where they are looked up).

use std::path::Path;
use std::process::Command;

use containix_core::image::oci_image::EMPTY_IMAGE_NAME;
use containix_core::node::containerd_config::{self, CREATED_MARKER};
use containix_testkit::containerd::{
    BaseConfig, CONTAINIX_RUNTIME_HANDLER, Containerd, ContainerdOptions, find_shim_binary,
};
use containix_testkit::cri::{ContainerLog, ContainerSpec, PodSandboxSpec};
use containix_testkit::fixtures;
use containix_tests::{LIMIT, containix_bin, stop_cleanly};
use serde_json::Value;

/// Runs `containix node <args>` with `--json` and returns its JSON, failing on a non-zero exit.
fn node(args: &[&str], paths: &[(&str, &Path)]) -> Value {
    let mut command = Command::new(containix_bin());
    command.arg("node").args(args).arg("--json");
    for (flag, path) in paths {
        command.arg(flag).arg(path);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "containix node {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn actions(report: &Value) -> Vec<String> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["action"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn install_on_a_stock_containerd_config_runs_a_containix_pod_and_uninstall_restores_it() {
    let hello = fixtures::example_hello().unwrap();
    let shim = find_shim_binary().expect("build containix-shim first");
    let prepared = Containerd::prepare(ContainerdOptions {
        base_config: BaseConfig::Stock,
        shim_binary: None,
        containix_policy: "allowed-flake-prefixes = [\"path:/nix/store/\"]\nrealise = \"build\"\n"
            .to_owned(),
        ..ContainerdOptions::default()
    })
    .unwrap();
    let layout = prepared.layout().clone();
    let config = layout.config();
    // An operator's comment, which the installer must keep.
    let original = format!(
        "# This node's containerd config.\n{}",
        std::fs::read_to_string(&config).unwrap()
    );
    std::fs::write(&config, &original).unwrap();
    assert!(containerd_config::check(&original).is_err());
    let policy = layout.containix_policy();
    let policy_text = std::fs::read_to_string(&policy).unwrap();
    let bin = layout.bin();
    let paths = [
        ("--containerd-config", config.as_path()),
        ("--shim-dir", bin.as_path()),
        ("--policy", policy.as_path()),
    ];
    let install = |extra: &[&str]| {
        let mut args = vec!["install", "--restart", "never", "--shim"];
        args.push(shim.to_str().unwrap());
        args.extend_from_slice(extra);
        node(&args, &paths)
    };

    // A dry run changes nothing.
    let dry = install(&["--dry-run"]);
    assert_eq!(dry["changed"], true);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
    assert!(!bin.join("containerd-shim-containix-v1").exists());

    // The first install: the shim and the handler; the existing policy stays as it is;
    // containerd is not running yet, so the image waits.
    let first = install(&[]);
    assert_eq!(actions(&first), ["install-shim", "write-containerd-config"]);
    assert_eq!(first["containerd"], "needed");
    assert_eq!(first["emptyImage"], "skipped");
    assert_eq!(std::fs::read_to_string(&policy).unwrap(), policy_text);
    let installed = std::fs::read_to_string(&config).unwrap();
    let handler = containerd_config::check(&installed).unwrap();
    assert_eq!(handler.version, 2);
    // Every original line is still there, in order; what was added is the handler table.
    let mut kept = original.lines().peekable();
    let mut added = Vec::new();
    for line in installed.lines() {
        if kept.peek() == Some(&line) {
            kept.next();
        } else {
            added.push(line.trim().to_owned());
        }
    }
    assert_eq!(kept.next(), None, "a line of the original was lost");
    assert!(
        added
            .iter()
            .filter(|line| line.starts_with('['))
            .all(|line| line.contains("runtimes.containix")),
        "{added:#?}"
    );
    assert!(!installed.starts_with(CREATED_MARKER));
    let shim_installed = std::fs::read(bin.join("containerd-shim-containix-v1")).unwrap();
    assert_eq!(shim_installed, std::fs::read(&shim).unwrap());

    // Twice changes nothing.
    let second = install(&[]);
    assert_eq!(second["changed"], false);
    assert_eq!(second["containerd"], "not-needed");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), installed);

    // containerd starts with the result and runs a containix pod from the example flake.
    let node_instance = prepared.start().await.unwrap();
    let cri = node_instance.cri();
    // The testkit imported the empty image; take it away so the installer must bring it.
    let removed = Command::new("ctr")
        .arg("--address")
        .arg(layout.socket())
        .args(["--namespace", "k8s.io", "images", "rm"])
        .arg(format!("docker.io/{EMPTY_IMAGE_NAME}"))
        .output()
        .unwrap();
    assert!(removed.status.success(), "{removed:?}");
    let third = install(&[]);
    assert_eq!(third["changed"], false);
    assert_eq!(third["emptyImage"], "imported");
    assert_eq!(install(&[])["emptyImage"], "present");

    let log_dir = node_instance.create_pod_log_dir("hello").unwrap();
    let pod_config = PodSandboxSpec::new("hello")
        .log_directory(&log_dir)
        .annotation("containix.dev/flake", &hello.flake_ref())
        .build();
    let pod = cri
        .run_pod_sandbox(&pod_config, CONTAINIX_RUNTIME_HANDLER)
        .await
        .unwrap();
    let spec = ContainerSpec::new("hello", EMPTY_IMAGE_NAME);
    let container = cri
        .create_container(&pod, &spec.build(), &pod_config)
        .await
        .unwrap();
    cri.start_container(&container).await.unwrap();
    let status = cri.wait_for_exit(&container, LIMIT).await.unwrap();
    let log = ContainerLog::read(&log_dir.join(spec.relative_log_path()))
        .await
        .unwrap();
    assert_eq!(status.exit_code, 0, "{log:?}");
    assert!(log.stdout().contains("Hello from containix!"), "{log:?}");
    cri.remove_container(&container).await.unwrap();
    cri.stop_pod_sandbox(&pod).await.unwrap();
    cri.remove_pod_sandbox(&pod).await.unwrap();

    // Uninstall gives back the very file, removes the shim and keeps the policy.
    let uninstalled = node(&["uninstall", "--restart", "never"], &paths);
    assert_eq!(
        actions(&uninstalled),
        ["write-containerd-config", "remove-shim"]
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
    assert!(!bin.join("containerd-shim-containix-v1").exists());
    assert_eq!(std::fs::read_to_string(&policy).unwrap(), policy_text);
    assert_eq!(
        node(&["uninstall", "--restart", "never"], &paths)["changed"],
        false
    );
    stop_cleanly(node_instance).await;
}

#[test]
fn install_refuses_a_config_it_cannot_edit_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "version = 2\nplugins = \"oops\"\n").unwrap();
    let shim = find_shim_binary().expect("build containix-shim first");
    let output = Command::new(containix_bin())
        .args(["node", "install", "--restart", "never", "--shim"])
        .arg(&shim)
        .arg("--containerd-config")
        .arg(&config)
        .arg("--shim-dir")
        .arg(dir.path().join("bin"))
        .arg("--policy")
        .arg(dir.path().join("policy.toml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("containix: ")
            && stderr.contains(
                "config.toml: containerd config: `plugins` must be a table, found string"
            ),
        "{stderr}"
    );
    // The plan failed before any change: no shim, no policy, the config as it was.
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["config.toml"]);

    let bad_flag = Command::new(containix_bin())
        .args(["node", "install", "--config-version", "4"])
        .output()
        .unwrap();
    assert_eq!(bad_flag.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_flag.stderr).contains("--config-version"));
}

#[test]
fn node_help_shows_examples_and_exit_status() {
    for args in [
        &["node", "--help"][..],
        &["node", "install", "--help"],
        &["node", "uninstall", "--help"],
    ] {
        let output = Command::new(containix_bin()).args(args).output().unwrap();
        let help = String::from_utf8(output.stdout).unwrap();
        assert!(help.contains("Example"), "{args:?}: {help}");
        assert!(help.contains("Exit status"), "{args:?}: {help}");
    }
}

/// A node tree as k3s or RKE2 leaves it (under a temporary `--host-root`): the agent's
/// containerd folder with the config they rendered, and `template` if given.
fn rancher_node(
    agent_dir: &str,
    rendered_version: i64,
    template: Option<(&str, &str)>,
) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(agent_dir.trim_start_matches('/'));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!("# File generated by k3s. DO NOT EDIT.\nversion = {rendered_version}\n"),
    )
    .unwrap();
    if let Some((name, text)) = template {
        std::fs::write(dir.join(name), text).unwrap();
    }
    root
}

/// Runs `containix node <args> --host-root <root>` (with the test's shim, no restart) and
/// returns stdout, failing on a non-zero exit.
fn node_on_tree(root: &Path, args: &[&str]) -> String {
    let shim = find_shim_binary().expect("build containix-shim first");
    let mut command = Command::new(containix_bin());
    command
        .arg("node")
        .args(args)
        .args(["--restart", "never", "--host-root"])
        .arg(root);
    if args[0] == "install" {
        command.arg("--shim").arg(&shim);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "containix node {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn on_k3s_the_handler_goes_into_a_new_v3_template_and_uninstall_removes_it() {
    let agent = "/var/lib/rancher/k3s/agent/etc/containerd";
    let root = rancher_node(agent, 3, None);
    let dir = root.path().join(agent.trim_start_matches('/'));
    let rendered = std::fs::read_to_string(dir.join("config.toml")).unwrap();

    // The dry run names k3s, the template and the unit, and shows the template as a diff.
    let dry = node_on_tree(root.path(), &["install", "--dry-run"]);
    assert!(
        dry.contains(&format!(
            "k3s: containerd's config is rendered from {}",
            dir.join("config-v3.toml.tmpl").display()
        )),
        "{dry}"
    );
    assert!(dry.contains("+{{ template \"base\" . }}"), "{dry}");
    assert!(
        dry.contains("+SystemdCgroup = {{ .SystemdCgroup }}"),
        "{dry}"
    );
    assert!(
        dry.contains("--restart never leaves the restart to you: `systemctl restart k3s` (or k3s-agent, whichever runs)"),
        "{dry}"
    );
    assert!(!dir.join("config-v3.toml.tmpl").exists());

    let report: Value =
        serde_json::from_str(&node_on_tree(root.path(), &["install", "--json"])).unwrap();
    assert_eq!(report["flavor"], "k3s");
    assert_eq!(report["containerd"], "needed");
    assert_eq!(
        report["emptyImage"], "skipped",
        "no k3s containerd runs here"
    );
    assert_eq!(
        actions(&report),
        ["install-shim", "write-policy", "write-containerd-config"]
    );
    let template = std::fs::read_to_string(dir.join("config-v3.toml.tmpl")).unwrap();
    assert!(
        template.starts_with(containerd_config::TEMPLATE_CREATED_MARKER),
        "{template}"
    );
    assert!(
        template
            .contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.containix]"),
        "{template}"
    );
    // k3s's own output is left to k3s, the shim and policy went under the host root.
    assert_eq!(
        std::fs::read_to_string(dir.join("config.toml")).unwrap(),
        rendered
    );
    assert!(
        root.path()
            .join("usr/local/bin/containerd-shim-containix-v1")
            .is_file()
    );
    assert!(root.path().join("etc/containix/policy.toml").is_file());

    let again: Value =
        serde_json::from_str(&node_on_tree(root.path(), &["install", "--json"])).unwrap();
    assert_eq!(again["changed"], false);

    let removed: Value =
        serde_json::from_str(&node_on_tree(root.path(), &["uninstall", "--json"])).unwrap();
    assert_eq!(
        actions(&removed),
        ["remove-containerd-config", "remove-shim"]
    );
    assert!(!dir.join("config-v3.toml.tmpl").exists());
}

#[test]
fn on_rke2_an_operator_s_v2_template_is_edited_in_place_and_restored() {
    let agent = "/var/lib/rancher/rke2/agent/etc/containerd";
    let operator = "{{ template \"base\" . }}\n\n\
        # Our GPU nodes.\n\
        [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]\n  \
        runtime_type = \"io.containerd.runc.v2\"\n\
        [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia.options]\n  \
        BinaryName = \"/usr/bin/nvidia-container-runtime\"\n  \
        SystemdCgroup = {{ .SystemdCgroup }}\n";
    // The rendered config says 3, but RKE2 reads the v2 template that exists.
    let root = rancher_node(agent, 3, Some(("config.toml.tmpl", operator)));
    let dir = root.path().join(agent.trim_start_matches('/'));

    let report: Value =
        serde_json::from_str(&node_on_tree(root.path(), &["install", "--json"])).unwrap();
    assert_eq!(report["flavor"], "rke2");
    let template = std::fs::read_to_string(dir.join("config.toml.tmpl")).unwrap();
    assert!(template.starts_with(operator), "{template}");
    assert!(
        template[operator.len()..]
            .contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.containix]"),
        "{template}"
    );
    assert!(!dir.join("config-v3.toml.tmpl").exists());
    assert_eq!(
        serde_json::from_str::<Value>(&node_on_tree(root.path(), &["install", "--json"])).unwrap()
            ["changed"],
        false
    );
    node_on_tree(root.path(), &["uninstall", "--json"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("config.toml.tmpl")).unwrap(),
        operator
    );
}

#[test]
fn on_k3s_before_its_first_start_the_version_must_be_given() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("var/lib/rancher/k3s/agent/etc/containerd");
    std::fs::create_dir_all(&dir).unwrap();
    let shim = find_shim_binary().expect("build containix-shim first");
    let output = Command::new(containix_bin())
        .args(["node", "install", "--restart", "never", "--host-root"])
        .arg(root.path())
        .arg("--shim")
        .arg(&shim)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--config-version"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing written"
    );
    node_on_tree(root.path(), &["install", "--config-version", "2", "--json"]);
    assert!(dir.join("config.toml.tmpl").is_file());
}
