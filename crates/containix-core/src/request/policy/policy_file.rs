//! The policy file: TOML read into a validated [`NodePolicy`]. An unknown key, a wrong type or a
//! bad value is an error naming the key, so a typo never silently weakens the policy.

use crate::request::view_setting::ViewSetting;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::request::clipped::{Clipped, Quoted};
use crate::request::duration::{DurationError, format_duration, parse_duration};

use super::flake_rule::FlakeRule;
use super::node_policy::{NamespacePolicy, NodePolicy, Realise};

/// The policy file `containix node install` writes when a node has none: every key commented
/// with its default (the same text as `deploy/node/policy.toml`).
pub const DOCUMENTED_DEFAULTS: &str = include_str!("default-policy.toml");

/// Why the node policy could not be loaded.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("node policy {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The policy file is not valid TOML or has unknown keys or wrong types.
    #[error("node policy {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's explanation, naming the key.
        message: String,
    },
    /// A duration setting is malformed.
    #[error("node policy {path}: `{key}`: {}", Clipped(.source))]
    Duration {
        /// The file.
        path: PathBuf,
        /// The setting (`namespaces.<name>.<key>` for a namespace's).
        key: String,
        /// What is wrong with it.
        source: DurationError,
    },
    /// A setting has a value outside what it allows.
    #[error("node policy {path}: `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The setting (`namespaces.<name>.<key>` for a namespace's).
        key: String,
        /// What was expected.
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PolicyFile {
    allowed_flake_prefixes: Option<Vec<String>>,
    realise: Option<Realise>,
    default_timeout: Option<String>,
    max_timeout: Option<String>,
    system: Option<String>,
    daemon_socket: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    nix_command: Option<PathBuf>,
    package_set: Option<String>,
    resolution_grace: Option<String>,
    lock_ttl: Option<String>,
    max_concurrent_evaluations: Option<i64>,
    store_view: Option<ViewSetting>,
    view_dir: Option<PathBuf>,
    namespaces: Option<BTreeMap<String, NamespaceFile>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct NamespaceFile {
    allowed_flake_prefixes: Option<Vec<String>>,
    realise: Option<Realise>,
    default_timeout: Option<String>,
    max_timeout: Option<String>,
}

/// A policy read from a file: the policy, and which keys the file set (`realise`,
/// `namespaces.team-a.realise`, ...), so that the others can be reported as defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPolicy {
    /// The policy, with absent keys taken from the defaults given.
    pub policy: NodePolicy,
    /// The keys the file set.
    pub keys: BTreeSet<String>,
}

impl NodePolicy {
    /// Reads and validates one policy file; absent keys take the node's defaults.
    pub fn from_file(path: &Path) -> Result<Self, PolicyError> {
        Ok(Self::read_file(path, &NodePolicy::default())?.policy)
    }

    /// Parses policy TOML over the node's defaults; `path` is only used in error messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, PolicyError> {
        Ok(Self::parse_toml(text, path, &NodePolicy::default())?.policy)
    }

    /// Reads one policy file; absent keys take their value from `defaults`.
    pub fn read_file(path: &Path, defaults: &NodePolicy) -> Result<ParsedPolicy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_toml(&text, path, defaults)
    }

    /// Parses policy TOML; absent keys take their value from `defaults`.
    pub fn parse_toml(
        text: &str,
        path: &Path,
        defaults: &NodePolicy,
    ) -> Result<ParsedPolicy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|err| PolicyError::Parse {
            path: path.to_owned(),
            message: err.message().to_owned(),
        })?;
        let keys = keys_set(&file);
        let check = Checker { path };
        let mut namespaces = BTreeMap::new();
        for (name, settings) in file.namespaces.unwrap_or_default() {
            if !is_namespace_name(&name) {
                return Err(check.invalid(
                    "namespaces".to_owned(),
                    format!(
                        "{} is not a Kubernetes namespace name (lower-case letters, digits \
                         and `-`, at most 63, starting and ending with a letter or digit)",
                        Quoted(&name)
                    ),
                ));
            }
            let key = |k: &str| format!("namespaces.{name}.{k}");
            let overrides = NamespacePolicy {
                allowed_flake_prefixes: settings
                    .allowed_flake_prefixes
                    .map(|p| check.rules(&key("allowed-flake-prefixes"), &p))
                    .transpose()?,
                realise: settings.realise,
                default_timeout: settings
                    .default_timeout
                    .map(|t| check.duration(&key("default-timeout"), &t))
                    .transpose()?,
                max_timeout: settings
                    .max_timeout
                    .map(|t| check.duration(&key("max-timeout"), &t))
                    .transpose()?,
            };
            namespaces.insert(name, overrides);
        }
        let policy = NodePolicy {
            allowed_flake_prefixes: match file.allowed_flake_prefixes {
                Some(prefixes) => check.rules("allowed-flake-prefixes", &prefixes)?,
                None => defaults.allowed_flake_prefixes.clone(),
            },
            realise: file.realise.unwrap_or(defaults.realise),
            default_timeout: match file.default_timeout {
                Some(text) => check.duration("default-timeout", &text)?,
                None => defaults.default_timeout,
            },
            max_timeout: match file.max_timeout {
                Some(text) => check.duration("max-timeout", &text)?,
                None => defaults.max_timeout,
            },
            namespaces,
            system: file.system.unwrap_or_else(|| defaults.system.clone()),
            daemon_socket: file
                .daemon_socket
                .unwrap_or_else(|| defaults.daemon_socket.clone()),
            state_dir: file.state_dir.unwrap_or_else(|| defaults.state_dir.clone()),
            nix_command: file
                .nix_command
                .unwrap_or_else(|| defaults.nix_command.clone()),
            package_set: file.package_set.or_else(|| defaults.package_set.clone()),
            resolution_grace: match file.resolution_grace {
                Some(text) => check.duration("resolution-grace", &text)?,
                None => defaults.resolution_grace,
            },
            lock_ttl: match file.lock_ttl {
                Some(text) => check.duration("lock-ttl", &text)?,
                None => defaults.lock_ttl,
            },
            max_concurrent_evaluations: match file.max_concurrent_evaluations {
                Some(n) => usize::try_from(n)
                    .ok()
                    .filter(|n| (1..=1024).contains(n))
                    .ok_or_else(|| {
                        check.invalid(
                            "max-concurrent-evaluations".to_owned(),
                            format!("{n} is not a number of evaluations from 1 to 1024"),
                        )
                    })?,
                None => defaults.max_concurrent_evaluations,
            },
            store_view: file.store_view.unwrap_or(defaults.store_view),
            view_dir: file.view_dir.or_else(|| defaults.view_dir.clone()),
            source: Some(path.to_owned()),
        };
        check.timeouts(
            "default-timeout",
            policy.default_timeout,
            policy.max_timeout,
        )?;
        for name in policy.namespaces.keys() {
            let scope = policy.scope(Some(name));
            check.timeouts(
                &format!("namespaces.{name}.default-timeout"),
                scope.default_timeout(),
                scope.max_timeout(),
            )?;
        }
        let valid_system = policy.system.split_once('-').is_some_and(|(arch, os)| {
            !arch.is_empty()
                && !os.is_empty()
                && policy
                    .system
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
        if !valid_system {
            return Err(check.invalid(
                "system".to_owned(),
                format!(
                    "{:?} is not a Nix system such as \"x86_64-linux\"",
                    policy.system
                ),
            ));
        }
        for (key, dir) in [
            ("daemon-socket", &policy.daemon_socket),
            ("state-dir", &policy.state_dir),
            ("view-dir", &policy.view_dir()),
        ] {
            if !dir.is_absolute() {
                return Err(check.invalid(
                    key.to_owned(),
                    format!("{} is not an absolute path", dir.display()),
                ));
            }
        }
        Ok(ParsedPolicy { policy, keys })
    }
}

/// Builds errors that name the file.
struct Checker<'a> {
    path: &'a Path,
}

impl Checker<'_> {
    fn invalid(&self, key: String, message: String) -> PolicyError {
        PolicyError::Invalid {
            path: self.path.to_owned(),
            key,
            message,
        }
    }

    fn duration(&self, key: &str, text: &str) -> Result<Duration, PolicyError> {
        parse_duration(text).map_err(|source| PolicyError::Duration {
            path: self.path.to_owned(),
            key: key.to_owned(),
            source,
        })
    }

    fn rules(&self, key: &str, prefixes: &[String]) -> Result<Vec<FlakeRule>, PolicyError> {
        prefixes
            .iter()
            .map(|prefix| {
                FlakeRule::parse(prefix).map_err(|err| {
                    self.invalid(
                        key.to_owned(),
                        format!("{} is not a flake ref prefix: {err}", Quoted(prefix)),
                    )
                })
            })
            .collect()
    }

    fn timeouts(&self, key: &str, default: Duration, max: Duration) -> Result<(), PolicyError> {
        if default > max {
            return Err(self.invalid(
                key.to_owned(),
                format!(
                    "{} exceeds max-timeout {}",
                    format_duration(default),
                    format_duration(max)
                ),
            ));
        }
        Ok(())
    }
}

/// The keys a file sets, namespaced ones as `namespaces.<name>.<key>`.
fn keys_set(file: &PolicyFile) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let top = [
        (
            "allowed-flake-prefixes",
            file.allowed_flake_prefixes.is_some(),
        ),
        ("realise", file.realise.is_some()),
        ("default-timeout", file.default_timeout.is_some()),
        ("max-timeout", file.max_timeout.is_some()),
        ("system", file.system.is_some()),
        ("daemon-socket", file.daemon_socket.is_some()),
        ("state-dir", file.state_dir.is_some()),
        ("nix-command", file.nix_command.is_some()),
        ("package-set", file.package_set.is_some()),
        ("resolution-grace", file.resolution_grace.is_some()),
        ("lock-ttl", file.lock_ttl.is_some()),
        (
            "max-concurrent-evaluations",
            file.max_concurrent_evaluations.is_some(),
        ),
        ("store-view", file.store_view.is_some()),
        ("view-dir", file.view_dir.is_some()),
    ];
    keys.extend(
        top.iter()
            .filter(|(_, set)| *set)
            .map(|(k, _)| (*k).to_owned()),
    );
    for (name, settings) in file.namespaces.iter().flatten() {
        let namespaced = [
            (
                "allowed-flake-prefixes",
                settings.allowed_flake_prefixes.is_some(),
            ),
            ("realise", settings.realise.is_some()),
            ("default-timeout", settings.default_timeout.is_some()),
            ("max-timeout", settings.max_timeout.is_some()),
        ];
        keys.extend(
            namespaced
                .iter()
                .filter(|(_, set)| *set)
                .map(|(k, _)| format!("namespaces.{name}.{k}")),
        );
    }
    keys
}

/// A Kubernetes namespace name: an RFC 1123 label.
pub fn is_namespace_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}
