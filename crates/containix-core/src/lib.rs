//! `containix-core`: the library behind containix.
//!
//! It turns a pod's annotations into a typed request, resolves that request to a Nix closure in
//! the local store, and plans the rootfs and OCI spec that run exactly that closure. Frontends
//! (the containerd shim, the CSI plugin and the CLI) stay thin and call into this crate.
//!
//! The folders are the stages of the pipeline, in the order data flows through them
//! (annotation -> request -> closure -> plan -> spec -> runtime):
//!
//! - [`request`]: annotations, CSI volume attributes, flake refs and the node policy, read into
//!   a typed [`Request`].
//! - [`store`]: store paths, the Nix daemon client, path infos, closures and GC roots.
//! - [`resolve`]: from a request to a [`Resolved`] closure valid in the local store
//!   (evaluation, substitution, builds, the resolution cache).
//! - [`assemble`]: from a closure to a runnable bundle: the spec plan, the program, the bundle
//!   edits, and the [`ContainerStep`] a runtime calls before `runc create`.
//! - [`node`]: setting up a node (containerd's config, the runtime handler, the policy file).
//! - [`image`]: what is written about a closure: the empty OCI image and the SBOM.
//!
//! The types most embedders need are re-exported here.

pub mod assemble;
pub mod image;
pub mod node;
pub mod request;
pub mod resolve;
pub mod state_file;
pub mod store;
pub mod version;

pub use assemble::container_step::ContainerStep;
pub use request::container_request::{Request, Source};
pub use request::flake_ref::{FlakeInstallable, FlakeRef};
pub use request::policy::node_policy::NodePolicy;
pub use resolve::resolved::Resolved;
pub use resolve::resolver::{Resolution, Resolver};
pub use store::closure::Closure;
pub use store::daemon::DaemonClient;
pub use store::store_path::StorePath;
pub use version::VERSION;
