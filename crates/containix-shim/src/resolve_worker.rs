//! The shim binary's second job: the worker of a detached resolution
//! (`containerd-shim-containix-v1 containix-resolve <key>`), started by a shim whose
//! Task.Create needs a resolution no worker runs yet. It runs in a session of its own, so it
//! outlives the Create the kubelet may cancel and the shim of the pod that asked first; it
//! stops when its resolution is done and handed over, when no pod waits for it any more, or at
//! the resolution deadline (see `containix_core::resolve::inflight`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use containix_core::assemble::detached_worker::{WorkerSpawner, run_detached_with_policy};
use containix_core::node::containerd_config::RUNTIME_TYPE;
use containix_core::request::policy::NodePolicy;
use containix_core::resolve::inflight::board::InflightBoard;
use tracing::level_filters::LevelFilter;

use crate::logging::LOG_FIFO;
use crate::logrus_format::LogrusFormat;

/// The argument that makes the shim binary a worker.
pub const WORKER_ACTION: &str = "containix-resolve";

/// The level the shim logs at, handed to its worker.
const WORKER_LEVEL_ENV: &str = "CONTAINIX_WORKER_LOG_LEVEL";

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
        let mut command = Command::new(&self.binary);
        command
            .arg(WORKER_ACTION)
            .arg(key)
            .env(WORKER_LEVEL_ENV, LevelFilter::current().to_string())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log_destination(key)?);
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
        }
        // The shim's reaper collects the worker's exit; nobody waits for it here.
        command.spawn().map(drop)
    }
}

impl ProcessSpawner {
    /// Where the worker's events go: the log fifo containerd reads from this shim (the worker
    /// writes containerd's line format too, so a build's output reaches containerd's log as the
    /// shim's own events would), else a file next to the worker's status.
    fn log_destination(&self, key: &str) -> io::Result<File> {
        // Non-blocking, so that a fifo nobody reads fails at once instead of hanging the shim.
        if let Ok(fifo) = OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(LOG_FIFO)
            && fifo.metadata()?.file_type().is_fifo()
        {
            let flags = nix::fcntl::fcntl(&fifo, nix::fcntl::FcntlArg::F_GETFL)?;
            let mut flags = nix::fcntl::OFlag::from_bits_truncate(flags);
            flags.remove(nix::fcntl::OFlag::O_NONBLOCK);
            nix::fcntl::fcntl(&fifo, nix::fcntl::FcntlArg::F_SETFL(flags))?;
            return Ok(fifo);
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.board.work_dir(key).join("worker.log"))
    }
}

/// Runs the worker of `key` under the node policy; the process's exit status.
pub async fn run(key: &str) -> i32 {
    // The log fifo's reader goes when the shim that started this worker exits; writing to it
    // then must fail (and be ignored), not end the worker. The shim handles SIGPIPE itself, and
    // handled signals are back to their default (terminate) after exec.
    // SAFETY: setting a signal's disposition to "ignore" touches no memory of this process.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigIgn,
        );
    }
    let level = std::env::var(WORKER_LEVEL_ENV)
        .ok()
        .and_then(|level| level.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let _ = tracing_subscriber::fmt()
        // Once the log fifo's reader is gone, a failed write must not be reported on stderr,
        // which is that same fifo (reporting would panic).
        .log_internal_errors(false)
        .event_format(LogrusFormat::new(RUNTIME_TYPE))
        .with_max_level(level)
        .with_writer(io::stderr)
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
