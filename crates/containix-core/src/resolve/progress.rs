//! What a running resolution reports to a frontend: the step, and the daemon's counts of paths
//! and bytes fetched or built.

use crate::store::daemon::stderr::Progress;

use super::step::Step;

/// A snapshot of a resolution's progress, published on a `tokio::sync::watch` channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolveProgress {
    /// The step running; `None` before the first and after the last.
    pub step: Option<Step>,
    /// The daemon's progress during the current daemon operation (substituting, building).
    pub daemon: Progress,
}
