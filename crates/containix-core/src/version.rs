//! The version of containix, shared by every binary and written into what it produces.

/// The version of containix (the workspace's crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
