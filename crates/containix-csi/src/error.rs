//! The plugin's errors and the gRPC codes the CSI specification asks for.

use containix_core::closure_mount::ClosureMountError;
use containix_core::gc_roots::GcRootError;
use containix_core::volume_attributes::VolumeAttributeError;
use thiserror::Error;
use tonic::{Code, Status};

use crate::closure_source::ResolveError;
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
    /// The closure could not be resolved.
    #[error("resolving the closure: {0}")]
    Resolve(#[from] ResolveError),
    /// Mounting or unmounting failed.
    #[error(transparent)]
    Mount(#[from] ClosureMountError),
    /// The volume records could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The GC root could not be held or released.
    #[error(transparent)]
    GcRoot(#[from] GcRootError),
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

impl NodeError {
    /// The gRPC code for this error.
    pub fn code(&self) -> Code {
        match self {
            Self::MissingField { .. } | Self::InvalidField { .. } | Self::Attributes(_) => {
                Code::InvalidArgument
            }
            Self::Incompatible { .. } => Code::AlreadyExists,
            Self::Busy { .. } => Code::Aborted,
            Self::Resolve(error) => match error {
                ResolveError::DeadlineExceeded { .. } => Code::DeadlineExceeded,
                ResolveError::DaemonUnavailable { .. } => Code::Unavailable,
                ResolveError::NotFound { .. } => Code::NotFound,
                ResolveError::Unsupported { .. } => Code::InvalidArgument,
                ResolveError::Failed { .. } => Code::Internal,
            },
            Self::VolumeNotFound { .. } => Code::NotFound,
            Self::Mount(_) | Self::State(_) | Self::GcRoot(_) | Self::Io { .. } => Code::Internal,
        }
    }
}

impl From<NodeError> for Status {
    fn from(error: NodeError) -> Self {
        Status::new(error.code(), format!("containix: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn codes_follow_the_spec() {
        let missing = NodeError::MissingField {
            field: "target_path",
        };
        assert_eq!(missing.code(), Code::InvalidArgument);
        let status = Status::from(missing);
        assert_eq!(status.message(), "containix: `target_path` is required");
        let deadline = NodeError::Resolve(ResolveError::DeadlineExceeded {
            step: "querying the closure of 1 root(s)".into(),
            timeout: Duration::from_secs(5),
        });
        assert_eq!(deadline.code(), Code::DeadlineExceeded);
        assert!(
            deadline
                .to_string()
                .contains("timed out after 5s while querying the closure"),
            "{deadline}"
        );
        let busy = NodeError::Busy {
            volume_id: "v".into(),
        };
        assert_eq!(busy.code(), Code::Aborted);
    }
}
