//! The shim binary's second job: the worker of a detached resolution
//! (`containerd-shim-containix-v1 containix-resolve <key>`), started by a shim whose
//! Task.Create needs a resolution no worker runs yet. It runs in a session of its own, so it
//! outlives the Create the kubelet may cancel and the shim of the pod that asked first; it
//! stops when its resolution is done and handed over, when no pod waits for it any more, or at
//! the resolution deadline (see `containix_core::resolve::inflight`).

use std::fs::OpenOptions;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use containix_core::assemble::detached_worker::{WorkerSpawner, run_detached_with_policy};
use containix_core::request::policy::NodePolicy;
use containix_core::resolve::inflight::board::InflightBoard;

/// The argument that makes the shim binary a worker.
pub const WORKER_ACTION: &str = "containix-resolve";

/// Starts workers as processes of this same binary.
#[derive(Debug, Clone)]
pub struct ProcessSpawner {
    binary: PathBuf,
    board: InflightBoard,
}

impl ProcessSpawner {
    /// Workers of this executable, posting on `board`.
    pub fn new(board: InflightBoard) -> io::Result<Self> {
        Ok(Self {
            binary: std::env::current_exe()?,
            board,
        })
    }
}

impl WorkerSpawner for ProcessSpawner {
    fn spawn(&self, key: &str) -> io::Result<()> {
        // The worker's own diagnostics, next to its status; removed with it when it is done.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.board.work_dir(key).join("worker.log"))?;
        let mut command = Command::new(&self.binary);
        command
            .arg(WORKER_ACTION)
            .arg(key)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
        }
        // The shim's reaper collects the worker's exit; nobody waits for it here.
        command.spawn().map(drop)
    }
}

/// Runs the worker of `key` under the node policy; the process's exit status.
pub async fn run(key: &str) -> i32 {
    let _ = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(false)
        .try_init();
    let policy = match NodePolicy::load() {
        Ok(policy) => policy,
        Err(err) => {
            tracing::error!(%err, "cannot load the node policy");
            return 1;
        }
    };
    match run_detached_with_policy(policy, key).await {
        Ok(end) => {
            tracing::info!(key, ?end, "detached resolution worker ends");
            0
        }
        Err(err) => {
            tracing::error!(key, %err, "detached resolution worker");
            1
        }
    }
}
