//! Faults of the node's own parts during a pod's start, on a real node (containerd's CRI, the
//! shim, runc, a nix-daemon of the test's own substituting from the testkit's cache, and the
//! CSI plugin): the shim killed with SIGKILL during Task.Create, containerd restarted during
//! Task.Create, the state directory on a full filesystem, the CSI plugin killed during
//! NodePublishVolume, and a simulated reboot. The cache holds a start at the chosen moment (it
//! never answers the closure's narinfo) until the fault has happened.
//!
//! Each fault ends with the check that containix left nothing (files under its state dir,
//! mounts, workers, daemon connections) once the kubelet's clean-up has run, and with a start
//! that succeeds once the fault is gone.
//!
//! One node for the whole file: the faults run one after the other on it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use containix_csi::client::{CsiClient, connect};
use containix_csi::proto::volume_capability::{AccessMode, AccessType, MountVolume, access_mode};
use containix_csi::proto::{
    NodePublishVolumeRequest, NodeUnpublishVolumeRequest, VolumeCapability,
};
use containix_testkit::containerd::{instance_processes, mounts_under};
use containix_testkit::cri::ContainerSpec;
use containix_testkit::cri::proto::ContainerState;
use containix_testkit::faulty_cache::CacheFault;
use containix_testkit::pod::CriPod;
use containix_tests::node_faults::{
    CRI_DEADLINE, SubstitutingNode, assert_nothing_left, attempt, containix_message, output_of,
};
use containix_tests::{LIMIT, csi_bin, eventually, stop_cleanly};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Waits until the cache has held one more request than `before`.
async fn held(node: &SubstitutingNode, before: usize) {
    eventually("the cache to hold the start", async || {
        node.cache.stalls() > before
    })
    .await;
}

/// Starts attempts `first..` like a kubelet until one succeeds: its container and number.
async fn start_with_retries(pod: &CriPod, first: u32) -> (String, u32, Vec<String>) {
    let mut failures = Vec::new();
    for n in first..first + 10 {
        match attempt(pod, n, CRI_DEADLINE).await {
            Ok(id) => return (id, n, failures),
            Err(err) => failures.push(err),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("the container never started: {failures:#?}");
}

/// The shim serving the pod `pod` (the sandbox id is on its command line).
fn shim_of(node: &SubstitutingNode, pod: &CriPod) -> i32 {
    node.node
        .leftover_processes()
        .into_iter()
        .find(|p| p.command.contains("containerd-shim-containix-v1") && p.command.contains(&pod.id))
        .expect("the pod's shim")
        .pid
}

/// What a kubelet does with a pod whose sandbox died: stop and remove it (with its
/// containers).
async fn remove_pod(pod: CriPod) {
    for container in pod.cri.list_containers(Some(&pod.id)).await.unwrap() {
        let _ = pod.cri.stop_container(&container.id, 0).await;
        pod.cri.remove_container(&container.id).await.unwrap();
    }
    pod.cri.stop_pod_sandbox(&pod.id).await.unwrap();
    pod.cri.remove_pod_sandbox(&pod.id).await.unwrap();
}

async fn shim_killed_during_create(node: &mut SubstitutingNode) {
    node.cache.set_fault(CacheFault::StallNarinfo).unwrap();
    let pod = node.pod("shim-killed").await;
    let before = node.cache.stalls();
    let (result, ()) = tokio::join!(attempt(&pod, 0, CRI_DEADLINE), async {
        held(node, before).await;
        kill(Pid::from_raw(shim_of(node, &pod)), Signal::SIGKILL).unwrap();
    });
    // The shim is gone, so containerd answers, not containix.
    let error = result.expect_err("the start fails with its shim");
    assert!(error.contains("ttrpc: closed"), "{error}");

    // The kubelet replaces the dead sandbox: the old one goes, a new one comes.
    remove_pod(pod).await;
    node.cache.set_fault(CacheFault::Healthy).unwrap();
    let pod = node.pod("shim-killed-again").await;
    let (id, n, failures) = start_with_retries(&pod, 0).await;
    assert_eq!(failures, Vec::<String>::new(), "the resolution went on");
    let (code, stdout) = output_of(&pod, &id, n).await;
    assert_eq!(
        (code, stdout.starts_with("top over ")),
        (0, true),
        "{stdout}"
    );
    pod.remove(LIMIT).await.unwrap();
    assert_nothing_left(&node.node, "shim killed during Create").await;
    node.assert_no_daemon_work("shim killed during Create")
        .await;
    node.built.delete_from_store().unwrap();
}

async fn containerd_restarted_during_create(node: &mut SubstitutingNode) {
    node.cache.set_fault(CacheFault::StallNarinfo).unwrap();
    let pod = node.pod("containerd-restarted").await;
    let before = node.cache.stalls();
    let spec = containix_tests::node_faults::app(0);
    let id = pod
        .cri
        .create_container(&pod.id, &spec.build(), &pod.config)
        .await
        .unwrap();
    let (result, ()) = tokio::join!(
        pod.cri.start_container_within(&id, Some(CRI_DEADLINE)),
        async {
            held(node, before).await;
            node.node.restart().await.unwrap();
        }
    );
    // The CRI connection broke; the container never ran. containerd recovers it as created, or
    // as exited when it had begun to make the task before it stopped.
    let error = result
        .expect_err("the start fails with containerd")
        .to_string();
    assert!(error.contains("transport error"), "{error}");
    let pod = CriPod {
        cri: node.node.cri(),
        ..pod
    };
    let status = pod.cri.container_status(&id).await.unwrap();
    assert!(
        matches!(
            status.state(),
            ContainerState::ContainerCreated | ContainerState::ContainerExited
        ),
        "{status:?}"
    );
    node.cache.set_fault(CacheFault::Healthy).unwrap();
    let _ = pod.cri.remove_container(&id).await;
    let (id, n, failures) = start_with_retries(&pod, 1).await;
    assert_eq!(failures, Vec::<String>::new(), "the resolution went on");
    let (code, stdout) = output_of(&pod, &id, n).await;
    assert_eq!(
        (code, stdout.starts_with("top over ")),
        (0, true),
        "{stdout}"
    );
    pod.remove(LIMIT).await.unwrap();
    assert_nothing_left(&node.node, "containerd restarted during Create").await;
    node.assert_no_daemon_work("containerd restarted during Create")
        .await;
    node.built.delete_from_store().unwrap();
}

/// A tmpfs of `size` over `dir`, filled up to the last byte.
fn full_tmpfs(dir: &Path, size: &str) -> PathBuf {
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some(format!("size={size}").as_str()),
    )
    .unwrap();
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 4096];
    use std::io::Write;
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    filler
}

async fn state_dir_on_a_full_filesystem(node: &mut SubstitutingNode) {
    let state = node.node.layout().containix_state();
    std::fs::create_dir_all(&state).unwrap();
    let filler = full_tmpfs(&state, "1m");
    let pod = node.pod("disk-full").await;
    let error = attempt(&pod, 0, CRI_DEADLINE)
        .await
        .expect_err("the start fails on a full disk");
    let message = containix_message(&error)
        .unwrap_or_else(|| panic!("no containix message in {error}"))
        .to_owned();
    assert!(
        message.contains("in-flight resolutions") && message.contains("No space left on device"),
        "{message}"
    );
    std::fs::remove_file(&filler).unwrap();
    assert_nothing_left(&node.node, "state dir full").await;

    let id = attempt(&pod, 1, CRI_DEADLINE).await.unwrap();
    let (code, stdout) = output_of(&pod, &id, 1).await;
    assert_eq!(
        (code, stdout.starts_with("top over ")),
        (0, true),
        "{stdout}"
    );
    pod.remove(LIMIT).await.unwrap();
    assert_nothing_left(&node.node, "state dir full, after the pod").await;
    nix::mount::umount2(&state, nix::mount::MntFlags::empty()).unwrap();
    node.built.delete_from_store().unwrap();
}

/// The CSI plugin as its DaemonSet runs it: the node's policy (so it shares the node's store
/// views with the shim) and a state dir of its own.
struct Plugin {
    child: Child,
    dir: PathBuf,
}

impl Plugin {
    async fn start(node: &SubstitutingNode, dir: &Path) -> Plugin {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("csi.sock");
        let child = Command::new(csi_bin())
            .arg("--endpoint")
            .arg(format!("unix://{}", socket.display()))
            .args(["--node-id", "fault-node", "--log-level", "debug"])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--config")
            .arg(node.node.layout().containix_policy())
            .stdin(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("plugin.log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let plugin = Plugin {
            child,
            dir: dir.to_owned(),
        };
        eventually("the CSI plugin's socket", async || {
            connect(&socket).await.is_ok()
        })
        .await;
        plugin
    }

    async fn client(&self) -> CsiClient {
        connect(&self.dir.join("csi.sock")).await.unwrap()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The plugin's own records of published volumes.
    fn records(&self) -> Vec<PathBuf> {
        containix_tests::node_faults::state_leftovers(&self.dir.join("state"))
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        self.kill();
    }
}

fn publish_request(node: &SubstitutingNode, target: &Path) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: "csi-fault".into(),
        target_path: target.display().to_string(),
        volume_capability: Some(VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume::default())),
            access_mode: Some(AccessMode {
                mode: access_mode::Mode::SingleNodeWriter.into(),
            }),
        }),
        readonly: true,
        volume_context: [
            ("storePaths", node.built.out_path.display().to_string()),
            ("csi.storage.k8s.io/pod.name", "web-0".to_owned()),
            ("csi.storage.k8s.io/pod.namespace", "shop".to_owned()),
            ("csi.storage.k8s.io/ephemeral", "true".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        ..Default::default()
    }
}

async fn unpublish(client: &mut CsiClient, target: &Path) {
    client
        .node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: "csi-fault".into(),
            target_path: target.display().to_string(),
        })
        .await
        .unwrap();
}

async fn csi_plugin_killed_mid_publish(node: &mut SubstitutingNode) {
    let dir = tempfile::tempdir().unwrap();
    let mut plugin = Plugin::start(node, &dir.path().join("plugin")).await;
    let target = dir.path().join("pod/volumes/nix/mount");
    node.cache.set_fault(CacheFault::StallNarinfo).unwrap();
    let before = node.cache.stalls();
    let mut client = plugin.client().await;
    let (result, ()) = tokio::join!(
        client
            .node
            .node_publish_volume(publish_request(node, &target)),
        async {
            held(node, before).await;
            plugin.kill();
        }
    );
    result.expect_err("publish fails with its plugin");
    assert_eq!(mounts_under(&target), Vec::<PathBuf>::new());

    // The kubelet retries the publish against the restarted plugin.
    node.cache.set_fault(CacheFault::Healthy).unwrap();
    let plugin = Plugin::start(node, &plugin.dir.clone()).await;
    let mut client = plugin.client().await;
    client
        .node
        .node_publish_volume(publish_request(node, &target))
        .await
        .unwrap();
    let program = target.join("bin/diamond");
    assert!(program.exists(), "{program:?}");
    unpublish(&mut client, &target).await;
    assert_eq!(mounts_under(&target), Vec::<PathBuf>::new());
    assert!(!target.exists());
    assert_eq!(plugin.records(), Vec::<PathBuf>::new());
    assert_nothing_left(&node.node, "CSI plugin killed mid-publish").await;
    node.assert_no_daemon_work("CSI plugin killed mid-publish")
        .await;
    drop(plugin);
    node.built.delete_from_store().unwrap();
}

/// What a new boot id makes of the state containix recorded: every boot id written under
/// `state_dir` (view records, view users, container manifests) becomes another one. The
/// kernel's boot id cannot change without a reboot and containix has no seam to fake it, so the
/// state is aged instead.
fn age_boot_ids(state_dir: &Path) {
    let this_boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let this_boot = this_boot.trim();
    let mut dirs = vec![state_dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file()
                && let Ok(text) = std::fs::read_to_string(entry.path())
                && text.contains(this_boot)
            {
                let aged = text.replace(this_boot, "00000000-0000-4000-8000-0000000e0b00");
                std::fs::write(entry.path(), aged).unwrap();
            }
        }
    }
}

/// A reboot, as far as one machine can play it without rebooting: every process of the node
/// is killed (containerd, shims, containers, the CSI plugin, the nix-daemon), every mount under
/// the node's directories goes (container root filesystems, the volume, bind-tree views),
/// containerd's state and runc's root (on `/run`, a tmpfs, on a real node) are removed, and the
/// boot ids recorded in the containix state dir are aged ([`age_boot_ids`]); otherwise that
/// state dir stays as it was.
async fn simulated_reboot(node: &mut SubstitutingNode) {
    let dir = tempfile::tempdir().unwrap();
    let mut plugin = Plugin::start(node, &dir.path().join("plugin")).await;
    let target = dir.path().join("pod/volumes/nix/mount");
    let mut client = plugin.client().await;
    client
        .node
        .node_publish_volume(publish_request(node, &target))
        .await
        .unwrap();
    let pod = node.pod("before-reboot").await;
    let busybox = node
        .built
        .closure
        .iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .contains("-busybox")
        })
        .unwrap()
        .join("busybox");
    let sleeper = ContainerSpec::new(
        "sleeper",
        containix_core::image::oci_image::EMPTY_IMAGE_NAME,
    )
    .command([busybox.display().to_string(), "sleep".into(), "1000".into()]);
    pod.start(&sleeper).await.unwrap();

    // Power off.
    plugin.kill();
    let layout = node.node.layout().clone();
    for process in instance_processes(layout.dir()) {
        let _ = kill(Pid::from_raw(process.pid), Signal::SIGKILL);
    }
    eventually("every process of the node to die", async || {
        instance_processes(layout.dir()).is_empty()
    })
    .await;
    for mount in mounts_under(layout.dir())
        .into_iter()
        .chain(mounts_under(dir.path()))
        .rev()
    {
        nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH).unwrap();
    }
    for volatile in [layout.state(), layout.runc_root()] {
        let _ = std::fs::remove_dir_all(volatile);
    }
    age_boot_ids(&layout.containix_state());
    // Power on.
    node.daemon.restart().unwrap();
    node.node.restart().await.unwrap();
    let plugin = Plugin::start(node, &plugin.dir.clone()).await;

    // The kubelet publishes the pod's volume again, replaces the dead sandbox, and later
    // deletes the pod.
    let mut client = plugin.client().await;
    client
        .node
        .node_publish_volume(publish_request(node, &target))
        .await
        .unwrap();
    let pod = CriPod {
        cri: node.node.cri(),
        ..pod
    };
    remove_pod(pod).await;
    let pod = node.pod("after-reboot").await;
    let id = attempt(&pod, 0, CRI_DEADLINE).await.unwrap();
    let (code, stdout) = output_of(&pod, &id, 0).await;
    assert_eq!(
        (code, stdout.starts_with("top over ")),
        (0, true),
        "{stdout}"
    );
    pod.remove(LIMIT).await.unwrap();
    unpublish(&mut client, &target).await;
    assert_eq!(plugin.records(), Vec::<PathBuf>::new());
    assert_nothing_left(&node.node, "simulated reboot").await;
    drop(plugin);
    node.built.delete_from_store().unwrap();
}

#[tokio::test]
async fn node_faults_during_a_start_leave_nothing_and_a_retry_succeeds() {
    let mut node = SubstitutingNode::start().await;
    shim_killed_during_create(&mut node).await;
    containerd_restarted_during_create(&mut node).await;
    state_dir_on_a_full_filesystem(&mut node).await;
    csi_plugin_killed_mid_publish(&mut node).await;
    simulated_reboot(&mut node).await;
    stop_cleanly(node.node).await;
}
