//! Stage 4, **assemble**: from a resolved closure to a container runc can run. The
//! [`plan`] computes, as data, every edit to a base OCI spec (mounts, process, environment,
//! users), using only the facts in [`store_facts`]; [`program`] finds the entrypoint inside
//! the closure; [`bundle`] applies a plan to an OCI bundle on disk and undoes it. The
//! [`container_step`] is the whole stage as a runtime calls it between "containerd wrote the
//! bundle" and "runc create". Off the node, [`rootfs`] fills a bundle's rootfs with a closure
//! and [`closure_mount`] shows a closure under a directory (the CSI volume).

pub mod bundle;
pub mod closure_mount;
pub mod container_step;
pub mod detached_worker;
pub mod plan;
pub mod program;
pub mod rootfs;
pub mod store_facts;
pub mod view;

pub use container_step::{ContainerStep, Decision, Outcome};
pub use plan::{PlanInput, SpecPlan};
