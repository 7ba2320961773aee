//! Performing a plan on a spec, without I/O.

use oci_spec::runtime::Spec;

use super::SpecPlan;
use super::env::apply_env;

/// Performs `plan` on `spec`: appends the planned mounts that are not already there, sets the
/// process's args and applies the environment edits. Everything else is kept as it is.
/// `apply(plan, apply(plan, spec)) == apply(plan, spec)`.
pub fn apply(plan: &SpecPlan, mut spec: Spec) -> Spec {
    let mut mounts = spec.mounts_mut().take().unwrap_or_default();
    for mount in &plan.mounts {
        if !mounts.contains(mount) {
            mounts.push(mount.clone());
        }
    }
    spec.set_mounts(Some(mounts));
    if let Some(process) = spec.process_mut() {
        process.set_args(Some(plan.args.clone()));
        let mut env = process.env_mut().take().unwrap_or_default();
        apply_env(&plan.env, &mut env);
        process.set_env(Some(env));
    }
    spec
}
