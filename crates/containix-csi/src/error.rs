//! The plugin's errors and the gRPC codes the CSI specification asks for.

use std::time::Duration;

use containix_core::assemble::closure_mount::ClosureMountError;
use containix_core::assemble::view::error::ViewError;
use containix_core::request::volume_attributes::{VOLUME_CONTAINER, VolumeAttributeError};
use containix_core::resolve::flake_eval::EvalError;
use containix_core::resolve::{ResolveError, Step};
use containix_core::store::closure_query::ClosureQueryError;
use containix_core::store::daemon::{BuildStatus, DaemonError};
use containix_core::store::gc_roots::GcRootError;
use thiserror::Error;
use tonic::{Code, Status};

use crate::volume_state::StateError;

/// Why a Node call failed.
#[derive(Debug, Error)]
pub enum NodeError {
    /// A required request field is empty.
    #[error("`{field}` is required")]
    MissingField {
        /// The field, as the CSI spec names it.
        field: &'static str,
    },
    /// A request field has a value the plugin cannot serve.
    #[error("`{field}`: {message}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What was expected.
        message: String,
    },
    /// The volume attributes were refused.
    #[error(transparent)]
    Attributes(#[from] VolumeAttributeError),
    /// The volume is already published differently (another target, mode or attributes).
    #[error("volume {volume_id:?} is already published {how}")]
    Incompatible {
        /// The volume.
        volume_id: String,
        /// How it is published.
        how: String,
    },
    /// Another call for the same volume is under way.
    #[error("an operation on volume {volume_id:?} is already in progress")]
    Busy {
        /// The volume.
        volume_id: String,
    },
    /// The closure the volume attribute names could not be resolved; the message names the
    /// attribute and, once resolution started, the step that failed.
    #[error("volume attribute `{attribute}`: {}", resolve_message(source))]
    Resolve {
        /// The attribute naming the source: `flakeRef`, `storePaths` or `packages`.
        attribute: &'static str,
        /// Why resolution failed (boxed: it is large, and failures are rare).
        source: Box<ResolveError>,
    },
    /// The publish deadline passed after resolution, while `step` was running.
    #[error("publishing did not finish within {}s; it was {step}", after.as_secs_f64())]
    Timeout {
        /// What was running.
        step: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// Mounting or unmounting failed.
    #[error(transparent)]
    Mount(#[from] ClosureMountError),
    /// The volume records could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The GC root could not be held or released.
    #[error(transparent)]
    GcRoot(#[from] GcRootError),
    /// The closure's store view could not be made or let go.
    #[error(transparent)]
    View(#[from] Box<ViewError>),
    /// No published volume matches.
    #[error("volume {volume_id:?} is not published at {path:?}")]
    VolumeNotFound {
        /// The volume.
        volume_id: String,
        /// The path asked about.
        path: String,
    },
    /// A filesystem operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl From<ViewError> for NodeError {
    fn from(error: ViewError) -> Self {
        Self::View(Box::new(error))
    }
}

impl NodeError {
    /// The gRPC code for this error.
    pub fn code(&self) -> Code {
        match self {
            Self::MissingField { .. } | Self::InvalidField { .. } | Self::Attributes(_) => {
                Code::InvalidArgument
            }
            Self::Incompatible { .. } => Code::AlreadyExists,
            Self::Busy { .. } => Code::Aborted,
            Self::Resolve { source, .. } => resolve_code(source),
            Self::Timeout { .. } => Code::DeadlineExceeded,
            Self::VolumeNotFound { .. } => Code::NotFound,
            Self::Mount(_) | Self::State(_) | Self::GcRoot(_) | Self::View(_) | Self::Io { .. } => {
                Code::Internal
            }
        }
    }
}

/// The gRPC code for a failed resolution: the request's fault (a refused or unevaluable source)
/// is `InvalidArgument`, a missing path `NotFound`, an unreachable daemon `Unavailable`, the
/// deadline `DeadlineExceeded`, and the node's own trouble `Internal`.
fn resolve_code(error: &ResolveError) -> Code {
    match error {
        ResolveError::NotAllowed { .. }
        | ResolveError::NoPackageSet { .. }
        | ResolveError::Empty { .. } => Code::InvalidArgument,
        ResolveError::Eval { source, .. } => match source {
            EvalError::Failed { .. } | EvalError::Lock { .. } => Code::InvalidArgument,
            EvalError::Timeout { .. } => Code::DeadlineExceeded,
            EvalError::Spawn { .. } | EvalError::Output { .. } | EvalError::StorePath { .. } => {
                Code::Internal
            }
        },
        ResolveError::Timeout { .. } => Code::DeadlineExceeded,
        ResolveError::Substitute { .. } => Code::NotFound,
        ResolveError::Build { status, .. } => match status {
            BuildStatus::NoSubstituters => Code::NotFound,
            _ => Code::Internal,
        },
        ResolveError::Closure { source, .. } => match source.as_ref() {
            ClosureQueryError::InvalidRoot(_) => Code::NotFound,
            ClosureQueryError::Daemon(daemon) if is_unreachable(daemon) => Code::Unavailable,
            _ => Code::Internal,
        },
        ResolveError::Daemon { step, source, .. } => {
            if matches!(step, Step::Connecting(_)) || is_unreachable(source) {
                Code::Unavailable
            } else {
                Code::Internal
            }
        }
        ResolveError::BadPackageSet { .. } | ResolveError::State { .. } => Code::Internal,
    }
}

/// Whether the daemon could not be reached or the connection to it was lost (a retry may
/// succeed), as opposed to the daemon refusing or misunderstanding a request.
fn is_unreachable(error: &DaemonError) -> bool {
    matches!(
        error,
        DaemonError::Connect { .. }
            | DaemonError::Io(_)
            | DaemonError::UnexpectedEof { .. }
            | DaemonError::Broken
    )
}

/// A resolution error's message without its `container csi-volume: ` prefix: a volume serves
/// every container that mounts it, and the message is already prefixed with the attribute.
fn resolve_message(error: &ResolveError) -> String {
    let text = error.to_string();
    let prefix = format!("container {VOLUME_CONTAINER}: ");
    match text.strip_prefix(&prefix) {
        Some(rest) => rest.to_owned(),
        None => text,
    }
}

impl From<NodeError> for Status {
    fn from(error: NodeError) -> Self {
        Status::new(error.code(), format!("containix: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use containix_core::store::store_path::StorePath;

    use super::*;

    fn hello() -> StorePath {
        StorePath::parse("/nix/store/0c1h5b3ldrb1d8jq6ln5ai3k06h3ipm8-hello-1.0").unwrap()
    }

    fn resolve(attribute: &'static str, source: ResolveError) -> NodeError {
        NodeError::Resolve {
            attribute,
            source: Box::new(source),
        }
    }

    #[test]
    fn codes_follow_the_spec() {
        let missing = NodeError::MissingField {
            field: "target_path",
        };
        assert_eq!(missing.code(), Code::InvalidArgument);
        let status = Status::from(missing);
        assert_eq!(status.message(), "containix: `target_path` is required");
        let busy = NodeError::Busy {
            volume_id: "v".into(),
        };
        assert_eq!(busy.code(), Code::Aborted);
        let holding = NodeError::Timeout {
            step: "registering the volume's GC root",
            after: Duration::from_secs(5),
        };
        assert_eq!(holding.code(), Code::DeadlineExceeded);
        assert!(holding.to_string().contains("GC root"), "{holding}");
    }

    #[test]
    fn resolution_errors_name_the_attribute_and_the_step() {
        let container = VOLUME_CONTAINER.to_owned();
        let timeout = resolve(
            "storePaths",
            ResolveError::Timeout {
                container: container.clone(),
                step: Step::Substituting(hello()),
                after: Duration::from_secs(5),
            },
        );
        assert_eq!(timeout.code(), Code::DeadlineExceeded);
        assert_eq!(
            Status::from(timeout).message(),
            format!(
                "containix: volume attribute `storePaths`: resolution did not finish within 5s; \
                 it was substituting {}",
                hello()
            )
        );

        let refused = resolve(
            "flakeRef",
            ResolveError::NotAllowed {
                container: container.clone(),
                source: Box::new(containix_core::request::policy::RefNotAllowed {
                    flake_ref: "path:/etc".into(),
                    namespace: None,
                    reasons: vec!["no rule allows `path:` refs".into()],
                    allowed: vec!["github:".into()],
                    policy: None,
                }),
            },
        );
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(
            refused
                .to_string()
                .starts_with("volume attribute `flakeRef`: flake ref `path:/etc` is not allowed"),
            "{refused}"
        );

        let unreachable = resolve(
            "packages",
            ResolveError::Daemon {
                container: container.clone(),
                step: Step::Connecting(PathBuf::from("/nix/var/nix/daemon-socket/socket")),
                source: Box::new(DaemonError::Connect {
                    path: PathBuf::from("/nix/var/nix/daemon-socket/socket"),
                    source: std::io::ErrorKind::NotFound.into(),
                }),
            },
        );
        assert_eq!(unreachable.code(), Code::Unavailable);
        assert!(
            unreachable
                .to_string()
                .contains("`packages`: connecting to the Nix daemon at"),
            "{unreachable}"
        );

        let missing = resolve(
            "storePaths",
            ResolveError::Substitute {
                container: container.clone(),
                path: hello(),
                message: "path does not exist and cannot be created".into(),
                log: vec![],
            },
        );
        assert_eq!(missing.code(), Code::NotFound);

        let eval = resolve(
            "flakeRef",
            ResolveError::Eval {
                container: container.clone(),
                source: EvalError::Failed {
                    installable: "github:o/r#nope".into(),
                    message: "error: flake 'github:o/r' does not provide attribute 'nope'".into(),
                },
            },
        );
        assert_eq!(eval.code(), Code::InvalidArgument);
        assert!(
            eval.to_string().contains("does not provide attribute"),
            "{eval}"
        );

        let build = resolve(
            "flakeRef",
            ResolveError::Build {
                container,
                drv: hello(),
                status: BuildStatus::PermanentFailure,
                message: "builder failed with exit code 1".into(),
            },
        );
        assert_eq!(build.code(), Code::Internal);
    }
}
