//! A client for the Nix daemon's worker protocol, over its Unix socket.
//!
//! It speaks protocol 1.21 through 1.38 (Nix 2.3 to current, and Lix's 1.35), gating every
//! version-dependent field on the negotiated version. Lengths and counts read from the wire are
//! capped ([`wire`]), paths are validated [`StorePath`](crate::store::store_path::StorePath)s before
//! they are sent, and a connection whose stream may be out of step is never reused.
//!
//! ```no_run
//! # async fn demo(path: &containix_core::store::store_path::StorePath) -> Result<(), Box<dyn std::error::Error>> {
//! use containix_core::store::daemon::DaemonClient;
//! let mut client = DaemonClient::connect_default().await?;
//! let info = client.query_path_info(path).await?;
//! # Ok(()) }
//! ```

pub mod activity;
pub mod activity_log;
pub mod ansi;
pub mod build_result;
pub mod client;
pub mod derived_path;
pub mod error;
pub mod handshake;
pub mod ops;
pub mod options;
pub mod pipeline;
pub mod socket;
pub mod stderr;
pub mod version;
pub mod wire;

#[cfg(test)]
mod fake_daemon_tests;
#[cfg(test)]
pub(crate) mod in_memory;
#[cfg(test)]
pub(crate) mod testing;

pub use build_result::{BuildResult, BuildStatus};
pub use client::DaemonClient;
pub use derived_path::{DerivedPath, DerivedPathError, OutputsSpec};
pub use error::{DaemonError, DaemonResult};
pub use handshake::{DaemonInfo, TrustStatus};
pub use ops::{BuildMode, GcRoot, Missing};
pub use options::{DaemonOptions, Verbosity};
pub use socket::{DEFAULT_SOCKET_PATH, SOCKET_PATH_ENV, socket_path, socket_path_from};
pub use stderr::Progress;
pub use version::ProtocolVersion;
