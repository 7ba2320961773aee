//! Which policy file applies, and loading it.
//!
//! Precedence: a file named by the caller (the CLI's `--policy`, the CSI plugin's `--config`),
//! else `CONTAINIX_CONFIG`, else `/etc/containix/policy.toml`, else the built-in policy. Until
//! every node has moved, the old location `/etc/containix/config.toml` is read when the new one
//! does not exist, with a warning; when both exist the old one is ignored, with a warning.
//! Then `NIX_DAEMON_SOCKET_PATH` overrides the daemon socket, as it does for Nix.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::node_policy::{DAEMON_SOCKET_ENV, NodePolicy};
use super::policy_file::PolicyError;

/// Where the policy file lives unless a flag or `CONTAINIX_CONFIG` names another.
pub const DEFAULT_POLICY_PATH: &str = "/etc/containix/policy.toml";

/// Where containix 0.1 kept the policy file; read (with a warning) when the default is absent.
pub const LEGACY_POLICY_PATH: &str = "/etc/containix/config.toml";

/// Environment variable naming another policy file (tests use it).
pub const POLICY_PATH_ENV: &str = "CONTAINIX_CONFIG";

/// How a policy file was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FileOrigin {
    /// Named on the command line.
    Flag,
    /// Named by `CONTAINIX_CONFIG`.
    Environment,
    /// Found at [`DEFAULT_POLICY_PATH`].
    DefaultPath,
    /// Found at [`LEGACY_POLICY_PATH`].
    LegacyPath,
}

impl FileOrigin {
    /// A short phrase for people.
    pub fn describe(self) -> &'static str {
        match self {
            FileOrigin::Flag => "named on the command line",
            FileOrigin::Environment => "named by CONTAINIX_CONFIG",
            FileOrigin::DefaultPath => "the default location",
            FileOrigin::LegacyPath => "the old default location",
        }
    }
}

/// The default and old policy paths (tests point them elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPaths {
    /// [`DEFAULT_POLICY_PATH`].
    pub default: PathBuf,
    /// [`LEGACY_POLICY_PATH`].
    pub legacy: PathBuf,
}

impl Default for PolicyPaths {
    fn default() -> Self {
        Self {
            default: PathBuf::from(DEFAULT_POLICY_PATH),
            legacy: PathBuf::from(LEGACY_POLICY_PATH),
        }
    }
}

/// The policy file that applies, if any, and what to warn about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLocation {
    /// The file and how it was chosen; `None` means the built-in policy.
    pub file: Option<(PathBuf, FileOrigin)>,
    /// Warnings about the old location.
    pub warnings: Vec<String>,
}

/// Picks the policy file. Pure: `env` is `CONTAINIX_CONFIG`'s value and `exists` says whether
/// a path exists.
pub fn locate_policy(
    flag: Option<&Path>,
    env: Option<OsString>,
    paths: &PolicyPaths,
    exists: &dyn Fn(&Path) -> bool,
) -> PolicyLocation {
    let mut warnings = Vec::new();
    let file = if let Some(path) = flag {
        Some((path.to_owned(), FileOrigin::Flag))
    } else if let Some(path) = env.filter(|v| !v.is_empty()) {
        Some((PathBuf::from(path), FileOrigin::Environment))
    } else if exists(&paths.default) {
        if exists(&paths.legacy) {
            warnings.push(format!(
                "{} is ignored: {} takes its place; remove the old file",
                paths.legacy.display(),
                paths.default.display()
            ));
        }
        Some((paths.default.clone(), FileOrigin::DefaultPath))
    } else if exists(&paths.legacy) {
        warnings.push(format!(
            "reading the node policy from {}, its old location; move it to {}",
            paths.legacy.display(),
            paths.default.display()
        ));
        Some((paths.legacy.clone(), FileOrigin::LegacyPath))
    } else {
        None
    };
    PolicyLocation { file, warnings }
}

/// A loaded policy and where each part of it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedPolicy {
    /// The policy.
    pub policy: NodePolicy,
    /// The file it was read from and how that was chosen; `None`: the built-in policy.
    pub file: Option<(PathBuf, FileOrigin)>,
    /// The keys the file set (`namespaces.<name>.<key>` for a namespace's).
    pub keys: BTreeSet<String>,
    /// Whether `NIX_DAEMON_SOCKET_PATH` set the daemon socket.
    pub daemon_socket_from_env: bool,
    /// Warnings to show (the old policy location).
    pub warnings: Vec<String>,
}

impl NodePolicy {
    /// Loads the policy the environment points at, over the node's built-in policy (see the
    /// module documentation for the precedence), and logs any warning.
    pub fn load() -> Result<Self, PolicyError> {
        let loaded = Self::load_with(None, &NodePolicy::default())?;
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        Ok(loaded.policy)
    }

    /// Loads the policy file `flag` names, else the one the environment points at; absent keys
    /// take their value from `builtin`. A named file (flag or `CONTAINIX_CONFIG`) must exist.
    pub fn load_with(
        flag: Option<&Path>,
        builtin: &NodePolicy,
    ) -> Result<LoadedPolicy, PolicyError> {
        let location = locate_policy(
            flag,
            std::env::var_os(POLICY_PATH_ENV),
            &PolicyPaths::default(),
            &|path| path.exists(),
        );
        Self::load_from(location, builtin, std::env::var_os(DAEMON_SOCKET_ENV))
    }

    /// Loads the policy at `location` over `builtin`, then applies `daemon_socket_env`
    /// (`NIX_DAEMON_SOCKET_PATH`'s value).
    pub fn load_from(
        location: PolicyLocation,
        builtin: &NodePolicy,
        daemon_socket_env: Option<OsString>,
    ) -> Result<LoadedPolicy, PolicyError> {
        let (mut policy, keys) = match &location.file {
            Some((path, _)) => {
                let parsed = Self::read_file(path, builtin)?;
                (parsed.policy, parsed.keys)
            }
            None => (builtin.clone(), BTreeSet::new()),
        };
        let socket = daemon_socket_env.filter(|v| !v.is_empty());
        let daemon_socket_from_env = socket.is_some();
        if let Some(socket) = socket {
            policy.daemon_socket = PathBuf::from(socket);
        }
        Ok(LoadedPolicy {
            policy,
            file: location.file,
            keys,
            daemon_socket_from_env,
            warnings: location.warnings,
        })
    }
}
