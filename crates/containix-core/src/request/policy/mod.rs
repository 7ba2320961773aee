//! Node policy: what pods on this node may ask containix to do.
//!
//! Read from `/etc/containix/policy.toml`, or from the file named by `CONTAINIX_CONFIG` (or a
//! frontend's flag); see [`policy_location`] for the precedence and the old location. A missing
//! default file means the built-in policy; a file that names an unknown key is an error, so a
//! typo never silently weakens the policy. `deploy/node/policy.toml` documents every key.
//!
//! - [`flake_rule`]: `allowed-flake-prefixes` entries, parsed into typed rules.
//! - [`rule_match`]: a parsed flake ref against the rules, local paths resolved on the node
//!   ([`host_paths`]).
//! - [`node_policy`]: the policy as data; [`policy_scope`]: the settings one namespace's pods
//!   get, and the flake ref check under them.
//! - [`policy_file`]: the TOML file; [`policy_location`]: which file; [`policy_report`]: the
//!   effective policy with each value's origin.

pub mod flake_rule;
pub mod host_paths;
pub mod node_policy;
pub mod policy_file;
pub mod policy_location;
pub mod policy_report;
pub mod policy_scope;
pub mod rule_match;
#[cfg(test)]
mod tests;

pub use flake_rule::{FlakeRule, RuleError};
pub use host_paths::{HostFilesystem, HostPaths};
pub use node_policy::{
    DAEMON_SOCKET_ENV, DEFAULT_ALLOWED_PREFIXES, DEFAULT_DAEMON_SOCKET, NamespacePolicy,
    NodePolicy, Realise, host_system,
};
pub use policy_file::{DOCUMENTED_DEFAULTS, ParsedPolicy, PolicyError};
pub use policy_location::{
    DEFAULT_POLICY_PATH, FileOrigin, LEGACY_POLICY_PATH, LoadedPolicy, POLICY_PATH_ENV,
    PolicyLocation, PolicyPaths, locate_policy,
};
pub use policy_report::{PolicyReport, ReportedValue, ValueOrigin};
pub use policy_scope::{AllowedRef, RefNotAllowed, Scope};
pub use rule_match::{Origin, RuleMatch, RuleVerdict, Verdict};
