//! Performing a plan on a spec, without I/O.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use oci_spec::runtime::{Mount, Spec};

use super::env::apply_env;
use super::spec_plan::SpecPlan;

/// Performs `plan` on `spec`: appends the planned mounts that are not already there, sets the
/// process's args and applies the environment edits. Everything else is kept as it is.
/// `apply(plan, apply(plan, spec)) == apply(plan, spec)`. Linear in the number of mounts.
pub fn apply(plan: &SpecPlan, mut spec: Spec) -> Spec {
    let mut mounts = spec.mounts_mut().take().unwrap_or_default();
    let mut present: HashSet<SameMount<'_>> = mounts.iter().map(SameMount).collect();
    let added: Vec<Mount> = plan
        .mounts
        .iter()
        .filter(|mount| present.insert(SameMount(mount)))
        .cloned()
        .collect();
    drop(present);
    mounts.extend(added);
    spec.set_mounts(Some(mounts));
    if plan.readonly_root
        && let Some(root) = spec.root_mut()
    {
        root.set_readonly(Some(true));
    }
    if let Some(process) = spec.process_mut() {
        process.set_args(Some(plan.args.clone()));
        let mut env = process.env_mut().take().unwrap_or_default();
        apply_env(&plan.env, &mut env);
        process.set_env(Some(env));
    }
    spec
}

/// A mount in a set: equal when the mounts are equal in every field (`Mount`'s `==`), hashed by
/// destination alone (`Mount` implements no `Hash`; equal mounts have equal destinations, so
/// the two agree). Mounts sharing a destination fall back to comparisons among themselves.
struct SameMount<'a>(&'a Mount);

impl PartialEq for SameMount<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for SameMount<'_> {}

impl Hash for SameMount<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.destination().hash(state);
    }
}
