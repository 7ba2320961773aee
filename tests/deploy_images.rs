//! The images `scripts/build-images.sh` builds, run as the DaemonSets in `deploy/` declare them.
//!
//! The script writes the archives (from the workspace's built programs); they are imported
//! into the test node's containerd and listed under the very names the manifests use. Then the
//! CSI plugin's container and the installer's container run through CRI with their
//! DaemonSet's command, args, environment, privilege, host paths and mount propagation, as a
//! kubelet would start them: the plugin serves its socket in the kubelet's plugin folder and
//! publishes a fixture closure into a pod's volume folder, visible on the host; the installer
//! edits a copy of a stock containerd config under a host root of its own and reports what it
//! changed.
//!
//! Where a test cannot use the node's own paths it moves them, the way docs/csi.md says to move
//! the kubelet's root dir (a temporary one here, made a shared mount so Bidirectional
//! propagation is allowed). The installer gets `--restart never` added: restarting the test
//! machine's containerd is not the test's to do. Needs root and `cargo build --workspace
//! --bins` first.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use containix_core::VERSION;
use containix_core::image::oci_image::{EMPTY_IMAGE_NAME, parse_reference};
use containix_core::node::containerd_config;
use containix_csi::client::connect;
use containix_csi::proto::volume_capability::{AccessMode, AccessType, MountVolume, access_mode};
use containix_csi::proto::{
    NodePublishVolumeRequest, NodeUnpublishVolumeRequest, ProbeRequest, VolumeCapability,
};
use containix_testkit::containerd::{
    Containerd, ContainerdOptions, find_shim_binary, mounts_under,
};
use containix_testkit::cri::{ContainerLog, CriClient};
use containix_testkit::fixtures::{Fixture, repo_root};
use containix_testkit::nix_daemon::NixDaemon;
use containix_tests::manifests::{container_spec, deploy_dir, find_kind, sandbox, text};
use containix_tests::{containix_bin, eventually, stop_cleanly};
use nix::mount::{MntFlags, MsFlags};
use serde_json::Value;

const NODE_NAME: &str = "test-node";

/// Runs `scripts/build-images.sh` on the built programs, into a new folder.
fn build_images(out: &Path) {
    let bin_dir = containix_bin().parent().unwrap().to_owned();
    let output = Command::new(repo_root().join("scripts/build-images.sh"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg(out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "build-images.sh: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A directory bound onto itself and made a shared mount (what the kubelet's dir is on a node,
/// and what containerd requires under a Bidirectional host path). Unmounted on drop.
struct SharedDir(PathBuf);

impl SharedDir {
    fn new(path: PathBuf) -> SharedDir {
        std::fs::create_dir_all(&path).unwrap();
        nix::mount::mount(
            Some(&path),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        let shared = SharedDir(path);
        nix::mount::mount(
            None::<&str>,
            &shared.0,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap();
        shared
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

/// Imports every archive and checks CRI lists it under the manifests' name.
async fn import_all(node: &Containerd, images: &Path) {
    let cri = node.cri();
    for (file, name) in [
        (
            "containix-csi.oci.tar",
            format!("ghcr.io/containix/containix-csi:{VERSION}"),
        ),
        (
            "containix.oci.tar",
            format!("ghcr.io/containix/containix:{VERSION}"),
        ),
        ("containix-empty.oci.tar", EMPTY_IMAGE_NAME.to_owned()),
    ] {
        node.import_archive(&images.join(file)).await.unwrap();
        let normalised = parse_reference(&name).unwrap().to_string();
        // containerd 2's CRI learns of an imported image from an event, a moment later.
        let what = format!("CRI to list {name} after importing {file}");
        eventually(&what, async || {
            cri.image_status(&name)
                .await
                .unwrap()
                .is_some_and(|image| image.repo_tags.contains(&normalised))
        })
        .await;
    }
}

/// Starts `container` of the DaemonSet in `manifest` in a new pod; returns the pod, container
/// and log file.
async fn run_daemonset_container(
    cri: &CriClient,
    node: &Containerd,
    manifest: &str,
    container: &str,
    host_dir: impl Fn(&Value) -> PathBuf,
    extra_args: &[&str],
) -> (String, String, PathBuf) {
    let daemonset = find_kind(manifest, "DaemonSet", container);
    let pod = &daemonset["spec"]["template"]["spec"];
    let log_dir = node.create_pod_log_dir(container).unwrap();
    let pod_spec = sandbox(container, pod).log_directory(&log_dir);
    let fields = BTreeMap::from([("spec.nodeName", NODE_NAME)]);
    let spec = container_spec(pod, &pod_spec, container, &fields, host_dir);
    let mut config = spec.build();
    config
        .args
        .extend(extra_args.iter().map(|a| (*a).to_owned()));
    let sandbox_config = pod_spec.build();
    let sandbox_id = cri.run_pod_sandbox(&sandbox_config, "").await.unwrap();
    let container_id = cri
        .create_container(&sandbox_id, &config, &sandbox_config)
        .await
        .unwrap();
    cri.start_container(&container_id).await.unwrap();
    let log = log_dir.join(spec.relative_log_path());
    (sandbox_id, container_id, log)
}

/// Stops and removes the container and its pod; returns the container's exit code.
async fn stop(cri: &CriClient, sandbox: &str, container: &str) -> i32 {
    cri.stop_container(container, 10).await.unwrap();
    let status = cri.container_status(container).await.unwrap();
    cri.remove_container(container).await.unwrap();
    cri.stop_pod_sandbox(sandbox).await.unwrap();
    cri.remove_pod_sandbox(sandbox).await.unwrap();
    status.exit_code
}

async fn log_text(path: &Path) -> String {
    match ContainerLog::read(path).await {
        Ok(log) => format!("{}{}", log.stdout(), log.stderr()),
        Err(_) => String::new(),
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_built_images_run_as_their_daemonsets_declare_them() {
    let built = Fixture::FileAndSymlink.build().unwrap();
    NixDaemon::start_or_reuse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    build_images(&images);

    let node = Containerd::start(ContainerdOptions::default())
        .await
        .unwrap();
    let cri = node.cri();
    import_all(&node, &images).await;

    // --- The CSI plugin, with the kubelet's root dir and the state dir moved into the test's
    // directory (at the same paths inside the container as outside, as on a node).
    let kubelet = SharedDir::new(dir.path().join("kubelet"));
    // The state dir holds the node's store views, shared with the host both ways too.
    let state = SharedDir::new(dir.path().join("containix"));
    let policy = dir.path().join("policy-configmap");
    std::fs::create_dir_all(kubelet.0.join("pods")).unwrap();
    std::fs::create_dir_all(kubelet.0.join("plugins_registry")).unwrap();
    std::fs::create_dir_all(&policy).unwrap();
    let manifest = std::fs::read_to_string(deploy_dir().join("csi/daemonset.yaml"))
        .unwrap()
        .replace("/var/lib/kubelet", &kubelet.0.display().to_string())
        .replace("/var/lib/containix", &state.0.display().to_string());
    let (sandbox_id, container_id, log) = run_daemonset_container(
        &cri,
        &node,
        &manifest,
        "containix-csi",
        |volume| match volume["hostPath"]["path"].as_str() {
            Some(path) => PathBuf::from(path),
            None => policy.clone(), // the optional ConfigMap, absent: an empty dir
        },
        &[],
    )
    .await;
    let socket = kubelet.0.join("plugins/containix.dev/csi.sock");
    eventually("the plugin's socket", async || socket.exists()).await;
    let mut client = connect(&socket).await.unwrap();
    let probe = client.identity.probe(ProbeRequest {}).await.unwrap();
    assert_eq!(
        probe.into_inner().ready,
        Some(true),
        "{}",
        log_text(&log).await
    );

    // A pod's inline volume, published where the kubelet puts it.
    let target = kubelet
        .0
        .join("pods/uid-web-0/volumes/kubernetes.io~csi/nix/mount");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let request = NodePublishVolumeRequest {
        volume_id: "csi-image-test".into(),
        target_path: target.display().to_string(),
        volume_capability: Some(VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume::default())),
            access_mode: Some(AccessMode {
                mode: access_mode::Mode::SingleNodeWriter.into(),
            }),
        }),
        readonly: true,
        volume_context: HashMap::from([
            (
                "storePaths".to_owned(),
                built.out_path.display().to_string(),
            ),
            ("csi.storage.k8s.io/pod.name".to_owned(), "web-0".to_owned()),
            (
                "csi.storage.k8s.io/pod.namespace".to_owned(),
                "shop".to_owned(),
            ),
        ]),
        ..Default::default()
    };
    if let Err(status) = client.node.node_publish_volume(request).await {
        panic!("publish: {status}\n{}", log_text(&log).await);
    }
    // Made inside the container, the mounts are on the host (Bidirectional propagation).
    let mut closure: Vec<String> = built
        .closure
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    closure.sort();
    assert_eq!(listing(&target.join("store")), closure);
    let output = Command::new(target.join("bin/show-data")).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "data from a file store path\n"
    );
    client
        .node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: "csi-image-test".into(),
            target_path: target.display().to_string(),
        })
        .await
        .unwrap();
    assert!(!target.exists());
    assert_eq!(mounts_under(&kubelet.0.join("pods")), Vec::<PathBuf>::new());
    assert!(
        listing(&state.0.join("csi/volumes")).is_empty(),
        "records left"
    );
    drop(client);
    let code = stop(&cri, &sandbox_id, &container_id).await;
    assert_eq!(code, 0, "{}", log_text(&log).await);
    assert!(!socket.exists(), "the plugin removes its socket");

    // --- The installer, with the host's `/` a folder holding a stock containerd config.
    let host = dir.path().join("host");
    let config = host.join("etc/containerd/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let stock = include_str!(
        "../crates/containix-core/src/node/containerd_config/testdata/containerd-1.6-default.toml"
    );
    std::fs::write(&config, stock).unwrap();
    std::fs::create_dir_all(host.join("usr/local/bin")).unwrap();
    let manifest = std::fs::read_to_string(deploy_dir().join("installer/daemonset.yaml")).unwrap();
    let (sandbox_id, container_id, log) = run_daemonset_container(
        &cri,
        &node,
        &manifest,
        "install",
        |volume| {
            assert_eq!(text(&volume["hostPath"], "path"), "/");
            host.clone()
        },
        &["--restart", "never"],
    )
    .await;
    eventually("the installer's report", async || {
        log_text(&log).await.contains("containerd: restart it")
    })
    .await;
    let report = log_text(&log).await;
    assert!(
        report.contains("done: /host/etc/containerd/config.toml: add [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.containix]"),
        "{report}"
    );
    assert!(
        report.contains("done: install the shim /usr/local/bin/containerd-shim-containix-v1 as /host/usr/local/bin/containerd-shim-containix-v1"),
        "{report}"
    );
    containerd_config::check(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let shim = find_shim_binary().unwrap();
    assert_eq!(
        std::fs::read(host.join("usr/local/bin/containerd-shim-containix-v1")).unwrap(),
        std::fs::read(shim).unwrap(),
        "the image's shim is the built one"
    );
    assert!(host.join("etc/containix/policy.toml").is_file());
    // It waits for SIGTERM, then exits cleanly.
    let code = stop(&cri, &sandbox_id, &container_id).await;
    assert_eq!(code, 0, "{}", log_text(&log).await);

    stop_cleanly(node).await;
    drop(kubelet);
    drop(state);
    assert_eq!(mounts_under(dir.path()), Vec::<PathBuf>::new());
}
