//! Why a store view could not be made, used or removed.

use std::path::PathBuf;

use thiserror::Error;

use crate::assemble::rootfs::RootfsError;
use crate::store::gc_roots::GcRootError;

/// Why a store view could not be made, used or removed.
#[derive(Debug, Error)]
pub enum ViewError {
    /// The consumer id cannot name a user file.
    #[error("store view user {consumer:?}: {source}")]
    Consumer {
        /// The consumer.
        consumer: String,
        /// Why it is unusable.
        source: Box<GcRootError>,
    },
    /// A state file could not be read, written or removed.
    #[error("store view {}: {action}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A state file holds something unreadable.
    #[error("store view {}: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Another process kept the view's lock past the deadline.
    #[error("store view {id}: still locked by another process after {waited_secs} s")]
    Locked {
        /// The view.
        id: String,
        /// How long this one waited.
        waited_secs: u64,
    },
    /// Filling or emptying the view failed.
    #[error("store view {id}: {source}")]
    Assemble {
        /// The view.
        id: String,
        /// What went wrong.
        source: Box<RootfsError>,
    },
    /// The view's GC root could not be taken or released.
    #[error("store view {id}: {source}")]
    GcRoot {
        /// The view.
        id: String,
        /// What went wrong.
        source: Box<GcRootError>,
    },
}
