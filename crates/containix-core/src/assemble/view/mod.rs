//! Store views: each distinct closure assembled once per node into a read-only directory that
//! holds exactly its store paths, shared by every container and CSI volume that uses it.
//!
//! A container then needs one mount for its `/nix/store`, whatever the closure's size, and the
//! files stay the host store's own (same inodes, same page cache). Two mechanisms fill a view,
//! chosen per node ([`mechanism`]): a hard-link farm on the store's filesystem (no mounts at
//! all; made through a private clone of the mount where `/nix/store` is a read-only bind over
//! itself, [`mount_clone`]), or a tree of per-member read-only bind mounts (works anywhere, but every mount it adds
//! to the host's mount table is copied into each new mount namespace on the node). The
//! [`registry`] keeps views on disk under a node-wide lock per view, counts their users (one
//! file per container or volume), holds one GC root per view, and removes a view with its root
//! when its last user goes; [`record`] is what it writes. A container plans from its view's
//! directory ([`view_members`]), not from the closure's path infos.

pub mod error;
pub mod mechanism;
pub mod mount_clone;
pub mod record;
pub mod registry;
pub mod result_holder;
pub mod view_members;

pub use error::ViewError;
pub use mechanism::ViewMechanism;
pub use record::UserLease;
pub use registry::{StoreViews, View, ViewSummary, ViewUser};
pub use view_members::ViewMembers;
