//! Why a resolution failed. Every error names the container and, once resolution started, the
//! step that failed; messages read well after a `containix: ` prefix.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::request::flake_ref::FlakeRefError;
use crate::request::policy::policy_scope::RefNotAllowed;
use crate::resolve::flake_eval::EvalError;
use crate::store::closure_query::ClosureQueryError;
use crate::store::daemon::build_result::BuildStatus;
use crate::store::daemon::error::{DaemonError, connect_cause};
use crate::store::store_path::StorePath;

use super::step::Step;

/// Why a request could not be resolved to a closure in the local store.
#[derive(Debug, Error)]
pub enum ResolveError {
    /// The node policy refuses the flake ref; nothing was evaluated.
    #[error("container {container}: {source}")]
    NotAllowed {
        /// The container.
        container: String,
        /// The refusal, naming the ref and the allowed prefixes.
        source: Box<RefNotAllowed>,
    },
    /// `containix.dev/packages` was used on a node without `package-set`.
    #[error(
        "container {container}: `containix.dev/packages` needs a package set, and this node's \
         policy sets none (`package-set` in {policy})"
    )]
    NoPackageSet {
        /// The container.
        container: String,
        /// The policy file, or a description of the defaults.
        policy: String,
    },
    /// The policy's `package-set` is not a flake ref.
    #[error("container {container}: the node policy's `package-set`: {source}")]
    BadPackageSet {
        /// The container.
        container: String,
        /// Why it does not parse.
        source: FlakeRefError,
    },
    /// The request names nothing to resolve.
    #[error("container {container}: the request names no store path or package")]
    Empty {
        /// The container.
        container: String,
    },
    /// Evaluating the installable failed; the message names the installable and carries nix's.
    #[error("container {container}: {source}")]
    Eval {
        /// The container.
        container: String,
        /// What nix said.
        source: EvalError,
    },
    /// The deadline passed while `step` was running.
    #[error(
        "container {container}: resolution did not finish within {}s; it was {step}",
        after.as_secs_f64()
    )]
    Timeout {
        /// The container.
        container: String,
        /// What was running.
        step: Step,
        /// The deadline.
        after: Duration,
    },
    /// A path could not be substituted (`EnsurePath` failed). The message leads with the reason
    /// the daemon logged (a download or signature failure) when it logged one, and otherwise
    /// lists the likely causes.
    #[error(
        "container {container}: {path} could not be substituted{}",
        substitute_reason(log, message)
    )]
    Substitute {
        /// The container.
        container: String,
        /// The path.
        path: StorePath,
        /// The daemon's final message (on Nix 2.8 only "... does not exist and cannot be
        /// created").
        message: String,
        /// The warning- or error-looking lines the daemon logged while substituting, oldest
        /// first ([`DaemonError::log_tail`]).
        log: Vec<String>,
    },
    /// Building a derivation failed, or the node may not build and the caches lack it.
    #[error("container {container}: building {drv} failed ({status:?}): {message}")]
    Build {
        /// The container.
        container: String,
        /// The derivation.
        drv: StorePath,
        /// What the daemon reported.
        status: BuildStatus,
        /// The daemon's message.
        message: String,
    },
    /// The closure of the roots could not be walked.
    #[error("container {container}: querying the closure of {root}: {source}")]
    Closure {
        /// The container.
        container: String,
        /// The first root.
        root: StorePath,
        /// What went wrong (boxed: it is large, and this error is rare).
        source: Box<ClosureQueryError>,
    },
    /// Another daemon operation failed.
    #[error("container {container}: {}", daemon_failure(step, source))]
    Daemon {
        /// The container.
        container: String,
        /// What was running.
        step: Step,
        /// The daemon's or the connection's error (boxed: it is large, and this error is rare).
        source: Box<DaemonError>,
    },
    /// The node's state directory (cache, locks) could not be used.
    #[error("container {container}: {action} {}: {source}", path.display())]
    State {
        /// The container.
        container: String,
        /// What was being done, e.g. "locking".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// `<step>: <error>`, saying the daemon's socket once when the step was connecting to it.
fn daemon_failure(step: &Step, source: &DaemonError) -> String {
    match (step, source) {
        (Step::Connecting(_), DaemonError::Connect { path, source }) => {
            format!("{step}: {}", connect_cause(path, source))
        }
        _ => format!("{step}: {source}"),
    }
}

/// The rest of a [`ResolveError::Substitute`] message after "could not be substituted".
fn substitute_reason(log: &[String], message: &str) -> String {
    if log.is_empty() {
        format!(
            " from this node's binary caches (no cache has it, a cache is unreachable, or its \
             signature is not by a key in trusted-public-keys; the nix-daemon's log says which): \
             {message}"
        )
    } else {
        format!(": {}; the daemon then reported: {message}", log.join("; "))
    }
}

impl ResolveError {
    /// The container the failed request was for.
    pub fn container(&self) -> &str {
        match self {
            Self::NotAllowed { container, .. }
            | Self::NoPackageSet { container, .. }
            | Self::BadPackageSet { container, .. }
            | Self::Empty { container }
            | Self::Eval { container, .. }
            | Self::Timeout { container, .. }
            | Self::Substitute { container, .. }
            | Self::Build { container, .. }
            | Self::Closure { container, .. }
            | Self::Daemon { container, .. }
            | Self::State { container, .. } => container,
        }
    }

    /// Whether the deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_errors_lead_with_the_logged_reason() {
        let path =
            StorePath::parse("/nix/store/0c1h5b3ldrb1d8jq6ln5ai3k06h3ipm8-hello-1.0").unwrap();
        let final_message = format!("path '{path}' does not exist and cannot be created");
        let error = |log: Vec<String>| ResolveError::Substitute {
            container: "app".into(),
            path: path.clone(),
            message: final_message.clone(),
            log,
        };
        let reason = "warning: substituter 'http://cache' does not have a valid signature";
        assert_eq!(
            error(vec![reason.into()]).to_string(),
            format!(
                "container app: {path} could not be substituted: {reason}; the daemon then \
                 reported: {final_message}"
            )
        );
        let unexplained = error(vec![]).to_string();
        assert!(
            unexplained.starts_with(&format!(
                "container app: {path} could not be substituted from this node's binary caches \
                 (no cache has it"
            )),
            "{unexplained}"
        );
        assert!(unexplained.ends_with(&final_message), "{unexplained}");
    }
}
