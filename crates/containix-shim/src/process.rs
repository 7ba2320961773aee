//! One process of a container (its init or an exec) and its lifecycle state.

use containerd_shim::protos::{
    api::Status as ApiStatus, protobuf::well_known_types::timestamp::Timestamp,
};
use tokio::sync::watch;

use crate::io::{ProcessIo, Stdio};

/// Lifecycle state, as the Task API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created by runc, not started.
    Created,
    /// Started and not yet exited.
    Running,
    /// Frozen by Task.Pause.
    Paused,
    /// Exited (or never will run).
    Stopped,
}

impl From<Status> for ApiStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Created => ApiStatus::CREATED,
            Status::Running => ApiStatus::RUNNING,
            Status::Paused => ApiStatus::PAUSED,
            Status::Stopped => ApiStatus::STOPPED,
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitInfo {
    /// Exit code, or 128 + signal for a signalled process.
    pub status: u32,
    /// When the shim saw the exit.
    pub at: Timestamp,
}

/// An init or exec process.
#[derive(Debug)]
pub struct Process {
    /// The exec id; `None` for the container's init process.
    pub exec_id: Option<String>,
    /// Host pid once the process exists, 0 before.
    pub pid: i32,
    /// Lifecycle state.
    pub status: Status,
    /// The stdio containerd asked for.
    pub stdio: Stdio,
    /// Live stdio, once attached.
    pub io: ProcessIo,
    /// The OCI process of an exec, applied at start.
    pub spec: Option<oci_spec::runtime::Process>,
    exit: watch::Sender<Option<ExitInfo>>,
}

impl Process {
    /// A process that does not exist yet.
    pub fn new(exec_id: Option<String>, stdio: Stdio) -> Self {
        Process {
            exec_id,
            pid: 0,
            status: Status::Created,
            stdio,
            io: ProcessIo::default(),
            spec: None,
            exit: watch::channel(None).0,
        }
    }

    /// How the process ended, if it did.
    pub fn exit(&self) -> Option<ExitInfo> {
        self.exit.borrow().clone()
    }

    /// Records the exit and wakes every Task.Wait on this process.
    pub fn set_exited(&mut self, info: ExitInfo) {
        self.status = Status::Stopped;
        self.exit.send_replace(Some(info));
    }

    /// A handle that resolves once the process has exited.
    pub fn exit_watch(&self) -> watch::Receiver<Option<ExitInfo>> {
        self.exit.subscribe()
    }

    /// The exec id, or "" for init (the Task API's convention).
    pub fn exec_id_str(&self) -> &str {
        self.exec_id.as_deref().unwrap_or("")
    }
}

/// Waits until `watch` reports an exit.
pub async fn wait_exit(mut watch: watch::Receiver<Option<ExitInfo>>) -> Option<ExitInfo> {
    watch
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|info| info.clone())
}
