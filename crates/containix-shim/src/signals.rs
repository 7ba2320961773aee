//! The signals a shim process handles, and reaping: the shim is a subreaper, so every
//! descendant whose parent dies becomes its child, and it collects each exit with `waitpid` and
//! broadcasts it on the containerd-shim crate's monitor. [`crate::reaper`] and the task service
//! learn exit statuses from that broadcast, never from `waitpid` themselves.

use containerd_shim::asynchronous::monitor::monitor_notify_by_pid;
use nix::{
    errno::Errno,
    sys::wait::{WaitPidFlag, WaitStatus, waitpid},
};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{debug, error, warn};

/// The handlers a shim installs before it starts any child, so that no exit is missed.
pub struct Signals {
    child: Signal,
    terminate: Signal,
    interrupt: Signal,
    pipe: Signal,
}

impl Signals {
    /// Installs handlers for SIGCHLD, and for SIGTERM, SIGINT and SIGPIPE, which then no longer
    /// end the process: containerd ends a shim through the task API's `Shutdown`, and a reader
    /// that went away must not kill the pod's shim.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            child: signal(SignalKind::child())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            pipe: signal(SignalKind::pipe())?,
        })
    }

    /// Handles signals until the process ends: reaps children on SIGCHLD, notes the others.
    pub async fn handle(mut self) {
        loop {
            tokio::select! {
                Some(()) = self.child.recv() => reap_children().await,
                Some(()) = self.terminate.recv() => debug!("received SIGTERM"),
                Some(()) = self.interrupt.recv() => debug!("received SIGINT"),
                Some(()) = self.pipe.recv() => {}
                else => return,
            }
        }
    }
}

/// Collects every child that has exited and broadcasts its exit code (128 + the signal for a
/// killed one).
async fn reap_children() {
    loop {
        let (pid, code) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, status)) => (pid, status),
            Ok(WaitStatus::Signaled(pid, signal, _)) => (pid, 128 + signal as i32),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => {
                warn!("waiting for exited children: {e}");
                return;
            }
        };
        if let Err(e) = monitor_notify_by_pid(pid.as_raw(), code).await {
            error!("cannot broadcast the exit of pid {pid}: {e}");
        }
    }
}
