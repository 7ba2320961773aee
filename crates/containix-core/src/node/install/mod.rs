//! Installing containix on a node that is not NixOS: the shim on containerd's PATH, the
//! `containix` runtime handler in containerd's config (or, on k3s and RKE2, in the template they
//! render it from: [`containerd_target`]), and a node policy file.
//!
//! [`NodeState::read`] looks at the node, [`plan`] decides what to change (pure, so every case is
//! tested with made-up states), and [`apply()`] makes the changes, each one atomically. Running an
//! install twice plans nothing the second time; an uninstall undoes exactly what an install did.
//! Restarting containerd is the caller's business: [`NodePlan::restart_containerd`] says whether
//! the config changed.

pub mod apply;
pub mod containerd_target;
pub mod error;
pub mod node_state;
pub mod plan;

pub use apply::apply;
pub use containerd_target::{
    ConfigForm, ContainerdFlavor, TemplateDir, choose_template, detect_flavor, standalone_config,
};
pub use error::NodeInstallError;
pub use node_state::{DEFAULT_SHIM_DIR, NodePaths, NodeState, ShimState, under_root};
pub use plan::{NodePlan, NodeStep, plan_install, plan_uninstall};
