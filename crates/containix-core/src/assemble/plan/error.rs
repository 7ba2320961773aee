//! Why no plan could be made.

use std::path::PathBuf;

use thiserror::Error;

use crate::assemble::program::ProgramError;
use crate::store::store_path::StorePath;

/// Why no plan could be made.
#[derive(Debug, Error)]
pub enum PlanError {
    /// The base spec has no `root`.
    #[error("the base spec has no `root`; expected root.path naming the container's rootfs")]
    NoRoot,
    /// The base spec has no `process`.
    #[error(
        "the base spec has no `process`; expected the container's process with its user and args"
    )]
    NoProcess,
    /// The state directory path is unusable.
    #[error("state directory {path:?} {reason}")]
    StateDir {
        /// The path given.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A planned mount broke a rule (a bug in the planner if it ever happens).
    #[error("planned mount at {destination:?} {reason}")]
    InvalidMount {
        /// The mount's destination.
        destination: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A closure member is not in the local store.
    #[error("closure member {path} is missing from the local store")]
    MissingFromStore {
        /// The missing member.
        path: StorePath,
    },
    /// The base spec mounts something where a closure member goes.
    #[error(
        "the base spec mounts {destination:?}, inside closure member {member}; the closure is mounted read-only and cannot share that place"
    )]
    MountConflict {
        /// The base mount's destination.
        destination: PathBuf,
        /// The member it collides with.
        member: StorePath,
    },
    /// The base spec mounts something inside `/nix/store`, where the store view goes.
    #[error(
        "the base spec mounts {destination:?}, inside /nix/store; the closure's store view is mounted read-only there and cannot share that place"
    )]
    StoreMountConflict {
        /// The base mount's destination.
        destination: PathBuf,
    },
    /// The program to run could not be found.
    #[error(transparent)]
    Program(#[from] ProgramError),
    /// The store could not be read.
    #[error("reading {path:?} in the store: {source}")]
    Store {
        /// The path being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// oci-spec rejected a value.
    #[error("building the OCI spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
}
