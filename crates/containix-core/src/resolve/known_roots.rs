//! A request whose roots are known on this node without asking the daemon: store paths, or a
//! locked flake (or locked package set) whose evaluation is in the resolution cache.

use crate::store::store_path::StorePath;

/// What a request resolves to, short of its closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownRoots {
    /// The roots, in the request's order.
    pub roots: Vec<StorePath>,
    /// The program to run by default.
    pub main_program: Option<String>,
    /// The package's name.
    pub package_name: Option<String>,
    /// The package's version.
    pub package_version: Option<String>,
}
