//! The node as an install sees it: the paths it touches and what is at them now.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::containerd_target::ConfigForm;
use super::error::NodeInstallError;
use crate::node::containerd_config::{DEFAULT_CONFIG_PATH, SHIM_BINARY};
use crate::request::policy::policy_location::{DEFAULT_POLICY_PATH, LEGACY_POLICY_PATH};

/// Where the shim goes unless told otherwise: on the PATH of every systemd unit.
pub const DEFAULT_SHIM_DIR: &str = "/usr/local/bin";

/// The files an install touches, as paths on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePaths {
    /// containerd's config file, or the k3s/RKE2 template it is rendered from.
    pub containerd_config: PathBuf,
    /// Whether [`NodePaths::containerd_config`] is TOML or a template.
    pub config_form: ConfigForm,
    /// The directory the shim binary goes into (must be on containerd's PATH).
    pub shim_dir: PathBuf,
    /// The node policy file.
    pub policy: PathBuf,
}

impl Default for NodePaths {
    fn default() -> Self {
        Self {
            containerd_config: PathBuf::from(DEFAULT_CONFIG_PATH),
            config_form: ConfigForm::Toml,
            shim_dir: PathBuf::from(DEFAULT_SHIM_DIR),
            policy: PathBuf::from(DEFAULT_POLICY_PATH),
        }
    }
}

impl NodePaths {
    /// The installed shim's path.
    pub fn shim(&self) -> PathBuf {
        self.shim_dir.join(SHIM_BINARY)
    }

    /// The same paths seen from a container that has the host's `/` mounted at `root` (the
    /// installer DaemonSet). Every path must be absolute.
    pub fn under_root(&self, root: &Path) -> Result<NodePaths, NodeInstallError> {
        Ok(NodePaths {
            containerd_config: under_root(root, &self.containerd_config)?,
            config_form: self.config_form,
            shim_dir: under_root(root, &self.shim_dir)?,
            policy: under_root(root, &self.policy)?,
        })
    }
}

/// The old policy file beside `policy` when `policy` is the default location (under any host
/// root): `/etc/containix/config.toml` for `/etc/containix/policy.toml`.
pub fn legacy_policy(policy: &Path) -> Option<PathBuf> {
    let relative = |path: &'static str| path.trim_start_matches('/');
    let old = Path::new(relative(LEGACY_POLICY_PATH));
    policy
        .ends_with(relative(DEFAULT_POLICY_PATH))
        .then(|| policy.with_file_name(old.file_name().unwrap_or_default()))
}

/// The absolute node path `path` as seen from a container with the host's `/` at `root`.
pub fn under_root(root: &Path, path: &Path) -> Result<PathBuf, NodeInstallError> {
    if !path.is_absolute() {
        return Err(NodeInstallError::RelativePath(path.to_owned()));
    }
    let relative: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir))
        .collect();
    Ok(root.join(relative))
}

/// How the installed shim compares with the one to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShimState {
    /// No shim at the target path.
    Absent,
    /// The same bytes are installed.
    Current,
    /// Another file is there (an older or newer containix, or something else by that name).
    Different,
}

/// What the node looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// containerd's config text (or its template's); `None` when there is no file (containerd
    /// then runs on its built-in defaults, k3s and RKE2 on theirs).
    pub containerd_config: Option<String>,
    /// The installed shim.
    pub shim: ShimState,
    /// Whether a node policy file exists.
    pub policy_exists: bool,
}

impl NodeState {
    /// Reads the node. `shim_source` is the shim to install (compared byte for byte with the
    /// installed one); `None` when uninstalling.
    pub fn read(paths: &NodePaths, shim_source: Option<&Path>) -> Result<Self, NodeInstallError> {
        if let Some(source) = shim_source {
            check_shim_source(source)?;
        }
        let containerd_config = match std::fs::read_to_string(&paths.containerd_config) {
            Ok(text) => Some(text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(NodeInstallError::Read {
                    path: paths.containerd_config.clone(),
                    source,
                });
            }
        };
        let installed = paths.shim();
        let shim = match std::fs::symlink_metadata(&installed) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => ShimState::Absent,
            Err(source) => {
                return Err(NodeInstallError::Read {
                    path: installed,
                    source,
                });
            }
            Ok(_) => match shim_source {
                Some(source) if same_contents(source, &installed)? => ShimState::Current,
                _ => ShimState::Different,
            },
        };
        // A node still on the old policy location has a policy: writing the defaults to the new
        // one would shadow it.
        let policy_exists = paths.policy.symlink_metadata().is_ok()
            || legacy_policy(&paths.policy).is_some_and(|old| old.symlink_metadata().is_ok());
        Ok(NodeState {
            containerd_config,
            shim,
            policy_exists,
        })
    }
}

/// The shim to install must be a regular, executable file.
fn check_shim_source(path: &Path) -> Result<(), NodeInstallError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path).map_err(|source| NodeInstallError::ShimSource {
        path: path.to_owned(),
        reason: source.to_string(),
    })?;
    if !metadata.is_file() || metadata.permissions().mode() & 0o111 == 0 {
        return Err(NodeInstallError::ShimSource {
            path: path.to_owned(),
            reason: "not an executable file".to_owned(),
        });
    }
    Ok(())
}

/// Whether two files hold the same bytes (compared in chunks, without reading either whole).
fn same_contents(a: &Path, b: &Path) -> Result<bool, NodeInstallError> {
    let open = |path: &Path| {
        std::fs::File::open(path).map_err(|source| NodeInstallError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let (mut file_a, mut file_b) = (open(a)?, open(b)?);
    let length = |file: &std::fs::File, path: &Path| {
        file.metadata()
            .map(|m| m.len())
            .map_err(|source| NodeInstallError::Read {
                path: path.to_owned(),
                source,
            })
    };
    if length(&file_a, a)? != length(&file_b, b)? {
        return Ok(false);
    }
    let read = |file: &mut std::fs::File, buf: &mut [u8], path: &Path| {
        read_full(file, buf).map_err(|source| NodeInstallError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let mut chunk_a = vec![0u8; 1 << 16];
    let mut chunk_b = vec![0u8; 1 << 16];
    loop {
        let n = read(&mut file_a, &mut chunk_a, a)?;
        let m = read(&mut file_b, &mut chunk_b, b)?;
        if n != m || chunk_a[..n] != chunk_b[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Fills `buf` as far as the file allows; the count is short only at the end of the file.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_rebase_under_a_host_root() {
        let paths = NodePaths::default().under_root(Path::new("/host")).unwrap();
        assert_eq!(
            paths.containerd_config,
            Path::new("/host/etc/containerd/config.toml")
        );
        assert_eq!(
            paths.shim(),
            Path::new("/host/usr/local/bin/containerd-shim-containix-v1")
        );
        assert_eq!(paths.policy, Path::new("/host/etc/containix/policy.toml"));
        assert_eq!(
            legacy_policy(&paths.policy).unwrap(),
            Path::new("/host/etc/containix/config.toml")
        );
        assert_eq!(legacy_policy(Path::new("/etc/node.toml")), None);
        let relative = NodePaths {
            shim_dir: PathBuf::from("bin"),
            ..NodePaths::default()
        };
        assert!(matches!(
            relative.under_root(Path::new("/host")),
            Err(NodeInstallError::RelativePath(_))
        ));
    }

    #[test]
    fn state_reads_config_shim_and_policy() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = NodePaths {
            containerd_config: dir.path().join("etc/containerd/config.toml"),
            config_form: ConfigForm::Toml,
            shim_dir: dir.path().join("bin"),
            policy: dir.path().join("etc/containix/policy.toml"),
        };
        let source = dir.path().join("shim");
        std::fs::write(&source, vec![7u8; 200_000]).unwrap();
        std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o755)).unwrap();

        let empty = NodeState::read(&paths, Some(&source)).unwrap();
        assert_eq!(
            empty,
            NodeState {
                containerd_config: None,
                shim: ShimState::Absent,
                policy_exists: false
            }
        );
        std::fs::create_dir_all(&paths.shim_dir).unwrap();
        std::fs::copy(&source, paths.shim()).unwrap();
        assert_eq!(
            NodeState::read(&paths, Some(&source)).unwrap().shim,
            ShimState::Current
        );
        let mut other = vec![7u8; 200_000];
        other[150_000] = 8;
        std::fs::write(paths.shim(), other).unwrap();
        assert_eq!(
            NodeState::read(&paths, Some(&source)).unwrap().shim,
            ShimState::Different
        );
        assert_eq!(
            NodeState::read(&paths, None).unwrap().shim,
            ShimState::Different
        );

        std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = NodeState::read(&paths, Some(&source)).unwrap_err();
        assert!(err.to_string().contains("not an executable file"), "{err}");
        let err = NodeState::read(&paths, Some(&dir.path().join("nope"))).unwrap_err();
        assert!(err.to_string().contains("--shim"), "{err}");

        // A policy at the old location counts: the defaults are not written over it.
        let old = dir.path().join("etc/containix/config.toml");
        std::fs::create_dir_all(old.parent().unwrap()).unwrap();
        std::fs::write(&old, "realise = \"build\"\n").unwrap();
        assert!(NodeState::read(&paths, None).unwrap().policy_exists);
    }
}
