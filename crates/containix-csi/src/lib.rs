//! `containix-csi`: a CSI v1 node plugin that publishes a Nix closure as an ephemeral inline
//! volume. The published target holds `store/` (a read-only bind per closure member) and `bin/`
//! (links to the root outputs' programs); mounted at `/nix` in a pod, the programs run.
//!
//! The library holds the services and the publishing logic so that tests drive the same code
//! the binary runs, and exposes the generated CSI client ([`proto`]) and [`client::connect`].

pub mod client;
pub mod closure_source;
pub mod controller;
pub mod error;
pub mod identity;
pub mod node;
pub mod publish;
pub mod server;
pub mod volume_state;

/// The CSI v1 messages and the Identity, Controller and Node services, generated from
/// `proto/csi.proto`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("csi.v1");
}

/// The driver name: the CSIDriver object's name and what GetPluginInfo reports.
pub const DRIVER_NAME: &str = "containix.dev";
