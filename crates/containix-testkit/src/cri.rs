//! A CRI (`runtime.v1`) client over a Unix socket, as a kubelet would use it.
//!
//! [`proto`] holds the generated messages and clients of our trimmed `proto/cri.proto`.
//! [`CriClient`] wraps them in calls that return the interesting field, and [`PodSandboxSpec`] /
//! [`ContainerSpec`] build the configs a kubelet would send for a host-network pod.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Messages and gRPC clients generated from `proto/cri.proto` (package `runtime.v1`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("runtime.v1");
}

use proto::image_service_client::ImageServiceClient;
use proto::runtime_service_client::RuntimeServiceClient;

/// The CRI API version this client speaks.
pub const CRI_API_VERSION: &str = "v1";

/// How often [`CriClient::wait_for_exit`] polls the container status.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Why a CRI call failed.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The socket could not be connected.
    #[error("connecting to the CRI socket {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The runtime answered an RPC with an error status.
    #[error("CRI {rpc} failed: {status}")]
    Rpc {
        /// The RPC name, e.g. `RunPodSandbox`.
        rpc: &'static str,
        /// The status the runtime returned.
        status: Box<tonic::Status>,
    },
    /// The runtime's answer lacks a field the protocol says it sends.
    #[error("CRI {rpc} answered without {field}")]
    MissingField {
        /// The RPC name.
        rpc: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// A container did not exit within the given bound.
    #[error("container {container_id} has not exited after {waited:?} (state {state:?})")]
    NotExited {
        /// The container.
        container_id: String,
        /// How long we waited.
        waited: Duration,
        /// Its last observed state.
        state: proto::ContainerState,
    },
    /// A container log file could not be read.
    #[error("reading the container log {path}: {source}")]
    ReadLog {
        /// The log file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A container log line is not `<timestamp> <stream> <P|F> <text>`.
    #[error(
        "container log line {line_number}: expected `<timestamp> <stream> <P|F> <text>`, got {line:?}"
    )]
    MalformedLogLine {
        /// 1-based line number.
        line_number: usize,
        /// The offending line.
        line: String,
    },
}

type Result<T, E = CriError> = std::result::Result<T, E>;

fn rpc_error(rpc: &'static str) -> impl FnOnce(tonic::Status) -> CriError {
    move |status| CriError::Rpc {
        rpc,
        status: Box::new(status),
    }
}

/// A connected CRI client. Cloning is cheap and shares the connection.
#[derive(Debug, Clone)]
pub struct CriClient {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl CriClient {
    /// Connects to the CRI gRPC server listening on the Unix socket `socket`.
    pub async fn connect(socket: &Path) -> Result<Self> {
        let path = socket.to_owned();
        // The URI is required by the API but unused: every connection goes to `path`.
        let channel = Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { UnixStream::connect(path).await.map(TokioIo::new) }
            }))
            .await
            .map_err(|source| CriError::Connect {
                path: socket.to_owned(),
                source,
            })?;
        Ok(Self {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    /// The generated RuntimeService client, for calls this wrapper does not cover.
    pub fn runtime_service(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    /// The generated ImageService client, for calls this wrapper does not cover.
    pub fn image_service(&self) -> ImageServiceClient<Channel> {
        self.images.clone()
    }

    /// `Version`: the runtime's name and versions.
    pub async fn version(&self) -> Result<proto::VersionResponse> {
        let request = proto::VersionRequest {
            version: CRI_API_VERSION.to_owned(),
        };
        let response = self.runtime.clone().version(request).await;
        Ok(response.map_err(rpc_error("Version"))?.into_inner())
    }

    /// `RunPodSandbox` with `runtime_handler` (`""` for the default): the sandbox id.
    pub async fn run_pod_sandbox(
        &self,
        config: &proto::PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String> {
        let request = proto::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: runtime_handler.to_owned(),
        };
        let response = self.runtime.clone().run_pod_sandbox(request).await;
        Ok(response
            .map_err(rpc_error("RunPodSandbox"))?
            .into_inner()
            .pod_sandbox_id)
    }

    /// `StopPodSandbox`.
    pub async fn stop_pod_sandbox(&self, pod_sandbox_id: &str) -> Result<()> {
        let request = proto::StopPodSandboxRequest {
            pod_sandbox_id: pod_sandbox_id.to_owned(),
        };
        let response = self.runtime.clone().stop_pod_sandbox(request).await;
        response.map_err(rpc_error("StopPodSandbox"))?;
        Ok(())
    }

    /// `RemovePodSandbox`.
    pub async fn remove_pod_sandbox(&self, pod_sandbox_id: &str) -> Result<()> {
        let request = proto::RemovePodSandboxRequest {
            pod_sandbox_id: pod_sandbox_id.to_owned(),
        };
        let response = self.runtime.clone().remove_pod_sandbox(request).await;
        response.map_err(rpc_error("RemovePodSandbox"))?;
        Ok(())
    }

    /// `PodSandboxStatus`.
    pub async fn pod_sandbox_status(
        &self,
        pod_sandbox_id: &str,
    ) -> Result<proto::PodSandboxStatus> {
        let request = proto::PodSandboxStatusRequest {
            pod_sandbox_id: pod_sandbox_id.to_owned(),
            verbose: false,
        };
        let response = self.runtime.clone().pod_sandbox_status(request).await;
        let status = response
            .map_err(rpc_error("PodSandboxStatus"))?
            .into_inner()
            .status;
        status.ok_or(CriError::MissingField {
            rpc: "PodSandboxStatus",
            field: "status",
        })
    }

    /// `ListPodSandbox` without a filter.
    pub async fn list_pod_sandboxes(&self) -> Result<Vec<proto::PodSandbox>> {
        let request = proto::ListPodSandboxRequest { filter: None };
        let response = self.runtime.clone().list_pod_sandbox(request).await;
        Ok(response
            .map_err(rpc_error("ListPodSandbox"))?
            .into_inner()
            .items)
    }

    /// `CreateContainer` in a sandbox created from `sandbox_config`: the container id.
    pub async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: &proto::ContainerConfig,
        sandbox_config: &proto::PodSandboxConfig,
    ) -> Result<String> {
        let request = proto::CreateContainerRequest {
            pod_sandbox_id: pod_sandbox_id.to_owned(),
            config: Some(config.clone()),
            sandbox_config: Some(sandbox_config.clone()),
        };
        let response = self.runtime.clone().create_container(request).await;
        Ok(response
            .map_err(rpc_error("CreateContainer"))?
            .into_inner()
            .container_id)
    }

    /// `StartContainer`.
    pub async fn start_container(&self, container_id: &str) -> Result<()> {
        self.start_container_within(container_id, None).await
    }

    /// `StartContainer` with a deadline, as the kubelet sends it (`--runtime-request-timeout`):
    /// containerd passes it on to the shim's Task.Create.
    pub async fn start_container_within(
        &self,
        container_id: &str,
        deadline: Option<std::time::Duration>,
    ) -> Result<()> {
        let mut request = tonic::Request::new(proto::StartContainerRequest {
            container_id: container_id.to_owned(),
        });
        if let Some(deadline) = deadline {
            request.set_timeout(deadline);
        }
        let response = self.runtime.clone().start_container(request).await;
        response.map_err(rpc_error("StartContainer"))?;
        Ok(())
    }

    /// `StopContainer`, killing the container after `timeout_seconds` (0: at once).
    pub async fn stop_container(&self, container_id: &str, timeout_seconds: i64) -> Result<()> {
        let request = proto::StopContainerRequest {
            container_id: container_id.to_owned(),
            timeout: timeout_seconds,
        };
        let response = self.runtime.clone().stop_container(request).await;
        response.map_err(rpc_error("StopContainer"))?;
        Ok(())
    }

    /// `RemoveContainer`.
    pub async fn remove_container(&self, container_id: &str) -> Result<()> {
        let request = proto::RemoveContainerRequest {
            container_id: container_id.to_owned(),
        };
        let response = self.runtime.clone().remove_container(request).await;
        response.map_err(rpc_error("RemoveContainer"))?;
        Ok(())
    }

    /// `ContainerStatus`.
    pub async fn container_status(&self, container_id: &str) -> Result<proto::ContainerStatus> {
        let request = proto::ContainerStatusRequest {
            container_id: container_id.to_owned(),
            verbose: false,
        };
        let response = self.runtime.clone().container_status(request).await;
        let status = response
            .map_err(rpc_error("ContainerStatus"))?
            .into_inner()
            .status;
        status.ok_or(CriError::MissingField {
            rpc: "ContainerStatus",
            field: "status",
        })
    }

    /// `ListContainers`, optionally only those of one sandbox.
    pub async fn list_containers(
        &self,
        pod_sandbox_id: Option<&str>,
    ) -> Result<Vec<proto::Container>> {
        let filter = pod_sandbox_id.map(|id| proto::ContainerFilter {
            pod_sandbox_id: id.to_owned(),
            ..Default::default()
        });
        let request = proto::ListContainersRequest { filter };
        let response = self.runtime.clone().list_containers(request).await;
        Ok(response
            .map_err(rpc_error("ListContainers"))?
            .into_inner()
            .containers)
    }

    /// `ExecSync`: runs `cmd` in a running container, waiting up to `timeout_seconds` (0: forever).
    pub async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[&str],
        timeout_seconds: i64,
    ) -> Result<proto::ExecSyncResponse> {
        let request = proto::ExecSyncRequest {
            container_id: container_id.to_owned(),
            cmd: cmd.iter().map(|&arg| arg.to_owned()).collect(),
            timeout: timeout_seconds,
        };
        let response = self.runtime.clone().exec_sync(request).await;
        Ok(response.map_err(rpc_error("ExecSync"))?.into_inner())
    }

    /// `ListImages` without a filter.
    pub async fn list_images(&self) -> Result<Vec<proto::Image>> {
        let request = proto::ListImagesRequest { filter: None };
        let response = self.images.clone().list_images(request).await;
        Ok(response
            .map_err(rpc_error("ListImages"))?
            .into_inner()
            .images)
    }

    /// `ImageStatus` of `image` as a pod spec names it: `None` when the runtime has no such image.
    pub async fn image_status(&self, image: &str) -> Result<Option<proto::Image>> {
        let request = proto::ImageStatusRequest {
            image: Some(proto::ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            verbose: false,
        };
        let response = self.images.clone().image_status(request).await;
        Ok(response
            .map_err(rpc_error("ImageStatus"))?
            .into_inner()
            .image)
    }

    /// Polls `ContainerStatus` until the container has exited, for at most `limit`.
    ///
    /// The limit guards against hangs; it is not a performance assertion.
    pub async fn wait_for_exit(
        &self,
        container_id: &str,
        limit: Duration,
    ) -> Result<proto::ContainerStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let status = self.container_status(container_id).await?;
            if status.state() == proto::ContainerState::ContainerExited {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CriError::NotExited {
                    container_id: container_id.to_owned(),
                    waited: limit,
                    state: status.state(),
                });
            }
            tokio::time::sleep(EXIT_POLL_INTERVAL).await;
        }
    }

    /// Stops and removes every container and pod sandbox the runtime knows, continuing past
    /// failures; returns the first failure, if any.
    pub async fn remove_everything(&self) -> Result<()> {
        let mut first_error = None;
        let mut keep = |result: Result<()>| {
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        };
        match self.list_containers(None).await {
            Ok(containers) => {
                for container in containers {
                    keep(self.stop_container(&container.id, 0).await);
                    keep(self.remove_container(&container.id).await);
                }
            }
            Err(error) => keep(Err(error)),
        }
        match self.list_pod_sandboxes().await {
            Ok(sandboxes) => {
                for sandbox in sandboxes {
                    keep(self.stop_pod_sandbox(&sandbox.id).await);
                    keep(self.remove_pod_sandbox(&sandbox.id).await);
                }
            }
            Err(error) => keep(Err(error)),
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A pod sandbox as a kubelet describes one, always in the node's network namespace.
#[derive(Debug, Clone, Default)]
pub struct PodSandboxSpec {
    name: String,
    namespace: String,
    uid: String,
    log_directory: Option<PathBuf>,
    labels: HashMap<String, String>,
    annotations: HashMap<String, String>,
    privileged: bool,
    host_pid: bool,
}

impl PodSandboxSpec {
    /// A pod named `name` in namespace `default`, whose uid is derived from the name.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            namespace: "default".to_owned(),
            uid: format!("uid-{name}"),
            ..Default::default()
        }
    }

    /// The Kubernetes namespace.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_owned();
        self
    }

    /// The pod uid.
    pub fn uid(mut self, uid: &str) -> Self {
        self.uid = uid.to_owned();
        self
    }

    /// The host directory container logs go to (kubelet: `/var/log/pods/<ns>_<name>_<uid>`).
    pub fn log_directory(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_directory = Some(dir.into());
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Adds an annotation (e.g. `containix.dev/flake`).
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Whether a container of the pod may be privileged (a kubelet sets this when one is).
    pub fn privileged(mut self, privileged: bool) -> Self {
        self.privileged = privileged;
        self
    }

    /// `hostPID: true`: the pod's containers share the node's PID namespace.
    pub fn host_pid(mut self, host_pid: bool) -> Self {
        self.host_pid = host_pid;
        self
    }

    /// The namespaces the pod's containers get, as a kubelet asks for them.
    pub fn namespace_options(&self) -> proto::NamespaceOption {
        let pid = if self.host_pid {
            proto::NamespaceMode::Node
        } else {
            proto::NamespaceMode::Container
        };
        proto::NamespaceOption {
            network: proto::NamespaceMode::Node.into(),
            pid: pid.into(),
            ipc: proto::NamespaceMode::Pod.into(),
            target_id: String::new(),
        }
    }

    /// The CRI config: host network, pod-wide IPC, per-container PID namespaces (the node's
    /// with [`PodSandboxSpec::host_pid`]).
    pub fn build(&self) -> proto::PodSandboxConfig {
        let namespaces = self.namespace_options();
        proto::PodSandboxConfig {
            metadata: Some(proto::PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: self.namespace.clone(),
                attempt: 0,
            }),
            hostname: String::new(),
            log_directory: self
                .log_directory
                .as_ref()
                .map(|dir| dir.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dns_config: None,
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            linux: Some(proto::LinuxPodSandboxConfig {
                cgroup_parent: String::new(),
                security_context: Some(proto::LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces),
                    privileged: self.privileged,
                    ..Default::default()
                }),
                sysctls: HashMap::new(),
            }),
        }
    }
}

/// How mounts below a bound host path propagate (a pod's `mountPropagation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// None (`None`, the default).
    #[default]
    Private,
    /// The host's new mounts show in the container (`HostToContainer`).
    HostToContainer,
    /// Both ways: the container's mounts show on the host (`Bidirectional`; privileged only).
    Bidirectional,
}

/// A host path bound into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMount {
    /// Path on the host.
    pub host_path: PathBuf,
    /// Path inside the container.
    pub container_path: String,
    /// Whether the container sees it read-only.
    pub readonly: bool,
    /// How mounts propagate across it.
    pub propagation: Propagation,
}

/// A container as a kubelet describes one.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    name: String,
    image: String,
    command: Vec<String>,
    args: Vec<String>,
    working_dir: String,
    env: Vec<(String, String)>,
    mounts: Vec<HostMount>,
    labels: HashMap<String, String>,
    annotations: HashMap<String, String>,
    log_path: Option<String>,
    readonly_rootfs: bool,
    privileged: bool,
    namespace_options: Option<proto::NamespaceOption>,
    memory_limit: Option<i64>,
}

impl ContainerSpec {
    /// A container `name` running `image` (as a pod spec names it), logging to `<name>.log`.
    pub fn new(name: &str, image: &str) -> Self {
        Self {
            name: name.to_owned(),
            image: image.to_owned(),
            ..Default::default()
        }
    }

    /// The command (overrides the image entrypoint).
    pub fn command<S: Into<String>>(mut self, argv: impl IntoIterator<Item = S>) -> Self {
        self.command = argv.into_iter().map(Into::into).collect();
        self
    }

    /// The arguments (override the image cmd).
    pub fn args<S: Into<String>>(mut self, argv: impl IntoIterator<Item = S>) -> Self {
        self.args = argv.into_iter().map(Into::into).collect();
        self
    }

    /// The working directory.
    pub fn working_dir(mut self, dir: &str) -> Self {
        self.working_dir = dir.to_owned();
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Binds `host_path` at `container_path`, read-only if `readonly`.
    pub fn mount(
        mut self,
        host_path: impl Into<PathBuf>,
        container_path: &str,
        readonly: bool,
    ) -> Self {
        self.mounts.push(HostMount {
            host_path: host_path.into(),
            container_path: container_path.to_owned(),
            readonly,
            propagation: Propagation::Private,
        });
        self
    }

    /// Binds `host_path` at `container_path` with mount propagation `propagation`.
    pub fn mount_propagating(
        mut self,
        host_path: impl Into<PathBuf>,
        container_path: &str,
        readonly: bool,
        propagation: Propagation,
    ) -> Self {
        self.mounts.push(HostMount {
            host_path: host_path.into(),
            container_path: container_path.to_owned(),
            readonly,
            propagation,
        });
        self
    }

    /// `securityContext.privileged` (its pod must be [`PodSandboxSpec::privileged`] too).
    pub fn privileged(mut self, privileged: bool) -> Self {
        self.privileged = privileged;
        self
    }

    /// The namespaces, as the pod's [`PodSandboxSpec::namespace_options`] gives them (a
    /// kubelet repeats the pod's for each container).
    pub fn namespaces(mut self, options: proto::NamespaceOption) -> Self {
        self.namespace_options = Some(options);
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Adds an annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Makes the root filesystem read-only (`securityContext.readOnlyRootFilesystem`).
    pub fn readonly_rootfs(mut self, readonly: bool) -> Self {
        self.readonly_rootfs = readonly;
        self
    }

    /// `resources.limits.memory`, in bytes: the container's memory cgroup limit.
    pub fn memory_limit(mut self, bytes: i64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// The log file, relative to the pod's log directory (default `<name>.log`).
    pub fn log_path(mut self, relative: &str) -> Self {
        self.log_path = Some(relative.to_owned());
        self
    }

    /// The log file relative to the pod's log directory.
    pub fn relative_log_path(&self) -> String {
        self.log_path
            .clone()
            .unwrap_or_else(|| format!("{}.log", self.name))
    }

    /// The CRI config.
    pub fn build(&self) -> proto::ContainerConfig {
        proto::ContainerConfig {
            metadata: Some(proto::ContainerMetadata {
                name: self.name.clone(),
                attempt: 0,
            }),
            image: Some(proto::ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: self.command.clone(),
            args: self.args.clone(),
            working_dir: self.working_dir.clone(),
            envs: self
                .env
                .iter()
                .map(|(key, value)| proto::KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            mounts: self
                .mounts
                .iter()
                .map(|mount| proto::Mount {
                    container_path: mount.container_path.clone(),
                    host_path: mount.host_path.to_string_lossy().into_owned(),
                    readonly: mount.readonly,
                    propagation: match mount.propagation {
                        Propagation::Private => proto::MountPropagation::PropagationPrivate,
                        Propagation::HostToContainer => {
                            proto::MountPropagation::PropagationHostToContainer
                        }
                        Propagation::Bidirectional => {
                            proto::MountPropagation::PropagationBidirectional
                        }
                    }
                    .into(),
                    ..Default::default()
                })
                .collect(),
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            log_path: self.relative_log_path(),
            linux: (self.readonly_rootfs
                || self.privileged
                || self.namespace_options.is_some()
                || self.memory_limit.is_some())
            .then(|| proto::LinuxContainerConfig {
                resources: self.memory_limit.map(|memory_limit_in_bytes| {
                    proto::LinuxContainerResources {
                        memory_limit_in_bytes,
                    }
                }),
                security_context: Some(proto::LinuxContainerSecurityContext {
                    readonly_rootfs: self.readonly_rootfs,
                    privileged: self.privileged,
                    namespace_options: self.namespace_options.clone(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One logical line of a CRI container log (partial chunks joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The stream.
    pub stream: LogStream,
    /// The text without the trailing newline.
    pub text: String,
}

/// A parsed CRI container log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerLog {
    /// The lines in order.
    pub lines: Vec<LogLine>,
}

impl ContainerLog {
    /// Parses the CRI log format: `<RFC3339 timestamp> <stdout|stderr> <P|F> <text>` per line,
    /// where `P` marks a partial chunk continued by the stream's next line.
    pub fn parse(text: &str) -> Result<Self> {
        let mut lines = Vec::new();
        let mut pending: [Option<String>; 2] = [None, None];
        for (index, raw) in text.lines().enumerate() {
            let malformed = || CriError::MalformedLogLine {
                line_number: index + 1,
                line: raw.to_owned(),
            };
            let mut fields = raw.splitn(4, ' ');
            let (Some(_timestamp), Some(stream), Some(tag)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(malformed());
            };
            let chunk = fields.next().unwrap_or("");
            let stream = match stream {
                "stdout" => LogStream::Stdout,
                "stderr" => LogStream::Stderr,
                _ => return Err(malformed()),
            };
            let slot = &mut pending[stream as usize];
            let mut joined = slot.take().unwrap_or_default();
            joined.push_str(chunk);
            match tag {
                "F" => lines.push(LogLine {
                    stream,
                    text: joined,
                }),
                "P" => *slot = Some(joined),
                _ => return Err(malformed()),
            }
        }
        Ok(Self { lines })
    }

    /// Reads and parses the log file at `path`.
    pub async fn read(path: &Path) -> Result<Self> {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|source| CriError::ReadLog {
                path: path.to_owned(),
                source,
            })?;
        Self::parse(&text)
    }

    /// The stdout lines joined with `\n`.
    pub fn stdout(&self) -> String {
        self.stream_text(LogStream::Stdout)
    }

    /// The stderr lines joined with `\n`.
    pub fn stderr(&self) -> String {
        self.stream_text(LogStream::Stderr)
    }

    fn stream_text(&self, stream: LogStream) -> String {
        let texts: Vec<&str> = self
            .lines
            .iter()
            .filter(|line| line.stream == stream)
            .map(|line| line.text.as_str())
            .collect();
        texts.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_parsed_and_partial_chunks_joined_per_stream() {
        let text = "2024-01-01T00:00:00.1Z stdout F hello world\n\
                    2024-01-01T00:00:00.2Z stdout P par\n\
                    2024-01-01T00:00:00.3Z stderr F oops\n\
                    2024-01-01T00:00:00.4Z stdout F tial\n\
                    2024-01-01T00:00:00.5Z stdout F \n";
        let log = ContainerLog::parse(text).unwrap();
        assert_eq!(log.stdout(), "hello world\npartial\n");
        assert_eq!(log.stderr(), "oops");
        assert_eq!(
            log.lines[1],
            LogLine {
                stream: LogStream::Stderr,
                text: "oops".into()
            }
        );
    }

    #[test]
    fn malformed_log_lines_are_reported_with_their_number() {
        for bad in ["2024 stdout", "2024 stdin F x", "2024 stdout X x"] {
            let text = format!("2024 stdout F ok\n{bad}\n");
            let err = ContainerLog::parse(&text).unwrap_err();
            assert!(
                matches!(err, CriError::MalformedLogLine { line_number: 2, ref line } if line == bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn pod_sandbox_spec_uses_the_node_network_and_keeps_annotations() {
        let config = PodSandboxSpec::new("web")
            .namespace("ns")
            .annotation("containix.dev/flake", "path:/x#y")
            .label("app", "web")
            .log_directory("/logs/web")
            .build();
        let namespaces = config
            .linux
            .as_ref()
            .and_then(|linux| linux.security_context.as_ref())
            .and_then(|context| context.namespace_options.as_ref())
            .unwrap();
        assert_eq!(namespaces.network(), proto::NamespaceMode::Node);
        assert_eq!(config.metadata.as_ref().unwrap().namespace, "ns");
        assert_eq!(config.annotations["containix.dev/flake"], "path:/x#y");
        assert_eq!(config.labels["app"], "web");
        assert_eq!(config.log_directory, "/logs/web");
    }

    #[test]
    fn container_spec_carries_command_env_mounts_and_log_path() {
        let config = ContainerSpec::new("app", "busybox")
            .command(["/bin/sh", "-c"])
            .args(["echo hi"])
            .env("A", "1")
            .mount("/host/data", "/data", true)
            .build();
        assert_eq!(config.command, ["/bin/sh", "-c"]);
        assert_eq!(config.args, ["echo hi"]);
        assert_eq!(config.envs[0].key, "A");
        assert_eq!(config.mounts[0].host_path, "/host/data");
        assert!(config.mounts[0].readonly);
        assert_eq!(config.log_path, "app.log");
        assert_eq!(config.image.unwrap().image, "busybox");
    }
}
