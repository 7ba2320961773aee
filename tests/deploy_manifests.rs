//! The deploy manifests stay in step with the binaries and with each other: every manifest
//! parses; the installer DaemonSets' commands and the CSI plugin's args are invocations the
//! binaries accept; the paths the containers share (the CSI socket, the kubelet's plugin and
//! registration folders, the pods' folder, the store, the state dir, the policy, the host root)
//! agree between containers, volumes and flags, also after the documented move of the kubelet's
//! root dir; every DaemonSet is node infrastructure done right (priority, tolerations, a Linux
//! node selector, rolling updates, resources, probes, consistent `app.kubernetes.io/*` labels);
//! and the images are the ones `scripts/build-images.sh` builds, or pinned upstream sidecars.
//! Run `cargo build --workspace --bins` first.

use std::path::Path;
use std::process::Command;

use containix_core::VERSION;
use containix_core::node::containerd_config::HANDLER;
use containix_core::request::policy::DEFAULT_POLICY_PATH;
use containix_tests::manifests::{
    container, deploy_dir, documents, find_kind, manifest_files, strings, text, volume,
};
use containix_tests::{containix_bin, csi_bin};
use serde_json::Value;

/// Where a distribution keeps the kubelet's root dir when it moves it (k0s).
const MOVED_KUBELET_DIR: &str = "/var/lib/k0s/kubelet";

fn read(relative: &str) -> String {
    std::fs::read_to_string(deploy_dir().join(relative)).unwrap()
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

/// The value of `--flag=value` in `args`.
fn flag<'a>(args: &'a [String], name: &str) -> &'a str {
    args.iter()
        .find_map(|arg| arg.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in {args:?}"))
}

/// The mount path of volume `volume` in `container`.
fn mount_path<'a>(container: &'a Value, volume: &str) -> &'a str {
    container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume)
        .map(|m| text(m, "mountPath"))
        .unwrap_or_else(|| panic!("{} does not mount {volume}", container["name"]))
}

fn host_path<'a>(pod: &'a Value, name: &str) -> &'a str {
    text(&volume(pod, name)["hostPath"], "path")
}

#[test]
fn every_manifest_parses_and_names_what_it_is() {
    let files = manifest_files();
    assert!(files.len() >= 6, "{files:?}");
    for file in files {
        let what = file.display().to_string();
        let docs = documents(&std::fs::read_to_string(&file).unwrap(), &what);
        assert!(!docs.is_empty(), "{what}");
        for doc in docs {
            for field in ["apiVersion", "kind"] {
                assert!(doc[field].is_string(), "{what}: {field} in {doc}");
            }
            assert!(doc["metadata"]["name"].is_string(), "{what}: {doc}");
        }
    }
}

#[test]
fn installer_commands_are_accepted_by_the_cli_and_mount_the_host_root() {
    for (file, subcommand) in [
        ("installer/daemonset.yaml", "install"),
        ("installer/uninstall.yaml", "uninstall"),
    ] {
        let daemonset = find_kind(&read(file), "DaemonSet", file);
        let pod = &daemonset["spec"]["template"]["spec"];
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "{file}");
        let command = strings(&containers[0], "command");
        assert_eq!(command[..3], ["containix", "node", subcommand], "{file}");
        assert_accepts(&containix_bin(), &command[1..], file);
        // The host's `/` is mounted where --host-root says, and commands reach PID 1.
        let root = &command[command.iter().position(|a| a == "--host-root").unwrap() + 1];
        let mounted = containers[0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == root.as_str())
            .unwrap_or_else(|| panic!("{file}: nothing mounted at {root}"));
        assert_eq!(host_path(pod, text(mounted, "name")), "/", "{file}");
        assert_eq!(pod["hostPID"], true, "{file}");
        assert_eq!(
            containers[0]["securityContext"]["privileged"], true,
            "{file}"
        );
    }
}

/// The node warmer runs `containix prefetch` on the node's own paths, reading its list from the
/// ConfigMap beside it.
#[test]
fn the_node_warmer_prefetches_the_configmap_s_list_on_the_node_s_paths() {
    let file = "prefetch/daemonset.yaml";
    let manifest = read(file);
    let daemonset = find_kind(&manifest, "DaemonSet", file);
    let pod = &daemonset["spec"]["template"]["spec"];
    let prefetch = container(pod, "prefetch");
    let command = strings(prefetch, "command");
    assert_eq!(command[..2], ["containix", "prefetch"], "{file}");
    assert_accepts(&containix_bin(), &command[1..], file);
    for (volume, path) in [
        ("nix", "/nix"),
        ("state", "/var/lib/containix"),
        ("policy", "/etc/containix"),
    ] {
        assert_eq!(mount_path(prefetch, volume), path, "{file}: {volume}");
        assert_eq!(host_path(pod, volume), path, "{file}: {volume}");
    }
    let state = prefetch["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "state")
        .unwrap();
    assert_eq!(state["mountPropagation"], "Bidirectional", "{file}");
    let list = &command[command.iter().position(|a| a == "--from-file").unwrap() + 1];
    let dir = mount_path(prefetch, "refs");
    assert_eq!(list, &format!("{dir}/refs"), "{file}");
    let configmap = find_kind(&manifest, "ConfigMap", file);
    assert_eq!(
        volume(pod, "refs")["configMap"]["name"],
        configmap["metadata"]["name"]
    );
    assert!(configmap["data"]["refs"].is_string(), "{file}");
}

#[test]
fn csi_plugin_accepts_its_args_and_needs_no_policy_file() {
    let file = "csi/daemonset.yaml";
    let daemonset = find_kind(&read(file), "DaemonSet", file);
    let pod = &daemonset["spec"]["template"]["spec"];
    let args = strings(container(pod, "containix-csi"), "args");
    assert_accepts(&csi_bin(), &args, file);
    // The policy comes from an optional ConfigMap: a missing one must mean the defaults, which
    // the plugin only falls back to when no --config names the file.
    let config = volume(pod, "config");
    assert_eq!(config["configMap"]["optional"], true);
    assert!(
        !args.iter().any(|arg| arg.starts_with("--config")),
        "{args:?}"
    );
}

/// The paths the CSI DaemonSet's containers share agree with each other and with the kubelet's
/// layout under `kubelet_dir`.
fn check_csi_paths(text_of_manifest: &str, kubelet_dir: &str) {
    let daemonset = find_kind(text_of_manifest, "DaemonSet", "csi/daemonset.yaml");
    let pod = &daemonset["spec"]["template"]["spec"];
    let plugin = container(pod, "containix-csi");
    let registrar = container(pod, "node-driver-registrar");
    let probe = container(pod, "liveness-probe");
    let plugin_args = strings(plugin, "args");
    let registrar_args = strings(registrar, "args");
    let probe_args = strings(probe, "args");

    // One socket, in the plugin-dir volume, wherever each container mounts it.
    let socket = flag(&plugin_args, "--endpoint")
        .strip_prefix("unix://")
        .unwrap();
    let socket_dir = Path::new(socket).parent().unwrap();
    for (container, address) in [
        (plugin, socket),
        (registrar, flag(&registrar_args, "--csi-address")),
        (probe, flag(&probe_args, "--csi-address")),
    ] {
        assert_eq!(
            Path::new(address).parent().unwrap(),
            Path::new(mount_path(container, "plugin-dir")),
            "{}",
            container["name"]
        );
        assert_eq!(
            Path::new(address).file_name(),
            Path::new(socket).file_name()
        );
    }
    assert_eq!(Path::new(mount_path(plugin, "plugin-dir")), socket_dir);
    // The kubelet reaches the same socket at the plugin-dir's host path.
    let plugin_dir = host_path(pod, "plugin-dir");
    assert_eq!(plugin_dir, format!("{kubelet_dir}/plugins/containix.dev"));
    assert_eq!(
        Path::new(flag(&registrar_args, "--kubelet-registration-path")),
        Path::new(plugin_dir).join(Path::new(socket).file_name().unwrap())
    );
    assert_eq!(
        host_path(pod, "registration-dir"),
        format!("{kubelet_dir}/plugins_registry")
    );
    assert_eq!(mount_path(registrar, "registration-dir"), "/registration");

    // Publish targets: the kubelet's pods folder, at the same path inside, propagating back.
    let pods = host_path(pod, "pods-dir");
    assert_eq!(pods, format!("{kubelet_dir}/pods"));
    assert_eq!(mount_path(plugin, "pods-dir"), pods);
    let pods_mount = plugin["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "pods-dir")
        .unwrap();
    assert_eq!(pods_mount["mountPropagation"], "Bidirectional");
    assert_eq!(plugin["securityContext"]["privileged"], true);

    // The store and the state dir at the host's own paths (binds and GC root links name them).
    assert_eq!(host_path(pod, "nix"), "/nix");
    assert_eq!(mount_path(plugin, "nix"), "/nix");
    let state = host_path(pod, "state-dir");
    assert_eq!(mount_path(plugin, "state-dir"), state);
    assert!(Path::new(flag(&plugin_args, "--state-dir")).starts_with(state));
    // The policy where the plugin looks for it by default.
    assert_eq!(
        Path::new(mount_path(plugin, "config")),
        Path::new(DEFAULT_POLICY_PATH).parent().unwrap()
    );

    // The kubelet's probe reaches livenessprobe's port, which asks the plugin's Probe.
    let health_port: i64 = flag(&probe_args, "--health-port").parse().unwrap();
    let port_named = |container: &Value, name: &str| -> i64 {
        container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_i64())
            .unwrap_or_else(|| panic!("no port {name}"))
    };
    let probe_port = text(&plugin["livenessProbe"]["httpGet"], "port");
    assert_eq!(port_named(plugin, probe_port), health_port);
    let registrar_port = text(&registrar["livenessProbe"]["httpGet"], "port");
    assert_eq!(
        format!(":{}", port_named(registrar, registrar_port)),
        flag(&registrar_args, "--http-endpoint")
    );
}

#[test]
fn csi_containers_agree_on_every_shared_path_also_with_a_moved_kubelet_dir() {
    let manifest = read("csi/daemonset.yaml");
    check_csi_paths(&manifest, "/var/lib/kubelet");
    // The documented way to move the kubelet's root dir: replace it everywhere.
    let sed = format!("sed 's|/var/lib/kubelet|{MOVED_KUBELET_DIR}|g' deploy/csi/daemonset.yaml");
    assert!(manifest.contains(&sed), "the manifest documents: {sed}");
    check_csi_paths(
        &manifest.replace("/var/lib/kubelet", MOVED_KUBELET_DIR),
        MOVED_KUBELET_DIR,
    );
}

/// Every DaemonSet as node infrastructure: critical priority, every taint tolerated, Linux
/// nodes only, rolling updates, requests and limits for each container, and one set of
/// `app.kubernetes.io/*` labels on the object, its selector and its pods.
#[test]
fn daemonsets_are_node_infrastructure_with_consistent_labels() {
    let mut daemonsets = 0;
    for file in manifest_files() {
        let what = file.display().to_string();
        for doc in documents(&std::fs::read_to_string(&file).unwrap(), &what) {
            if doc["kind"] == "Pod" {
                continue; // an example workload, not part of containix
            }
            let labels = &doc["metadata"]["labels"];
            assert_eq!(
                labels["app.kubernetes.io/part-of"], "containix",
                "{what}: {doc}"
            );
            assert_eq!(labels["app.kubernetes.io/version"], VERSION, "{what}");
            assert!(labels["app.kubernetes.io/name"].is_string(), "{what}");
            assert!(labels["app.kubernetes.io/component"].is_string(), "{what}");
            if doc["kind"] != "DaemonSet" {
                continue;
            }
            daemonsets += 1;
            let spec = &doc["spec"];
            let template_labels = &spec["template"]["metadata"]["labels"];
            assert_eq!(template_labels, labels, "{what}: pod labels");
            for (key, value) in spec["selector"]["matchLabels"].as_object().unwrap() {
                assert_eq!(&template_labels[key], value, "{what}: selector {key}");
                assert_ne!(
                    key, "app.kubernetes.io/version",
                    "{what}: selectors are immutable"
                );
            }
            assert_eq!(spec["updateStrategy"]["type"], "RollingUpdate", "{what}");
            let pod = &spec["template"]["spec"];
            assert_eq!(pod["priorityClassName"], "system-node-critical", "{what}");
            assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux", "{what}");
            let tolerates_all = pod["tolerations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["operator"] == "Exists" && t.get("key").is_none());
            assert!(tolerates_all, "{what}: tolerations");
            for container in pod["containers"].as_array().unwrap() {
                let resources = &container["resources"];
                let name = &container["name"];
                assert!(resources["requests"]["cpu"].is_string(), "{what} {name}");
                assert!(resources["requests"]["memory"].is_string(), "{what} {name}");
                assert!(resources["limits"]["memory"].is_string(), "{what} {name}");
            }
        }
    }
    assert_eq!(daemonsets, 4);
    // The CSI plugin's containers all have liveness probes (livenessprobe is the plugin's).
    let csi = find_kind(&read("csi/daemonset.yaml"), "DaemonSet", "csi");
    for name in ["containix-csi", "node-driver-registrar"] {
        let probe = &container(&csi["spec"]["template"]["spec"], name)["livenessProbe"];
        assert!(probe["httpGet"].is_object(), "{name}");
    }
}

/// Each image is one this repository builds (one namespace, the crate version) or an upstream
/// sidecar pinned at its own registry; the README names the same.
#[test]
fn images_are_ours_at_the_crate_version_or_pinned_upstream_sidecars() {
    let ours = [
        format!("ghcr.io/containix/containix-csi:{VERSION}"),
        format!("ghcr.io/containix/containix:{VERSION}"),
    ];
    let mut named = Vec::new();
    for file in manifest_files() {
        let what = file.display().to_string();
        for doc in documents(&std::fs::read_to_string(&file).unwrap(), &what) {
            let Some(containers) = doc["spec"]["template"]["spec"]["containers"].as_array() else {
                continue;
            };
            for container in containers {
                let image = text(container, "image").to_owned();
                let upstream = image.starts_with("registry.k8s.io/sig-storage/")
                    && !image.ends_with(":latest")
                    && image.contains(":v");
                assert!(ours.contains(&image) || upstream, "{what}: {image}");
                named.push(image);
            }
        }
    }
    for image in &ours {
        assert!(named.contains(image), "no manifest names {image}");
    }
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    for image in &ours {
        assert!(
            readme.contains(image.as_str()),
            "README does not name {image}"
        );
    }
    assert!(readme.contains("containix/empty:1.0.0"));
    assert!(
        !readme.contains("containix/empty:0."),
        "README names an old empty image"
    );
}

#[test]
fn runtime_class_names_the_installed_handler() {
    let runtime_class = find_kind(
        &read("kubernetes/runtimeclass.yaml"),
        "RuntimeClass",
        "runtimeclass",
    );
    assert_eq!(runtime_class["handler"], HANDLER);
    let label = &runtime_class["scheduling"]["nodeSelector"]["containix.dev/node"];
    assert_eq!(label, "true");
    let installer = find_kind(&read("installer/daemonset.yaml"), "DaemonSet", "installer");
    assert_eq!(
        &installer["spec"]["template"]["spec"]["nodeSelector"]["containix.dev/node"],
        label
    );
}

#[test]
fn the_csi_driver_is_node_only_and_ephemeral() {
    let driver = find_kind(&read("csi/csidriver.yaml"), "CSIDriver", "csidriver");
    assert_eq!(driver["metadata"]["name"], containix_csi_driver_name());
    assert_eq!(driver["spec"]["attachRequired"], false);
    assert_eq!(driver["spec"]["podInfoOnMount"], true);
    assert_eq!(
        driver["spec"]["volumeLifecycleModes"],
        serde_json::json!(["Ephemeral"])
    );
}

fn containix_csi_driver_name() -> &'static str {
    containix_csi::DRIVER_NAME
}
