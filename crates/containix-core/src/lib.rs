//! `containix-core`: the library behind containix.
//!
//! It turns a pod's annotations into a typed request, resolves that request to a Nix closure in
//! the local store, and plans the rootfs and OCI spec that run exactly that closure. Frontends
//! (the containerd shim, the CSI plugin and the CLI) stay thin and call into this crate.
//!
//! Modules follow the data flow: annotation -> request -> closure -> mount plan -> spec -> runtime.

/// The version of containix, shared by every binary.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod annotations;
pub mod bundle;
pub mod closure;
pub mod closure_mount;
pub mod closure_query;
pub mod container_step;
pub mod containerd_config;
pub mod daemon;
pub mod duration;
pub mod flake_eval;
pub mod flake_ref;
pub mod gc_roots;
pub mod nix32;
pub mod node_install;
pub mod oci_image;
pub mod path_info;
pub mod plan;
pub mod policy;
pub mod process_runner;
pub mod program;
pub mod request;
pub mod resolved;
pub mod resolver;
pub mod rootfs;
pub mod sbom;
pub mod store_path;
pub mod store_view;
pub mod volume_attributes;
