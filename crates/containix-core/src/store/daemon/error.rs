//! Errors of the daemon client: transport, protocol violations and errors the daemon reports.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::store::daemon::socket::SOCKET_PATH_ENV;
use crate::store::store_path::StorePathError;

use super::version::ProtocolVersion;

/// Why a daemon operation failed.
///
/// [`DaemonError::is_connection_lost`] tells whether the connection can still be used: only
/// [`DaemonError::Daemon`] reported after the daemon started work, and
/// [`DaemonError::InvalidRequest`] (refused before anything was sent) leave it usable.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// Connecting to the daemon's socket failed. The message ends with what to do.
    #[error("cannot connect to the Nix daemon at {}: {}", path.display(), connect_cause(path, source))]
    Connect {
        /// The socket path tried.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Reading from or writing to the daemon failed.
    #[error("I/O error talking to the Nix daemon: {0}")]
    Io(#[from] io::Error),
    /// The daemon closed the connection in the middle of a reply.
    #[error("the Nix daemon closed the connection while sending {what}")]
    UnexpectedEof {
        /// What was being read.
        what: &'static str,
    },
    /// A length or count read from the wire exceeds the client's cap.
    #[error("the Nix daemon sent {what} of {len}; at most {max} is accepted")]
    TooLarge {
        /// What overflowed, e.g. "log line length" or "reference count".
        what: &'static str,
        /// The length or count received.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// The padding after a string was not zero.
    #[error("the Nix daemon sent non-zero padding after {what}")]
    NonZeroPadding {
        /// What was being read.
        what: &'static str,
    },
    /// A string that must be UTF-8 was not.
    #[error("the Nix daemon sent {what} that is not UTF-8")]
    NotUtf8 {
        /// What was being read.
        what: &'static str,
    },
    /// A store path from the daemon did not validate.
    #[error("the Nix daemon sent an invalid store path as {what}: {source}")]
    BadStorePath {
        /// What was being read.
        what: &'static str,
        /// Why the path is invalid.
        source: StorePathError,
    },
    /// A value outside its allowed range (a bool other than 0/1, a wrong magic number, ...).
    #[error("the Nix daemon sent {value:#x} as {what}; expected {expected}")]
    UnexpectedValue {
        /// What was being read.
        what: &'static str,
        /// The value received.
        value: u64,
        /// What was expected.
        expected: &'static str,
    },
    /// A string value that does not have the expected form.
    #[error("the Nix daemon sent {value:?} as {what}; expected {expected}")]
    UnexpectedText {
        /// What was being read.
        what: &'static str,
        /// The value received (truncated).
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The daemon speaks a protocol version this client does not support.
    #[error("the Nix daemon speaks protocol {daemon}; this client supports {min} to {max}")]
    UnsupportedVersion {
        /// The daemon's version.
        daemon: ProtocolVersion,
        /// Oldest supported version.
        min: ProtocolVersion,
        /// Newest supported version.
        max: ProtocolVersion,
    },
    /// The operation needs a newer protocol than the one negotiated.
    #[error(
        "{operation} needs daemon protocol {needed} or newer; the connection speaks {negotiated}"
    )]
    OperationUnsupported {
        /// The operation.
        operation: &'static str,
        /// The version it needs.
        needed: ProtocolVersion,
        /// The negotiated version.
        negotiated: ProtocolVersion,
    },
    /// The daemon asked for data (STDERR_READ) or pushed data (STDERR_WRITE), which only legacy
    /// operations this client never sends use.
    #[error("the Nix daemon sent an unsupported {0} message")]
    UnsupportedStderr(&'static str),
    /// The daemon reported an error (STDERR_ERROR). Display shows the message, then the
    /// operation's [`DaemonError::log_tail`] if any.
    #[error("the Nix daemon reported: {message}{}", log_suffix(log_tail))]
    Daemon {
        /// The daemon's message, without ANSI escapes.
        message: String,
        /// The last warning- or error-looking log lines of the operation, oldest first (see
        /// [`super::stderr::LogTail`]): often the actual reason, e.g. why a substitution
        /// failed, which Nix 2.8's final message leaves out.
        log_tail: Vec<String>,
        /// The exit status (< 1.26) or verbosity level (>= 1.26) attached to the error.
        status: u64,
        /// Trace hints, outermost last, as the daemon sent them.
        traces: Vec<String>,
        /// Whether the daemon rejected the request before starting work and closed the
        /// connection (it then sends the error twice and hangs up).
        closed_connection: bool,
    },
    /// A request was refused before anything was sent (it would break the connection).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// An earlier failure left the connection's stream in an unknown state.
    #[error("the connection to the Nix daemon is broken by an earlier error and cannot be reused")]
    Broken,
}

impl DaemonError {
    /// Whether the connection that produced this error must be discarded.
    pub fn is_connection_lost(&self) -> bool {
        !matches!(
            self,
            Self::Daemon {
                closed_connection: false,
                ..
            } | Self::InvalidRequest(_)
        )
    }

    /// The daemon's message, for errors the daemon reported.
    pub fn daemon_message(&self) -> Option<&str> {
        match self {
            Self::Daemon { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The warning- or error-looking lines the daemon logged during the failed operation,
    /// oldest first; empty for other errors.
    pub fn log_tail(&self) -> &[String] {
        match self {
            Self::Daemon { log_tail, .. } => log_tail,
            _ => &[],
        }
    }
}

/// Why connecting to the daemon at `socket` failed, and what to do about it: start the daemon
/// (or name its socket) when nothing listens there; join the group that may open the socket's
/// folder when access is denied. Reads the folder's owner group to name it.
pub fn connect_cause(socket: &Path, error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => format!(
            "{error}; start nix-daemon (`systemctl start nix-daemon`), or name its socket with \
             {SOCKET_PATH_ENV} or the node policy's `daemon-socket`"
        ),
        io::ErrorKind::PermissionDenied => {
            let user = nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map_or_else(|| format!("uid {}", nix::unistd::getuid()), |u| u.name);
            let folder = socket.parent().unwrap_or(socket);
            let group = std::fs::metadata(folder)
                .ok()
                .and_then(|meta| {
                    use std::os::unix::fs::MetadataExt;
                    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(meta.gid())).ok()?
                })
                .map(|group| group.name);
            match group {
                Some(group) => format!(
                    "{error}; user `{user}` may not open it: add it to group `{group}`, which \
                     owns {} (`usermod -aG {group} {user}`, then log in again), or run as root",
                    folder.display()
                ),
                None => format!(
                    "{error}; user `{user}` may not open it: add it to the group that owns {}, \
                     or run as root",
                    folder.display()
                ),
            }
        }
        _ => error.to_string(),
    }
}

/// ` (earlier in the operation: a; b)`, or nothing for an empty tail.
fn log_suffix(log_tail: &[String]) -> String {
    if log_tail.is_empty() {
        String::new()
    } else {
        format!(" (earlier in the operation: {})", log_tail.join("; "))
    }
}

/// Result of daemon operations.
pub type DaemonResult<T> = Result<T, DaemonError>;
