//! Where a volume's closure comes from: the seam between the plugin and closure resolution.
//!
//! TODO(resolver): `containix_core::resolver::Resolver` is merged; implement [`ClosureSource`]
//! for it (flake refs, packages and store paths, with its step-naming deadline errors) and make
//! it the binary's source. Until then [`StorePathsSource`] serves `storePaths` volumes over the
//! daemon protocol and refuses the other sources with a clear error.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use containix_core::closure_query::{ClosureQueryError, query_closure};
use containix_core::daemon::{DaemonClient, DaemonError};
use containix_core::request::{Request, Source};
use containix_core::resolved::Resolved;
use containix_core::volume_attributes::{FLAKE_REF, PACKAGES};
use thiserror::Error;
use tokio::time::Instant;

/// A resolved closure and the daemon connection that resolved it. The connection holds a
/// temporary GC root on every root until it is dropped, so the closure cannot be collected
/// before the volume's own GC root is registered through it.
#[derive(Debug)]
pub struct Resolution {
    /// The roots and their closure.
    pub resolved: Resolved,
    /// The connection holding the temporary roots.
    pub daemon: DaemonClient,
}

/// Why a closure could not be resolved.
#[derive(Debug, Error)]
pub enum ResolveError {
    /// The deadline passed; `step` says what was under way.
    #[error("timed out after {}s while {step}", timeout.as_secs())]
    DeadlineExceeded {
        /// What was under way.
        step: String,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// The Nix daemon could not be reached.
    #[error("{step}: {source}")]
    DaemonUnavailable {
        /// What was under way.
        step: String,
        /// The connection error.
        source: DaemonError,
    },
    /// A root is not in the store and could not be substituted.
    #[error("{step}: {message}")]
    NotFound {
        /// What was under way.
        step: String,
        /// The daemon's explanation.
        message: String,
    },
    /// This source cannot serve the request's kind of source.
    #[error("volume attribute `{attribute}`: {message}")]
    Unsupported {
        /// The attribute naming the source.
        attribute: &'static str,
        /// Why, and what works instead.
        message: &'static str,
    },
    /// Anything else that failed, with the step.
    #[error("{step}: {message}")]
    Failed {
        /// What was under way.
        step: String,
        /// What went wrong.
        message: String,
    },
}

impl ResolveError {
    /// The step under way when resolution failed, if the error names one.
    pub fn step(&self) -> Option<&str> {
        match self {
            Self::DeadlineExceeded { step, .. }
            | Self::DaemonUnavailable { step, .. }
            | Self::NotFound { step, .. }
            | Self::Failed { step, .. } => Some(step),
            Self::Unsupported { .. } => None,
        }
    }
}

/// Resolves a request to a closure in the local store, within a deadline.
pub trait ClosureSource: Send + Sync + 'static {
    /// Resolves `request`, failing with [`ResolveError::DeadlineExceeded`] after `timeout`.
    fn resolve(
        &self,
        request: &Request,
        timeout: Duration,
    ) -> impl Future<Output = Result<Resolution, ResolveError>> + Send;
}

/// Resolves pinned store paths: makes each valid (substituting it when the daemon's caches have
/// it) under a temporary root, then queries the closure.
#[derive(Debug, Clone)]
pub struct StorePathsSource {
    socket: PathBuf,
}

impl StorePathsSource {
    /// A source talking to the daemon at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }
}

/// Runs one step of a resolution before `deadline`, naming the step when it times out.
async fn step<T>(
    deadline: Instant,
    timeout: Duration,
    step: &str,
    future: impl Future<Output = T>,
) -> Result<T, ResolveError> {
    tokio::time::timeout_at(deadline, future)
        .await
        .map_err(|_| ResolveError::DeadlineExceeded {
            step: step.to_owned(),
            timeout,
        })
}

impl ClosureSource for StorePathsSource {
    async fn resolve(
        &self,
        request: &Request,
        timeout: Duration,
    ) -> Result<Resolution, ResolveError> {
        let roots = match &request.source {
            Source::StorePaths(paths) => paths.clone(),
            Source::Flake(_) => {
                return Err(ResolveError::Unsupported {
                    attribute: FLAKE_REF,
                    message: "flake refs are not resolved by this build of containix-csi yet; \
                              pin the store paths with `storePaths`",
                });
            }
            Source::Packages(_) => {
                return Err(ResolveError::Unsupported {
                    attribute: PACKAGES,
                    message: "packages are not resolved by this build of containix-csi yet; \
                              pin the store paths with `storePaths`",
                });
            }
        };
        let deadline = Instant::now() + timeout;
        let connecting = format!("connecting to the Nix daemon at {}", self.socket.display());
        let mut daemon = step(
            deadline,
            timeout,
            &connecting,
            DaemonClient::connect(&self.socket),
        )
        .await?
        .map_err(|source| ResolveError::DaemonUnavailable {
            step: connecting.clone(),
            source,
        })?;
        for root in &roots {
            let protecting = format!("protecting {root} with a temporary GC root");
            step(deadline, timeout, &protecting, daemon.add_temp_root(root))
                .await?
                .map_err(|error| failed(&protecting, error))?;
            let ensuring = format!("making {root} valid (substituting it if needed)");
            step(deadline, timeout, &ensuring, daemon.ensure_path(root))
                .await?
                .map_err(|error| match error {
                    DaemonError::Daemon { .. } => ResolveError::NotFound {
                        step: ensuring.clone(),
                        message: error.to_string(),
                    },
                    other => failed(&ensuring, other),
                })?;
        }
        let querying = format!("querying the closure of {} root(s)", roots.len());
        let closure = step(
            deadline,
            timeout,
            &querying,
            query_closure(&mut daemon, &roots),
        )
        .await?
        .map_err(|error| match error {
            ClosureQueryError::InvalidRoot(_) => ResolveError::NotFound {
                step: querying.clone(),
                message: error.to_string(),
            },
            other => failed(&querying, other),
        })?;
        Ok(Resolution {
            resolved: Resolved {
                roots,
                closure,
                main_program: None,
                package_name: None,
                package_version: None,
            },
            daemon,
        })
    }
}

fn failed(step: &str, error: impl std::fmt::Display) -> ResolveError {
    ResolveError::Failed {
        step: step.to_owned(),
        message: error.to_string(),
    }
}
