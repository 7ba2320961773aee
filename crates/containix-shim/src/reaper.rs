//! Running a child process from inside the shim, which is a subreaper that reaps every child
//! itself: the exit status comes from the reaper's broadcast, never from `waitpid`.

use std::{
    os::unix::process::ExitStatusExt,
    process::{ExitStatus, Output},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use containerd_shim::{
    asynchronous::monitor::{monitor_subscribe, monitor_unsubscribe},
    monitor::{Subject, Topic},
};
use containix_core::resolve::process_runner::{BoxFuture, ProcessRunner};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Runs a child without racing the shim's reaper: subscribes to the reaper's exit broadcast
/// before spawning and takes the child's exit status from it. Used for runc (through
/// `ReaperAwareExecutor`) and for containix-core's own processes (`nix eval`).
#[derive(Debug, Default, Clone, Copy)]
pub struct ReaperAwareRunner;

impl ProcessRunner for ReaperAwareRunner {
    fn output(
        &self,
        mut command: tokio::process::Command,
        pid: Arc<AtomicU32>,
    ) -> BoxFuture<'static, std::io::Result<Output>> {
        Box::pin(async move {
            let mut exits = monitor_subscribe(Topic::Pid)
                .await
                .map_err(std::io::Error::other)?;
            let mut child = match command.spawn() {
                Ok(child) => child,
                Err(e) => {
                    monitor_unsubscribe(exits.id).await.unwrap_or_default();
                    return Err(e);
                }
            };
            let child_pid = child.id().unwrap_or_default();
            pid.store(child_pid, Ordering::SeqCst);
            let wait_exit = async {
                while let Some(event) = exits.rx.recv().await {
                    if matches!(event.subject, Subject::Pid(p) if p as u32 == child_pid) {
                        return event.exit_code;
                    }
                }
                -1
            };
            let (stdout, stderr, code) = tokio::join!(
                read_bytes(child.stdout.take()),
                read_bytes(child.stderr.take()),
                wait_exit
            );
            monitor_unsubscribe(exits.id).await.unwrap_or_default();
            Ok(Output {
                status: ExitStatus::from_raw((code & 0xff) << 8),
                stdout,
                stderr,
            })
        })
    }
}

async fn read_bytes(stream: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(mut stream) = stream {
        let _ = stream.read_to_end(&mut out).await;
    }
    out
}
