//! The effective policy for one namespace, each value with where it came from: what
//! `containix config show` prints.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Value, json};

use crate::request::duration::format_duration;

use super::node_policy::DAEMON_SOCKET_ENV;
use super::policy_location::{FileOrigin, LoadedPolicy};

/// Where one value of the effective policy came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ValueOrigin {
    /// The built-in default of the program reading the policy.
    BuiltIn,
    /// A top-level key of the policy file.
    File {
        /// The file.
        path: PathBuf,
    },
    /// A key in the file's `[namespaces.<name>]` table.
    Namespace {
        /// The namespace.
        namespace: String,
        /// The file.
        path: PathBuf,
    },
    /// An environment variable.
    Environment {
        /// Its name.
        variable: String,
    },
    /// A command-line flag.
    Flag {
        /// The flag, e.g. `--realise`.
        flag: String,
    },
}

impl std::fmt::Display for ValueOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueOrigin::BuiltIn => f.write_str("built-in default"),
            ValueOrigin::File { path } => write!(f, "{}", path.display()),
            ValueOrigin::Namespace { namespace, path } => {
                write!(f, "[namespaces.{namespace}] in {}", path.display())
            }
            ValueOrigin::Environment { variable } => write!(f, "environment {variable}"),
            ValueOrigin::Flag { flag } => write!(f, "flag {flag}"),
        }
    }
}

/// One key of the effective policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportedValue {
    /// The policy key (`realise`).
    pub key: &'static str,
    /// Its effective value, as the policy file would write it (`null`: unset).
    pub value: Value,
    /// Where the value came from.
    pub origin: ValueOrigin,
    /// A remark on how the program changed it, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The effective policy for one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyReport {
    /// The policy file, if any.
    pub file: Option<PathBuf>,
    /// How the file was chosen.
    pub file_origin: Option<FileOrigin>,
    /// The namespace asked about.
    pub namespace: Option<String>,
    /// Whether the policy lists that namespace (else the node-wide settings apply).
    pub namespace_listed: bool,
    /// The namespaces the policy lists.
    pub namespaces: Vec<String>,
    /// Every key, in the policy file's order.
    pub values: Vec<ReportedValue>,
    /// Warnings (the old policy location).
    pub warnings: Vec<String>,
}

impl PolicyReport {
    /// The value reported for `key`.
    pub fn value_mut(&mut self, key: &str) -> Option<&mut ReportedValue> {
        self.values.iter_mut().find(|v| v.key == key)
    }
}

impl LoadedPolicy {
    /// The effective policy for pods of `namespace` (the node-wide settings when it is `None`
    /// or not listed), each value with its origin.
    pub fn report(&self, namespace: Option<&str>) -> PolicyReport {
        let policy = &self.policy;
        let scope = policy.scope(namespace);
        let file = self.file.as_ref().map(|(path, _)| path.clone());
        let origin = |key: &str| -> ValueOrigin {
            if let (Some(listed), Some(path)) = (scope.namespace(), &file)
                && self.keys.contains(&format!("namespaces.{listed}.{key}"))
            {
                return ValueOrigin::Namespace {
                    namespace: listed.to_owned(),
                    path: path.clone(),
                };
            }
            match &file {
                Some(path) if self.keys.contains(key) => ValueOrigin::File { path: path.clone() },
                _ => ValueOrigin::BuiltIn,
            }
        };
        let value = |key: &'static str, value: Value| ReportedValue {
            key,
            value,
            origin: origin(key),
            note: None,
        };
        let mut values = vec![
            value(
                "allowed-flake-prefixes",
                json!(
                    scope
                        .allowed_flake_prefixes()
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                ),
            ),
            value("realise", json!(scope.realise().as_str())),
            value(
                "default-timeout",
                json!(format_duration(scope.default_timeout()).to_string()),
            ),
            value(
                "max-timeout",
                json!(format_duration(scope.max_timeout()).to_string()),
            ),
            value("system", json!(policy.system)),
            value("daemon-socket", json!(policy.daemon_socket)),
            value("state-dir", json!(policy.state_dir)),
            value("nix-command", json!(policy.nix_command)),
            value("package-set", json!(policy.package_set)),
            value(
                "resolution-grace",
                json!(format_duration(policy.resolution_grace).to_string()),
            ),
            value(
                "lock-ttl",
                json!(format_duration(policy.lock_ttl).to_string()),
            ),
            value(
                "max-concurrent-evaluations",
                json!(policy.max_concurrent_evaluations),
            ),
            value("store-view", json!(policy.store_view.as_str())),
            value("view-dir", json!(policy.view_dir())),
        ];
        if self.daemon_socket_from_env
            && let Some(socket) = values.iter_mut().find(|v| v.key == "daemon-socket")
        {
            socket.origin = ValueOrigin::Environment {
                variable: DAEMON_SOCKET_ENV.to_owned(),
            };
        }
        PolicyReport {
            file,
            file_origin: self.file.as_ref().map(|(_, origin)| *origin),
            namespace: namespace.map(str::to_owned),
            namespace_listed: scope.namespace().is_some(),
            namespaces: policy.namespaces.keys().cloned().collect(),
            values,
            warnings: self.warnings.clone(),
        }
    }
}
