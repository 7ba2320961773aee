//! How runc's own stdio is wired for one process: nothing, pipes, or a console socket.

use std::{path::PathBuf, process::Stdio as CommandStdio, sync::Arc};

use async_trait::async_trait;
use runc::Command;

/// How runc is wired to the process's stdio.
#[derive(Debug, Clone)]
pub enum RuntimeStdio {
    /// No stdio at all.
    Null,
    /// Pipes whose other ends the shim copies to and from containerd.
    Pipes(Arc<dyn runc::io::Io>),
    /// runc sends the pty master over this unix socket.
    Console(PathBuf),
}

/// runc's stdio all pointing at `/dev/null`.
#[derive(Debug)]
pub struct NullStdio;

#[async_trait]
impl runc::io::Io for NullStdio {
    async fn set(&self, cmd: &mut Command) -> std::io::Result<()> {
        cmd.stdin(CommandStdio::null())
            .stdout(CommandStdio::null())
            .stderr(CommandStdio::null());
        Ok(())
    }

    async fn close_after_start(&self) {}
}
