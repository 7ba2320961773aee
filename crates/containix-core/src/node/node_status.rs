//! What the node is doing for pods, as `containix status` shows it: resolutions in flight
//! (request, step, progress, waiting pods) and store views (size, mechanism, users and how long
//! they hold).

use crate::assemble::view::error::ViewError;
use crate::assemble::view::registry::{StoreViews, ViewSummary};
use crate::request::policy::node_policy::NodePolicy;
use crate::resolve::inflight::board::{InflightBoard, InflightEntry};
use crate::store::gc_roots::GcRoots;

/// The node's containix work at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Resolutions running or handing over.
    pub resolutions: Vec<InflightEntry>,
    /// Store views on the node.
    pub views: Vec<ViewSummary>,
}

/// Reads the node's status under `policy` (its state and view directories).
pub fn node_status(policy: &NodePolicy) -> Result<NodeStatus, ViewError> {
    let board = InflightBoard::new(&policy.state_dir);
    let resolutions = board.list().map_err(|source| ViewError::Io {
        action: "listing",
        path: board.work_dir(""),
        source,
    })?;
    let views = StoreViews::new(
        policy.view_dir(),
        GcRoots::new(&policy.state_dir),
        policy.store_view,
    )
    .list()?;
    Ok(NodeStatus { resolutions, views })
}
