//! How containix runs the few external processes it needs (`nix eval`) and waits for them.
//!
//! Most programs let tokio reap their children. A containerd shim cannot: it is a subreaper
//! whose reaper collects every child with `waitpid(-1)`, so tokio's own wait would race it and
//! lose the exit status (`ECHILD`). Such a program supplies its own [`ProcessRunner`]; everyone
//! else uses [`TokioRunner`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// A boxed future, as the trait returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Spawns a command with stdout and stderr piped and collects its output and exit status.
pub trait ProcessRunner: std::fmt::Debug + Send + Sync + 'static {
    /// Runs `command` to completion. Stores the child's pid in `pid` as soon as it is known,
    /// so a caller whose deadline passes can kill it (and its process group).
    fn output(
        &self,
        command: tokio::process::Command,
        pid: Arc<AtomicU32>,
    ) -> BoxFuture<'static, io::Result<Output>>;
}

/// Lets tokio spawn and reap the child.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioRunner;

impl ProcessRunner for TokioRunner {
    fn output(
        &self,
        mut command: tokio::process::Command,
        pid: Arc<AtomicU32>,
    ) -> BoxFuture<'static, io::Result<Output>> {
        Box::pin(async move {
            let child = command.spawn()?;
            pid.store(child.id().unwrap_or_default(), Ordering::SeqCst);
            child.wait_with_output().await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokio_runner_collects_output_status_and_pid() {
        let mut command = tokio::process::Command::new("sh");
        command
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let pid = Arc::new(AtomicU32::new(0));
        let output = TokioRunner.output(command, pid.clone()).await.unwrap();
        assert_eq!(output.status.code(), Some(3));
        assert_eq!(output.stdout, b"out\n");
        assert_eq!(output.stderr, b"err\n");
        assert_ne!(pid.load(Ordering::SeqCst), 0);
    }
}
