//! The containerd half of the test node, end to end: a private containerd with CRI runs
//! host-network pods with real runc, from images we built and imported ourselves, and leaves no
//! process, mount or directory behind. Every test starts its own instance.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use containix_core::image::oci_image::EMPTY_IMAGE_NAME;
use containix_testkit::containerd::{
    BaseConfig, CONTAINIX_RUNTIME_HANDLER, CONTAINIX_RUNTIME_TYPE, CONTAINIX_SHIM_BINARY,
    Containerd, ContainerdOptions, instance_processes, mounts_under,
};
use containix_testkit::cri::proto::{self, ContainerState};
use containix_testkit::cri::{ContainerLog, ContainerSpec, CriClient, PodSandboxSpec};

/// A hang guard for containers that should exit promptly; not a performance assertion.
const EXIT_LIMIT: Duration = Duration::from_secs(60);

async fn start_node() -> Containerd {
    match Containerd::start(ContainerdOptions::default()).await {
        Ok(node) => node,
        Err(error) => panic!("starting the test containerd: {error}"),
    }
}

/// A running host-network pod sandbox with the default (runc) handler.
struct Pod {
    cri: CriClient,
    id: String,
    config: proto::PodSandboxConfig,
    log_dir: PathBuf,
}

impl Pod {
    async fn run(node: &Containerd, name: &str) -> Self {
        let log_dir = node.create_pod_log_dir(name).unwrap();
        let config = PodSandboxSpec::new(name).log_directory(&log_dir).build();
        let cri = node.cri();
        let id = cri.run_pod_sandbox(&config, "").await.unwrap();
        Self {
            cri,
            id,
            config,
            log_dir,
        }
    }

    async fn create(&self, spec: &ContainerSpec) -> String {
        let id = self
            .cri
            .create_container(&self.id, &spec.build(), &self.config)
            .await
            .unwrap();
        self.cri.start_container(&id).await.unwrap();
        id
    }

    /// Runs `spec` to completion: its final status and its log.
    async fn run_to_exit(&self, spec: &ContainerSpec) -> (proto::ContainerStatus, ContainerLog) {
        let id = self.create(spec).await;
        let status = self.cri.wait_for_exit(&id, EXIT_LIMIT).await.unwrap();
        let log = ContainerLog::read(&self.log_dir.join(spec.relative_log_path()))
            .await
            .unwrap();
        self.cri.remove_container(&id).await.unwrap();
        (status, log)
    }

    /// What a kubelet does when a pod goes away.
    async fn remove(self) {
        for container in self.cri.list_containers(Some(&self.id)).await.unwrap() {
            self.cri.stop_container(&container.id, 0).await.unwrap();
            self.cri.remove_container(&container.id).await.unwrap();
        }
        self.cri.stop_pod_sandbox(&self.id).await.unwrap();
        self.cri.remove_pod_sandbox(&self.id).await.unwrap();
    }
}

/// Stops the node and asserts that it stopped on its own and left nothing behind.
async fn stop_cleanly(node: Containerd) {
    assert_eq!(
        node.leftover_mounts(),
        Vec::<PathBuf>::new(),
        "mounts after removing all pods"
    );
    assert_eq!(
        node.leftover_processes(),
        vec![],
        "shims or containers after removing all pods"
    );
    let dir = node.layout().dir().to_owned();
    let report = node.stop().await.unwrap();
    assert!(report.is_clean(), "containerd needed forcing: {report:?}");
    assert_eq!(mounts_under(&dir), Vec::<PathBuf>::new());
    assert_eq!(instance_processes(&dir), vec![]);
    assert!(!dir.exists(), "{} still exists", dir.display());
}

#[tokio::test]
async fn a_container_echo_reaches_its_cri_log() {
    let node = start_node().await;
    let pod = Pod::run(&node, "echo").await;
    let spec = ContainerSpec::new("hello", node.busybox_image()).command(["echo", "hello"]);
    let (status, log) = pod.run_to_exit(&spec).await;
    assert_eq!(status.exit_code, 0);
    assert_eq!(log.stdout(), "hello");
    pod.remove().await;
    stop_cleanly(node).await;
}

#[tokio::test]
async fn exit_codes_and_stderr_propagate() {
    let node = start_node().await;
    let pod = Pod::run(&node, "exit-code").await;
    let spec = ContainerSpec::new("fails", node.busybox_image()).command([
        "sh",
        "-c",
        "echo oops >&2; exit 3",
    ]);
    let (status, log) = pod.run_to_exit(&spec).await;
    assert_eq!(status.exit_code, 3);
    assert_eq!(log.stderr(), "oops");
    pod.remove().await;
    stop_cleanly(node).await;
}

#[tokio::test]
async fn exec_sync_runs_in_a_long_running_container() {
    let node = start_node().await;
    let pod = Pod::run(&node, "exec").await;
    let spec = ContainerSpec::new("sleeper", node.busybox_image()).command(["sleep", "infinity"]);
    let id = pod.create(&spec).await;
    let status = pod.cri.container_status(&id).await.unwrap();
    assert_eq!(status.state(), ContainerState::ContainerRunning);

    let cmd = ["sh", "-c", "echo out; echo err >&2; exit 7"];
    let result = pod.cri.exec_sync(&id, &cmd, 30).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&result.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&result.stderr), "err\n");
    assert_eq!(result.exit_code, 7);

    pod.remove().await;
    stop_cleanly(node).await;
}

#[tokio::test]
async fn a_read_only_host_bind_is_readable_but_not_writable() {
    let host_dir = tempfile::tempdir().unwrap();
    std::fs::write(host_dir.path().join("data.txt"), "from the host\n").unwrap();

    let node = start_node().await;
    let pod = Pod::run(&node, "bind").await;
    let script = "cat /data/data.txt; \
                  if touch /data/new 2>/dev/null; then echo writable; else echo read-only; fi";
    let spec = ContainerSpec::new("reader", node.busybox_image())
        .command(["sh", "-c", script])
        .mount(host_dir.path(), "/data", true);
    let (status, log) = pod.run_to_exit(&spec).await;
    assert_eq!(status.exit_code, 0, "log: {log:?}");
    assert_eq!(log.stdout(), "from the host\nread-only");
    assert!(!host_dir.path().join("new").exists());
    pod.remove().await;
    stop_cleanly(node).await;
    assert!(
        host_dir.path().join("data.txt").exists(),
        "the host directory must survive"
    );
}

#[tokio::test]
async fn the_empty_image_is_listed_under_the_name_pod_specs_use() {
    let node = start_node().await;
    let cri = node.cri();
    let image = cri.image_status(EMPTY_IMAGE_NAME).await.unwrap();
    let image = image.unwrap_or_else(|| panic!("CRI does not know {EMPTY_IMAGE_NAME}"));
    let normalized = format!("docker.io/{EMPTY_IMAGE_NAME}");
    assert!(
        image.repo_tags.contains(&normalized),
        "{:?}",
        image.repo_tags
    );

    let listed = cri.list_images().await.unwrap();
    let tags: Vec<&str> = listed
        .iter()
        .flat_map(|i| &i.repo_tags)
        .map(String::as_str)
        .collect();
    for expected in [
        normalized.as_str(),
        node.pause_image(),
        node.busybox_image(),
    ] {
        assert!(tags.contains(&expected), "{expected} missing from {tags:?}");
    }
    stop_cleanly(node).await;
}

#[tokio::test]
async fn pods_left_running_are_removed_by_stop() {
    let node = start_node().await;
    let pod = Pod::run(&node, "abandoned").await;
    let spec = ContainerSpec::new("sleeper", node.busybox_image()).command(["sleep", "infinity"]);
    pod.create(&spec).await;
    assert!(
        !node.leftover_processes().is_empty(),
        "a running pod has shim processes"
    );
    assert!(
        !node.leftover_mounts().is_empty(),
        "a running container has a mounted rootfs"
    );

    let dir = node.layout().dir().to_owned();
    let report = node.stop().await.unwrap();
    assert!(report.is_clean(), "stop had to force: {report:?}");
    assert_eq!(mounts_under(&dir), Vec::<PathBuf>::new());
    assert_eq!(instance_processes(&dir), vec![]);
    assert!(!dir.exists(), "{} still exists", dir.display());
}

#[tokio::test]
async fn dropping_a_node_without_stop_kills_and_unmounts_everything() {
    let node = start_node().await;
    let pod = Pod::run(&node, "dropped").await;
    let spec = ContainerSpec::new("sleeper", node.busybox_image()).command(["sleep", "infinity"]);
    pod.create(&spec).await;
    let dir = node.layout().dir().to_owned();
    assert!(!instance_processes(&dir).is_empty());

    drop(node);
    assert_eq!(mounts_under(&dir), Vec::<PathBuf>::new());
    assert_eq!(instance_processes(&dir), vec![]);
    assert!(!dir.exists(), "{} still exists", dir.display());
}

#[tokio::test]
async fn the_configured_shim_binary_is_on_containerds_path() {
    let shim_dir = tempfile::tempdir().unwrap();
    let shim = shim_dir.path().join("built-shim");
    std::fs::write(&shim, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let options = ContainerdOptions {
        shim_binary: Some(shim.clone()),
        ..Default::default()
    };
    let node = Containerd::start(options).await.unwrap();
    let link = node.layout().bin().join(CONTAINIX_SHIM_BINARY);
    assert_eq!(std::fs::canonicalize(&link).unwrap(), shim);

    // containerd finds the handler and executes our binary, which fails: RunPodSandbox fails
    // for that reason, not for a missing handler or binary, and leaves nothing behind.
    let config = PodSandboxSpec::new("containix").build();
    let error = node
        .cri()
        .run_pod_sandbox(&config, CONTAINIX_RUNTIME_HANDLER)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("failed to start shim"), "{message}");
    assert!(message.contains("exit status 1"), "{message}");
    stop_cleanly(node).await;
}

/// Options for an instance configured from `containerd config default`, with no shim placed.
fn stock_options() -> ContainerdOptions {
    ContainerdOptions {
        base_config: BaseConfig::Stock,
        shim_binary: None,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_stock_default_config_runs_a_runc_pod_and_stops_cleanly() {
    let prepared = Containerd::prepare(stock_options()).unwrap();
    let layout = prepared.layout().clone();
    let config = std::fs::read_to_string(layout.config()).unwrap();
    // It is containerd's own default (in its version's layout), made private: no containix
    // handler, no shim on PATH.
    let own_table = match prepared.version().config_version() {
        2 => "[plugins.\"io.containerd.grpc.v1.cri\".containerd.untrusted_workload_runtime]",
        _ => "[plugins.'io.containerd.cri.v1.images'.pinned_images]",
    };
    assert!(config.contains(own_table), "{config}");
    assert!(!config.contains("runtimes.containix"), "{config}");
    assert!(!config.contains(CONTAINIX_RUNTIME_TYPE), "{config}");
    assert!(!layout.bin().join(CONTAINIX_SHIM_BINARY).exists());
    assert!(layout.containix_policy().is_file());

    let node = prepared.start().await.unwrap();
    let pod = Pod::run(&node, "stock").await;
    let spec = ContainerSpec::new("hello", node.busybox_image()).command(["echo", "from stock"]);
    let (status, log) = pod.run_to_exit(&spec).await;
    assert_eq!(status.exit_code, 0, "log: {log:?}");
    assert_eq!(log.stdout(), "from stock");
    // The handler the installer would add is not there yet.
    let error = node
        .cri()
        .run_pod_sandbox(
            &PodSandboxSpec::new("containix").build(),
            CONTAINIX_RUNTIME_HANDLER,
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no runtime for"), "{error}");
    pod.remove().await;
    stop_cleanly(node).await;
}

#[tokio::test]
async fn a_prepared_instance_starts_nothing_and_dropping_it_removes_its_directory() {
    for base_config in [BaseConfig::Rendered, BaseConfig::Stock] {
        let options = ContainerdOptions {
            base_config,
            ..Default::default()
        };
        let prepared = Containerd::prepare(options).unwrap();
        let dir = prepared.layout().dir().to_owned();
        assert!(prepared.layout().config().is_file(), "{base_config:?}");
        assert!(prepared.layout().bin().is_dir(), "{base_config:?}");
        assert_eq!(instance_processes(&dir), vec![], "{base_config:?}");
        assert!(!prepared.layout().socket().exists(), "{base_config:?}");
        drop(prepared);
        assert!(
            !dir.exists(),
            "{base_config:?}: {} still exists",
            dir.display()
        );
    }
}
