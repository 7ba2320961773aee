//! Which step of a resolution is running, and the deadline every step shares.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use crate::store::store_path::StorePath;

/// One step of a resolution. Its `Display` completes "... did not finish while `<step>`" and
/// "`<step>: <error>`", e.g. `substituting /nix/store/...-hello-1.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Waiting for another resolution of the same locked installable on this node.
    WaitingForLock(String),
    /// Waiting for one of the node's evaluation slots (`max-concurrent-evaluations`, the
    /// number given) to run `nix`.
    WaitingForEvaluationSlot(usize),
    /// Locking a flake ref with `nix flake metadata`.
    Locking(String),
    /// Evaluating an installable with `nix eval`.
    Evaluating(String),
    /// Connecting to the Nix daemon.
    Connecting(PathBuf),
    /// Protecting paths from garbage collection for the rest of the resolution.
    Protecting(StorePath),
    /// Fetching a path from a binary cache (`EnsurePath`).
    Substituting(StorePath),
    /// Building (or substituting) the outputs of derivations.
    Building(Vec<StorePath>),
    /// Walking the references of the roots.
    QueryingClosure(StorePath),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::WaitingForLock(key) => {
                write!(f, "waiting for another resolution of {key} on this node")
            }
            Step::WaitingForEvaluationSlot(slots) => write!(
                f,
                "waiting for one of the {slots} evaluation slots of this node"
            ),
            Step::Locking(flake) => write!(f, "locking {flake}"),
            Step::Evaluating(installable) => write!(f, "evaluating {installable}"),
            Step::Connecting(socket) => {
                write!(f, "connecting to the Nix daemon at {}", socket.display())
            }
            Step::Protecting(path) => write!(f, "protecting {path} from garbage collection"),
            Step::Substituting(path) => write!(f, "substituting {path}"),
            Step::Building(drvs) => {
                f.write_str("building ")?;
                for (i, drv) in drvs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{drv}")?;
                }
                Ok(())
            }
            Step::QueryingClosure(path) => write!(f, "querying the closure of {path}"),
        }
    }
}

/// The point in time by which a whole resolution must be done.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: Instant,
    total: Duration,
}

/// The deadline passed while a step was running.
#[derive(Debug)]
pub(crate) struct Expired;

impl Deadline {
    /// A deadline `total` from now.
    pub(crate) fn after(total: Duration) -> Self {
        Self {
            at: Instant::now() + total,
            total,
        }
    }

    /// The whole time allowed.
    pub(crate) fn total(&self) -> Duration {
        self.total
    }

    /// Time left, zero once passed.
    pub(crate) fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// The instant it passes.
    pub(crate) fn instant(&self) -> Instant {
        self.at
    }

    /// Runs `future` until it finishes or the deadline passes (then it is dropped, which
    /// cancels it).
    pub(crate) async fn run<T>(&self, future: impl Future<Output = T>) -> Result<T, Expired> {
        tokio::time::timeout_at(self.at, future)
            .await
            .map_err(|_| Expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_read_as_phrases() {
        let path =
            StorePath::parse("/nix/store/0c1h5b3ldrb1d8jq6ln5ai3k06h3ipm8-hello-1.0").unwrap();
        let drv =
            StorePath::parse("/nix/store/ar25pqwqc1pfzvpw69sln376hqy1bn07-hello-1.0.drv").unwrap();
        assert_eq!(
            Step::Substituting(path.clone()).to_string(),
            format!("substituting {path}")
        );
        assert_eq!(
            Step::QueryingClosure(path.clone()).to_string(),
            format!("querying the closure of {path}")
        );
        assert_eq!(
            Step::Building(vec![drv.clone(), drv.clone()]).to_string(),
            format!("building {drv}, {drv}")
        );
        assert_eq!(
            Step::Evaluating("github:o/r#x".into()).to_string(),
            "evaluating github:o/r#x"
        );
    }
}
