//! The shim's error type and its mapping onto ttrpc status codes that containerd understands.

use containerd_shim::protos::ttrpc;

use crate::{containix_step::StepError, spawner::RuntimeError};

/// Why a Task API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The request names a container or exec process this shim does not know.
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the process is in the wrong state for it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The container or exec id is already in use.
    #[error("{0}")]
    AlreadyExists(String),
    /// A field of the request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request asks for something this shim does not implement.
    #[error("{0} is not implemented by the containix shim")]
    Unimplemented(&'static str),
    /// The containix step refused or failed to prepare the bundle.
    #[error("containix: {0}")]
    Containix(#[from] StepError),
    /// The OCI runtime (runc) failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Reading or writing a file, fifo or socket failed.
    #[error("{context}: {source}")]
    Io {
        /// What the shim was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Anything else, with a message that says what failed.
    #[error("{0}")]
    Other(String),
}

impl ShimError {
    /// Wraps an I/O error with what the shim was doing when it happened.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ShimError {
        let context = context.into();
        move |source| ShimError::Io { context, source }
    }

    /// The ttrpc status code containerd maps back onto its own error kinds.
    pub fn code(&self) -> ttrpc::Code {
        match self {
            ShimError::NotFound(_) => ttrpc::Code::NOT_FOUND,
            ShimError::FailedPrecondition(_) => ttrpc::Code::FAILED_PRECONDITION,
            ShimError::AlreadyExists(_) => ttrpc::Code::ALREADY_EXISTS,
            ShimError::InvalidArgument(_) => ttrpc::Code::INVALID_ARGUMENT,
            ShimError::Unimplemented(_) => ttrpc::Code::UNIMPLEMENTED,
            ShimError::Runtime(e) if e.kind == crate::spawner::RuntimeErrorKind::NotFound => {
                ttrpc::Code::NOT_FOUND
            }
            ShimError::Containix(_)
            | ShimError::Runtime(_)
            | ShimError::Io { .. }
            | ShimError::Other(_) => ttrpc::Code::UNKNOWN,
        }
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

impl From<containerd_shim::Error> for ShimError {
    fn from(e: containerd_shim::Error) -> Self {
        match e {
            containerd_shim::Error::NotFoundError(s) => ShimError::NotFound(s),
            containerd_shim::Error::FailedPreconditionError(s) => ShimError::FailedPrecondition(s),
            containerd_shim::Error::InvalidArgument(s) => ShimError::InvalidArgument(s),
            other => ShimError::Other(other.to_string()),
        }
    }
}

/// Result of the shim's internal operations.
pub type Result<T, E = ShimError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containix_errors_reach_containerd_with_the_containix_prefix() {
        let err: ttrpc::Error = ShimError::from(StepError::new("flake not found")).into();
        match err {
            ttrpc::Error::RpcStatus(status) => {
                assert!(
                    status.message.starts_with("containix: "),
                    "{}",
                    status.message
                );
                assert_eq!(status.code(), ttrpc::Code::UNKNOWN);
            }
            other => panic!("expected an rpc status, got {other:?}"),
        }
    }

    #[test]
    fn not_found_keeps_its_code() {
        let err: ttrpc::Error = ShimError::NotFound("container x not found".into()).into();
        let ttrpc::Error::RpcStatus(status) = err else {
            panic!()
        };
        assert_eq!(status.code(), ttrpc::Code::NOT_FOUND);
    }
}
