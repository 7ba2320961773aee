//! A client for the Nix daemon's worker protocol, over its Unix socket.
//!
//! It speaks protocol 1.21 through 1.38 (Nix 2.3 to current, and Lix's 1.35), gating every
//! version-dependent field on the negotiated version. Lengths and counts read from the wire are
//! capped ([`wire`]), paths are validated [`StorePath`](crate::store_path::StorePath)s before
//! they are sent, and a connection whose stream may be out of step is never reused.
//!
//! ```no_run
//! # async fn demo(path: &containix_core::store_path::StorePath) -> Result<(), Box<dyn std::error::Error>> {
//! use containix_core::daemon::DaemonClient;
//! let mut client = DaemonClient::connect_default().await?;
//! let info = client.query_path_info(path).await?;
//! # Ok(()) }
//! ```

use std::ffi::OsString;
use std::path::PathBuf;

pub mod build_result;
pub mod client;
pub mod derived_path;
pub mod error;
pub mod handshake;
pub mod ops;
pub mod options;
pub mod pipeline;
pub mod stderr;
pub mod version;
pub mod wire;

#[cfg(test)]
mod fake_daemon_tests;

pub use build_result::{BuildResult, BuildStatus};
pub use client::DaemonClient;
pub use derived_path::{DerivedPath, DerivedPathError, OutputsSpec};
pub use error::{DaemonError, DaemonResult};
pub use handshake::{DaemonInfo, TrustStatus};
pub use ops::{BuildMode, GcRoot, Missing};
pub use options::{DaemonOptions, Verbosity};
pub use stderr::Progress;
pub use version::ProtocolVersion;

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET_PATH: &str = "/nix/var/nix/daemon-socket/socket";

/// Environment variable that overrides the socket path, as Nix itself honours it.
pub const SOCKET_PATH_ENV: &str = "NIX_DAEMON_SOCKET_PATH";

/// The daemon socket to use: `$NIX_DAEMON_SOCKET_PATH` if set and non-empty, else
/// [`DEFAULT_SOCKET_PATH`].
pub fn socket_path() -> PathBuf {
    socket_path_from(std::env::var_os(SOCKET_PATH_ENV))
}

/// [`socket_path`] with the environment value passed in.
pub fn socket_path_from(env_value: Option<OsString>) -> PathBuf {
    match env_value {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => PathBuf::from(DEFAULT_SOCKET_PATH),
    }
}

/// Helpers for tests: run in-memory futures and encode daemon replies.
#[cfg(test)]
pub(crate) mod testing {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use crate::path_info::PathInfo;

    use super::version::ProtocolVersion;
    use super::wire::WireWriter;

    /// Runs a future that never waits (decoding from a byte slice).
    pub(crate) fn ready<F: Future>(future: F) -> F::Output {
        match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("an in-memory read never waits"),
        }
    }

    /// An empty transcript to encode daemon bytes into.
    pub(crate) fn transcript() -> WireWriter {
        WireWriter::new()
    }

    /// Encodes a `QueryPathInfo` result as a daemon speaking `version` sends it.
    pub(crate) fn encode_path_info(
        w: &mut WireWriter,
        info: Option<&PathInfo>,
        version: ProtocolVersion,
    ) {
        let Some(info) = info else {
            w.u64(0);
            return;
        };
        if version.at_least(17) {
            w.u64(1);
        }
        w.string(info.deriver.as_ref().map_or("", |d| d.as_str()))
            .string(&info.nar_hash)
            .store_paths(&info.references)
            .u64(info.registration_time)
            .u64(info.nar_size);
        if version.at_least(16) {
            w.bool(info.ultimate)
                .strings(&info.signatures)
                .string(info.content_address.as_deref().unwrap_or(""));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_honours_the_environment_value() {
        assert_eq!(socket_path_from(None), PathBuf::from(DEFAULT_SOCKET_PATH));
        assert_eq!(
            socket_path_from(Some(OsString::new())),
            PathBuf::from(DEFAULT_SOCKET_PATH)
        );
        assert_eq!(
            socket_path_from(Some("/run/nix.sock".into())),
            PathBuf::from("/run/nix.sock")
        );
    }
}
