//! The OCI runtime seam: every call the shim makes to runc goes through [`OciRuntime`].
//!
//! [`Runc`] drives the real runc binary through the `runc` crate; tests substitute a fake that
//! records calls, so the task state machine is tested without containers.

use std::{
    path::{Path, PathBuf},
    process::ExitStatus,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use async_trait::async_trait;
use containix_core::resolve::process_runner::ProcessRunner;
use oci_spec::runtime::{LinuxResources, Process};
use runc::options::{CreateOpts, DeleteOpts, ExecOpts, GlobalOpts, KillOpts};

use crate::reaper::ReaperAwareRunner;
use crate::runtime_stdio::{NullStdio, RuntimeStdio};

/// runc's default state directory as containerd's runc shim uses it (`<root>/<namespace>`).
pub const DEFAULT_RUNC_ROOT: &str = "/run/containerd/runc";
/// The runtime binary used when the runtime options name none.
pub const DEFAULT_RUNTIME_BINARY: &str = "runc";
/// The file in the bundle where runc writes its JSON log.
pub const RUNTIME_LOG_FILE: &str = "log.json";

/// Which kind of failure the runtime reported; containerd needs "not found" told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeErrorKind {
    /// The container or process no longer exists (already exited, already deleted).
    NotFound,
    /// Any other failure.
    Failed,
}

/// A failed runtime call: which operation, and runc's own last error message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("OCI runtime {operation} failed: {message}")]
pub struct RuntimeError {
    /// The runc subcommand (`create`, `start`, ...).
    pub operation: &'static str,
    /// runc's message, from its JSON log when it wrote one.
    pub message: String,
    /// Whether the target was already gone.
    pub kind: RuntimeErrorKind,
}

impl RuntimeError {
    /// A plain failure of `operation`.
    pub fn failed(operation: &'static str, message: impl Into<String>) -> Self {
        RuntimeError {
            operation,
            message: message.into(),
            kind: RuntimeErrorKind::Failed,
        }
    }

    /// The target of `operation` no longer exists.
    pub fn not_found(operation: &'static str, message: impl Into<String>) -> Self {
        RuntimeError {
            operation,
            message: message.into(),
            kind: RuntimeErrorKind::NotFound,
        }
    }
}

/// How to run the runtime binary for one bundle (runc's global options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// The runtime binary, looked up on PATH when relative.
    pub binary: String,
    /// runc's state directory (`--root`).
    pub root: PathBuf,
    /// runc's JSON log (`--log`), read back to explain failures.
    pub log: PathBuf,
    /// Whether runc manages cgroups through systemd.
    pub systemd_cgroup: bool,
}

impl RuntimeConfig {
    /// The configuration containerd's runc shim derives from its options for `bundle`.
    pub fn for_bundle(
        binary: &str,
        root: &str,
        namespace: &str,
        bundle: &Path,
        systemd_cgroup: bool,
    ) -> Self {
        let binary = if binary.is_empty() {
            DEFAULT_RUNTIME_BINARY
        } else {
            binary
        };
        let root = if root.is_empty() {
            DEFAULT_RUNC_ROOT
        } else {
            root
        };
        RuntimeConfig {
            binary: binary.to_owned(),
            root: Path::new(root).join(namespace),
            log: bundle.join(RUNTIME_LOG_FILE),
            systemd_cgroup,
        }
    }
}

/// `runc create` arguments.
#[derive(Debug)]
pub struct CreateSpec<'a> {
    /// Container id.
    pub id: &'a str,
    /// Bundle directory holding `config.json`.
    pub bundle: &'a Path,
    /// Where runc writes the init pid.
    pub pid_file: &'a Path,
    /// The process's stdio.
    pub stdio: &'a RuntimeStdio,
    /// `--no-pivot`.
    pub no_pivot_root: bool,
    /// `--no-new-keyring`.
    pub no_new_keyring: bool,
}

/// `runc exec --detach` arguments.
#[derive(Debug)]
pub struct ExecSpec<'a> {
    /// Container id.
    pub container_id: &'a str,
    /// The process to run.
    pub process: &'a Process,
    /// Where runc writes the exec pid.
    pub pid_file: &'a Path,
    /// The process's stdio.
    pub stdio: &'a RuntimeStdio,
}

/// The OCI runtime operations the shim needs, for one runtime configuration.
#[async_trait]
pub trait OciRuntime: Send + Sync {
    /// Creates the container and returns its init pid.
    async fn create(&self, spec: &CreateSpec<'_>) -> Result<i32, RuntimeError>;
    /// Starts the created container's init process.
    async fn start(&self, id: &str) -> Result<(), RuntimeError>;
    /// Starts an extra process in a running container and returns its pid.
    async fn exec(&self, spec: &ExecSpec<'_>) -> Result<i32, RuntimeError>;
    /// Signals the init process, or with `all` every process of the container.
    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError>;
    /// Deletes the container (`--force` kills it first).
    async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError>;
    /// Freezes every process of the container.
    async fn pause(&self, id: &str) -> Result<(), RuntimeError>;
    /// Thaws the container.
    async fn resume(&self, id: &str) -> Result<(), RuntimeError>;
    /// Lists the host pids of the container's processes.
    async fn ps(&self, id: &str) -> Result<Vec<u32>, RuntimeError>;
    /// Applies new resource limits.
    async fn update(&self, id: &str, resources: &LinuxResources) -> Result<(), RuntimeError>;
}

/// Makes an [`OciRuntime`] for a runtime configuration (one per container bundle).
pub trait Spawner: Send + Sync + 'static {
    /// The runtime for `config`.
    fn runtime(&self, config: &RuntimeConfig) -> Result<Arc<dyn OciRuntime>, RuntimeError>;
}

/// The real spawner: runs the runc binary.
#[derive(Debug, Default, Clone, Copy)]
pub struct RuncSpawner;

impl Spawner for RuncSpawner {
    fn runtime(&self, config: &RuntimeConfig) -> Result<Arc<dyn OciRuntime>, RuntimeError> {
        let mut opts = GlobalOpts::new()
            .command(&config.binary)
            .root(&config.root)
            .log(&config.log)
            .log_json()
            .systemd_cgroup(config.systemd_cgroup);
        opts.custom_spawner(Arc::new(ReaperAwareExecutor));
        let client = opts
            .build()
            .map_err(|e| RuntimeError::failed("setup", e.to_string()))?;
        Ok(Arc::new(Runc {
            client,
            log: config.log.clone(),
        }))
    }
}

/// [`OciRuntime`] on top of the `runc` crate.
#[derive(Debug)]
pub struct Runc {
    client: runc::Runc,
    log: PathBuf,
}

impl Runc {
    /// Turns a runc failure into a [`RuntimeError`] carrying runc's last logged error.
    async fn error(&self, operation: &'static str, err: runc::error::Error) -> RuntimeError {
        let logged = last_logged_error(&self.log).await;
        let message = logged.unwrap_or_else(|| err.to_string());
        let kind = classify(&message);
        RuntimeError {
            operation,
            message,
            kind,
        }
    }
}

/// Tells "the target is gone" apart from real failures, as containerd's runc shim does.
pub fn classify(message: &str) -> RuntimeErrorKind {
    let lower = message.to_lowercase();
    let gone = [
        "process already finished",
        "container not running",
        "no such process",
        "does not exist",
        "container not found",
    ];
    if gone.iter().any(|needle| lower.contains(needle)) {
        RuntimeErrorKind::NotFound
    } else {
        RuntimeErrorKind::Failed
    }
}

/// The message of the last `"level":"error"` line of runc's JSON log, if any.
pub async fn last_logged_error(log: &Path) -> Option<String> {
    let text = tokio::fs::read_to_string(log).await.ok()?;
    parse_last_error(&text)
}

/// Pure part of [`last_logged_error`].
pub fn parse_last_error(log: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Line {
        level: String,
        msg: String,
    }
    log.lines()
        .filter_map(|line| serde_json::from_str::<Line>(line).ok())
        .filter(|line| line.level == "error")
        .map(|line| line.msg.trim().to_owned())
        .next_back()
}

async fn read_pid(path: &Path, operation: &'static str) -> Result<i32, RuntimeError> {
    let text = tokio::fs::read_to_string(path).await.map_err(|e| {
        RuntimeError::failed(operation, format!("cannot read {}: {e}", path.display()))
    })?;
    text.trim()
        .parse()
        .map_err(|e| RuntimeError::failed(operation, format!("bad pid in {}: {e}", path.display())))
}

fn apply_stdio(stdio: &RuntimeStdio) -> (Option<Arc<dyn runc::io::Io>>, Option<PathBuf>) {
    match stdio {
        RuntimeStdio::Pipes(io) => (Some(io.clone()), None),
        RuntimeStdio::Null => (Some(Arc::new(NullStdio)), None),
        RuntimeStdio::Console(path) => (Some(Arc::new(NullStdio)), Some(path.clone())),
    }
}

#[async_trait]
impl OciRuntime for Runc {
    async fn create(&self, spec: &CreateSpec<'_>) -> Result<i32, RuntimeError> {
        let (io, console_socket) = apply_stdio(spec.stdio);
        let opts = CreateOpts {
            io,
            pid_file: Some(spec.pid_file.to_owned()),
            console_socket,
            detach: false,
            no_pivot: spec.no_pivot_root,
            no_new_keyring: spec.no_new_keyring,
        };
        if let Err(e) = self.client.create(spec.id, spec.bundle, Some(&opts)).await {
            return Err(self.error("create", e).await);
        }
        read_pid(spec.pid_file, "create").await
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        match self.client.start(id).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.error("start", e).await),
        }
    }

    async fn exec(&self, spec: &ExecSpec<'_>) -> Result<i32, RuntimeError> {
        let (io, console_socket) = apply_stdio(spec.stdio);
        let opts = ExecOpts {
            io,
            pid_file: Some(spec.pid_file.to_owned()),
            console_socket,
            detach: true,
        };
        if let Err(e) = self
            .client
            .exec(spec.container_id, spec.process, Some(&opts))
            .await
        {
            return Err(self.error("exec", e).await);
        }
        read_pid(spec.pid_file, "exec").await
    }

    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError> {
        match self.client.kill(id, signal, Some(&KillOpts { all })).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.error("kill", e).await),
        }
    }

    async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        match self.client.delete(id, Some(&DeleteOpts { force })).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.error("delete", e).await),
        }
    }

    async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        match self.client.pause(id).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.error("pause", e).await),
        }
    }

    async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        match self.client.resume(id).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.error("resume", e).await),
        }
    }

    async fn ps(&self, id: &str) -> Result<Vec<u32>, RuntimeError> {
        match self.client.ps(id).await {
            Ok(pids) => Ok(pids.into_iter().map(|pid| pid as u32).collect()),
            Err(e) => Err(self.error("ps", e).await),
        }
    }

    async fn update(&self, id: &str, resources: &LinuxResources) -> Result<(), RuntimeError> {
        match self.client.update(id, resources).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.error("update", e).await),
        }
    }
}

/// Runs runc commands without racing the shim's reaper.
///
/// The shim is a subreaper that reaps every child with `waitpid(-1)` and broadcasts the
/// exits; waiting on a runc child directly would lose that race. This executor subscribes
/// to the broadcast before spawning and takes the command's exit status from it.
#[derive(Debug)]
struct ReaperAwareExecutor;

#[async_trait]
impl runc::Spawner for ReaperAwareExecutor {
    async fn execute(&self, cmd: runc::Command) -> runc::Result<(ExitStatus, u32, String, String)> {
        let pid = Arc::new(AtomicU32::new(0));
        let output = ReaperAwareRunner
            .output(cmd, pid.clone())
            .await
            .map_err(runc::error::Error::ProcessSpawnFailed)?;
        // The reaper reports `128 + signal` for signalled children; runc is never expected
        // to die by a signal, so any non-zero value is reported as that exit code.
        Ok((
            output.status,
            pid.load(Ordering::SeqCst),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_line_of_the_runc_log_wins() {
        let log = concat!(
            r#"{"level":"info","msg":"hello","time":"t"}"#,
            "\n",
            r#"{"level":"error","msg":"first","time":"t"}"#,
            "\n",
            r#"{"level":"error","msg":"exec: \"nope\": executable file not found\n","time":"t"}"#,
            "\nnot json\n",
        );
        assert_eq!(
            parse_last_error(log).as_deref(),
            Some("exec: \"nope\": executable file not found")
        );
        assert_eq!(parse_last_error(""), None);
    }

    #[test]
    fn gone_targets_are_not_found() {
        assert_eq!(
            classify("container not running"),
            RuntimeErrorKind::NotFound
        );
        assert_eq!(
            classify("container \"x\" does not exist"),
            RuntimeErrorKind::NotFound
        );
        assert_eq!(classify("permission denied"), RuntimeErrorKind::Failed);
    }

    #[test]
    fn runtime_config_follows_containerd_defaults() {
        let config = RuntimeConfig::for_bundle("", "", "k8s.io", Path::new("/b"), false);
        assert_eq!(config.binary, "runc");
        assert_eq!(config.root, Path::new("/run/containerd/runc/k8s.io"));
        assert_eq!(config.log, Path::new("/b/log.json"));
    }
}
