//! One container: its bundle, runtime, init process, exec processes and rootfs mounts.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use containerd_shim::{
    api::Options,
    protos::{api::Mount, protobuf::well_known_types::any::Any},
};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use tracing::warn;

use crate::{
    error::{Result, ShimError},
    oom::OomWatcher,
    process::{ExitInfo, Process, Status},
    runtime_options,
    spawner::OciRuntime,
    stats::Cgroup,
};

/// A container the shim manages.
pub struct Container {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// The runtime configured for this bundle.
    pub runtime: Arc<dyn OciRuntime>,
    /// The init process.
    pub init: Process,
    /// Exec processes by exec id.
    pub execs: HashMap<String, Process>,
    /// Whether the shim mounted `bundle/rootfs` (and must unmount it).
    pub rootfs_mounted: bool,
    /// The init process's cgroup, for stats and OOM detection.
    pub cgroup: Option<Cgroup>,
    /// The live OOM watcher on that cgroup, until init's exit is published.
    pub oom: Option<OomWatcher>,
    /// Init's exit, held back until the container's running execs have exited too: init's
    /// exit is the container's last one, as containerd's runc shim publishes them.
    pub pending_init_exit: Option<ExitInfo>,
    /// Task.Delete is tearing the container down: it still answers State and Kill (as
    /// stopped) so that containerd keeps finding the task until the delete has returned.
    pub deleting: bool,
    /// Whether the container shares a pid namespace it does not own, so its other processes
    /// outlive init unless the shim kills them.
    pub kill_all_on_exit: bool,
    /// Owner of the stdio pipes of exec processes.
    pub io_owner: (u32, u32),
}

impl Container {
    /// The process named by `exec_id` ("" for init).
    pub fn process(&self, exec_id: &str) -> Result<&Process> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs.get(exec_id).ok_or_else(|| {
            ShimError::NotFound(format!(
                "exec {exec_id:?} of container {:?} not found",
                self.id
            ))
        })
    }

    /// Whether an exec process is running (started and not yet exited).
    pub fn has_running_execs(&self) -> bool {
        self.execs
            .values()
            .any(|exec| matches!(exec.status, Status::Running | Status::Paused) && exec.pid > 0)
    }

    /// The exec id of the exec process `pid`, if one is.
    pub fn exec_id_of(&self, pid: u32) -> Option<&str> {
        self.execs
            .iter()
            .find(|(_, exec)| exec.pid > 0 && exec.pid as u32 == pid)
            .map(|(id, _)| id.as_str())
    }

    /// Mutable [`Container::process`].
    pub fn process_mut(&mut self, exec_id: &str) -> Result<&mut Process> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        let id = self.id.clone();
        self.execs.get_mut(exec_id).ok_or_else(|| {
            ShimError::NotFound(format!("exec {exec_id:?} of container {id:?} not found"))
        })
    }
}

/// The runc options of a Task.Create (containerd's `runc.v1.Options`, or CRI's generic
/// options carrying them as TOML: [`runtime_options::decode`]), defaults when absent.
pub fn create_options(options: Option<&Any>) -> Result<Options> {
    match options {
        None => Ok(Options::default()),
        Some(any) => runtime_options::decode(any),
    }
}

/// True when init's exit does not take the container's other processes with it: the spec
/// has no pid namespace of its own (none, or one joined by path).
pub fn kill_all_on_exit(spec: &Spec) -> bool {
    let own_pid_namespace = spec
        .linux()
        .as_ref()
        .and_then(|linux| linux.namespaces().as_ref())
        .map(|namespaces| {
            namespaces
                .iter()
                .any(|ns| ns.typ() == LinuxNamespaceType::Pid && ns.path().is_none())
        })
        .unwrap_or(false);
    !own_pid_namespace
}

/// The bundle's `config.json` (in `""`, the current directory). Unlike containerd-shim's
/// `read_spec`, a parse error names the file. Parsed from bytes, as the core parses specs, so
/// the binary holds one copy of the spec types' deserialiser.
pub async fn read_spec(bundle: impl AsRef<Path>) -> containerd_shim::Result<Spec> {
    let path = bundle.as_ref().join("config.json");
    let text = tokio::fs::read(&path)
        .await
        .map_err(|err| containerd_shim::Error::IoError {
            context: format!("read {}", path.display()),
            err,
        })?;
    serde_json::from_slice(&text).map_err(|e| {
        containerd_shim::Error::Other(format!("reading the spec {}: {e}", path.display()))
    })
}

/// The directory containerd's rootfs mounts go to.
pub fn rootfs_dir(bundle: &Path) -> PathBuf {
    bundle.join("rootfs")
}

/// Mounts containerd's rootfs mounts onto `bundle/rootfs`; undoes partial work on failure.
pub async fn mount_rootfs(bundle: &Path, mounts: &[Mount]) -> Result<bool> {
    if mounts.is_empty() {
        return Ok(false);
    }
    let target = rootfs_dir(bundle);
    containerd_shim::util::mkdir(&target, 0o711).await?;
    for mount in mounts {
        if let Err(e) = containerd_shim::util::mount_rootfs(mount, &target).await {
            unmount_rootfs(bundle).await;
            return Err(ShimError::Other(format!(
                "mount {} ({}) on {}: {e}",
                mount.source,
                mount.type_,
                target.display()
            )));
        }
    }
    Ok(true)
}

/// Unmounts everything under `bundle/rootfs`, logging failures.
pub async fn unmount_rootfs(bundle: &Path) {
    let target = rootfs_dir(bundle).display().to_string();
    let result = tokio::task::spawn_blocking(move || {
        containerd_shim::mount::umount_recursive(Some(&target), libc::MNT_DETACH)
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!("cannot unmount the rootfs of {}: {e}", bundle.display()),
        Err(e) => warn!("rootfs unmount task failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(namespaces: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},"linux":{{"namespaces":{namespaces}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn own_pid_namespace_needs_no_kill_all() {
        assert!(!kill_all_on_exit(&spec(
            r#"[{"type":"pid"},{"type":"mount"}]"#
        )));
        assert!(kill_all_on_exit(&spec(
            r#"[{"type":"pid","path":"/proc/1/ns/pid"}]"#
        )));
        assert!(kill_all_on_exit(&spec(r#"[{"type":"mount"}]"#)));
    }

    #[test]
    fn absent_options_are_defaults() {
        assert_eq!(create_options(None).unwrap(), Options::default());
        let bad = Any {
            type_url: "x".into(),
            value: vec![0xff, 0xff],
            ..Default::default()
        };
        let err = create_options(Some(&bad)).unwrap_err().to_string();
        assert!(err.starts_with("options:"), "{err}");
    }
}
