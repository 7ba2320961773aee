//! Making the planned changes. Every file is written beside its target and renamed over it,
//! so a reader (containerd, a running shim's binary, a shim loading the policy) sees the old
//! file or the new one, never half of either.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::error::NodeInstallError;
use super::plan::{NodePlan, NodeStep};
use crate::request::policy::policy_file::DOCUMENTED_DEFAULTS;

/// Applies `plan`'s steps in order, stopping at the first failure (every step is safe to
/// repeat, so running the install again completes it).
pub fn apply(plan: &NodePlan) -> Result<(), NodeInstallError> {
    for step in &plan.steps {
        apply_step(step)?;
    }
    Ok(())
}

fn apply_step(step: &NodeStep) -> Result<(), NodeInstallError> {
    match step {
        NodeStep::InstallShim { from, to } => {
            let bytes = std::fs::read(from).map_err(|source| NodeInstallError::Read {
                path: from.clone(),
                source,
            })?;
            replace_file(to, &bytes, 0o755)
        }
        NodeStep::WritePolicy { path } => replace_file(path, DOCUMENTED_DEFAULTS.as_bytes(), 0o644),
        NodeStep::WriteContainerdConfig { path, after, .. } => {
            replace_file(path, after.as_bytes(), 0o644)
        }
        NodeStep::RemoveContainerdConfig { path, .. } | NodeStep::RemoveShim { path } => {
            remove_file(path)
        }
        NodeStep::RemovePolicy { path } => {
            remove_file(path)?;
            if let Some(old) = super::node_state::legacy_policy(path) {
                remove_file(&old)?;
            }
            // A `containix` directory (`/etc/containix`) is ours: purge it too once it is empty.
            // Anything the operator put there keeps it, so a refusal is not an error. A policy
            // named elsewhere (`--policy /etc/node.toml`) lives in a directory that is not ours.
            if let Some(dir) = path.parent().filter(|dir| dir.ends_with("containix")) {
                let _ = std::fs::remove_dir(dir);
            }
            Ok(())
        }
    }
}

/// Writes `bytes` to `path` by a rename from a temp file in the same directory. An existing
/// file's permissions are kept; a new one gets `mode`. Missing parent directories are created.
fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), NodeInstallError> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(write_error("creating", dir))?;
    let mode = match std::fs::metadata(path) {
        Ok(metadata) => metadata.permissions().mode() & 0o7777,
        Err(_) => mode,
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".containix-tmp")
        .tempfile_in(dir)
        .map_err(write_error("creating a temp file in", dir))?;
    temp.write_all(bytes)
        .and_then(|()| {
            temp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))
        })
        .and_then(|()| temp.as_file().sync_all())
        .map_err(write_error("writing", temp.path()))?;
    temp.persist(path)
        .map_err(|err| err.error)
        .map_err(write_error("renaming into place", path))?;
    sync_dir(dir);
    Ok(())
}

/// Maps an I/O error while doing `what` to `path`.
fn write_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NodeInstallError {
    let path = path.to_owned();
    move |source| NodeInstallError::Write { what, path, source }
}

fn remove_file(path: &Path) -> Result<(), NodeInstallError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                sync_dir(dir);
            }
            Ok(())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NodeInstallError::Write {
            what: "removing",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Makes a rename or removal durable; best effort (some filesystems refuse fsync on dirs).
fn sync_dir(dir: &Path) {
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::super::node_state::{NodePaths, NodeState, ShimState};
    use super::super::plan::{plan_install, plan_uninstall};
    use super::*;

    const STOCK: &str = include_str!("../containerd_config/testdata/containerd-1.6-default.toml");

    fn node(dir: &Path) -> (NodePaths, std::path::PathBuf) {
        let paths = NodePaths {
            containerd_config: dir.join("etc/containerd/config.toml"),
            config_form: super::super::containerd_target::ConfigForm::Toml,
            shim_dir: dir.join("usr/local/bin"),
            policy: dir.join("etc/containix/policy.toml"),
        };
        let shim = dir.join("dist/containerd-shim-containix-v1");
        std::fs::create_dir_all(shim.parent().unwrap()).unwrap();
        std::fs::write(&shim, b"#!/bin/false\n").unwrap();
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        (paths, shim)
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                } else {
                    let rel = entry.path().strip_prefix(dir).unwrap().to_owned();
                    out.push(rel.display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn install_then_uninstall_on_real_files() {
        let dir = tempfile::tempdir().unwrap();
        let (paths, shim) = node(dir.path());
        std::fs::create_dir_all(paths.containerd_config.parent().unwrap()).unwrap();
        std::fs::write(&paths.containerd_config, STOCK).unwrap();
        std::fs::set_permissions(
            &paths.containerd_config,
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();

        let state = NodeState::read(&paths, Some(&shim)).unwrap();
        assert_eq!(state.shim, ShimState::Absent);
        let plan = plan_install(&paths, &state, &shim, 2).unwrap();
        apply(&plan).unwrap();
        let installed = std::fs::read_to_string(&paths.containerd_config).unwrap();
        crate::node::containerd_config::check(&installed).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&paths.containerd_config), 0o600, "permissions kept");
        assert_eq!(mode(&paths.shim()), 0o755);
        assert_eq!(std::fs::read(paths.shim()).unwrap(), b"#!/bin/false\n");
        assert_eq!(
            std::fs::read_to_string(&paths.policy).unwrap(),
            DOCUMENTED_DEFAULTS
        );
        // No temp file is left beside any target.
        assert_eq!(
            files(dir.path()),
            [
                "dist/containerd-shim-containix-v1",
                "etc/containerd/config.toml",
                "etc/containix/policy.toml",
                "usr/local/bin/containerd-shim-containix-v1",
            ]
        );

        let again = NodeState::read(&paths, Some(&shim)).unwrap();
        assert_eq!(again.shim, ShimState::Current);
        assert!(plan_install(&paths, &again, &shim, 2).unwrap().is_empty());

        let plan = plan_uninstall(&paths, &again, true).unwrap();
        apply(&plan).unwrap();
        assert_eq!(
            std::fs::read_to_string(&paths.containerd_config).unwrap(),
            STOCK
        );
        assert_eq!(
            files(dir.path()),
            [
                "dist/containerd-shim-containix-v1",
                "etc/containerd/config.toml"
            ]
        );
        assert!(!dir.path().join("etc/containix").exists(), "purged");
        assert!(
            paths.shim_dir.is_dir(),
            "the shim's directory is the host's"
        );
    }

    #[test]
    fn purging_a_policy_outside_a_containix_directory_keeps_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("etc/node");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let policy = elsewhere.join("policy.toml");
        std::fs::write(&policy, DOCUMENTED_DEFAULTS).unwrap();
        apply_step(&NodeStep::RemovePolicy {
            path: policy.clone(),
        })
        .unwrap();
        assert!(!policy.exists());
        assert!(
            elsewhere.is_dir(),
            "an empty directory not named containix stays"
        );
    }

    #[test]
    fn a_write_into_an_unwritable_place_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        let err = replace_file(&blocker.join("sub/config.toml"), b"x", 0o644).unwrap_err();
        assert!(err.to_string().starts_with("creating "), "{err}");
        assert!(err.to_string().contains("file/sub"), "{err}");
    }
}
