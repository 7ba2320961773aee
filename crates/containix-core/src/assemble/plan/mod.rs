//! The rootfs and OCI spec plan: what to change in a base spec so it runs a resolved closure.
//!
//! [`plan`] computes a [`SpecPlan`] as data from its inputs and a [`StoreFacts`]; [`apply()`]
//! performs it on a spec without I/O. Applying a plan twice gives the same spec as applying it
//! once. The effects on the host (state files, `config.json`) live in [`crate::assemble::bundle`].

mod apply;
pub mod env;
pub mod error;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod mounts;
pub mod spec_plan;
pub mod users;
pub mod validate;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

pub use apply::apply;
pub use env::EnvEdit;
pub use error::PlanError;
pub use mounts::SkippedMember;
pub use spec_plan::{ImageKind, PlanInput, SpecPlan, StateFile};

use crate::assemble::program::{self, ProgramError};
use crate::assemble::store_facts::StoreFacts;
use crate::image::oci_image::EMPTY_IMAGE_ENTRYPOINT;
use crate::store::store_path::STORE_DIR;

/// Computes the plan that makes `input.base` run the closure of `input.roots`, reading only
/// what `view` tells about the store. Deterministic: the same inputs give the same plan.
pub fn plan(input: &PlanInput<'_>, view: &dyn StoreFacts) -> Result<SpecPlan, PlanError> {
    let PlanInput {
        roots,
        members: closure,
        base,
        image,
        state_dir,
        store_view,
        ..
    } = *input;
    validate::check_state_dir(state_dir)?;
    let root = base.root().as_ref().ok_or(PlanError::NoRoot)?;
    let process = base.process().as_ref().ok_or(PlanError::NoProcess)?;
    let base_mounts: &[Mount] = base.mounts().as_deref().unwrap_or_default();
    let base_env: &[String] = process.env().as_deref().unwrap_or_default();
    let base_args: &[String] = process.args().as_deref().unwrap_or_default();

    let bin_dirs = program::bin_dirs(view, closure, roots)?;
    let mut search = bin_dirs.clone();
    if let Some(pod_path) = env::lookup(base_env, "PATH") {
        for dir in program::closure_path_dirs(closure, pod_path) {
            if !search.contains(&dir) {
                search.push(dir);
            }
        }
    }
    let args = process_args(input, view, base_args, &search, &bin_dirs)?;

    let mut env_edits = Vec::new();
    if !bin_dirs.is_empty() {
        env_edits.push(EnvEdit::PrependPath(
            bin_dirs.iter().map(|d| d.display().to_string()).collect(),
        ));
    }
    let unset: Vec<&str> = env::CA_BUNDLE_VARIABLES
        .into_iter()
        .filter(|name| env::lookup(base_env, name).is_none())
        .collect();
    if !unset.is_empty() {
        let bundle = match input.ca_bundles {
            Some(bundles) => env::choose_ca_bundle(bundles, roots),
            None => {
                env::find_ca_bundle(view, closure, roots).map_err(|source| PlanError::Store {
                    path: STORE_DIR.into(),
                    source,
                })?
            }
        };
        if let Some(bundle) = bundle {
            for name in unset {
                env_edits.push(EnvEdit::SetDefault {
                    name: name.into(),
                    value: bundle.display().to_string(),
                });
            }
        }
    }

    let (mut mounts, skipped) = match store_view {
        Some(store) => (vec![mounts::view_bind(store, base_mounts)?], Vec::new()),
        None => mounts::closure_binds(view, closure, base_mounts)?,
    };
    let mut files = Vec::new();
    if image == ImageKind::Empty {
        let user = process.user();
        let accounts = [
            ("passwd", users::passwd(user.uid(), user.gid())),
            ("group", users::group(user.gid())),
        ];
        for (name, contents) in accounts {
            let destination = Path::new("/etc").join(name);
            if mounts::already_covered(base_mounts, &destination) {
                continue;
            }
            let file = StateFile {
                name: name.into(),
                destination,
                contents,
            };
            mounts.push(mounts::bind(
                &file.host_path(state_dir),
                &file.destination,
                &mounts::STATE_FILE_BIND_OPTIONS,
            )?);
            files.push(file);
        }
    }
    let readonly_root =
        root.readonly() == Some(true) || (store_view.is_none() && input.image == ImageKind::Empty);
    let tmp = Path::new("/tmp");
    if readonly_root && !mounts::already_covered(base_mounts, tmp) {
        mounts.push(mounts::tmpfs(tmp, &mounts::TMP_OPTIONS)?);
    }
    validate::check_mounts(&mounts, closure, state_dir, store_view)?;

    Ok(SpecPlan {
        state_dir: state_dir.into(),
        mounts,
        args,
        env: env_edits,
        files,
        skipped,
        readonly_root,
    })
}

/// The process's argument vector: the entrypoint before the pod's args; else the pod's command
/// with its program found in the closure; else the package's main program, followed by the
/// pod's args. The empty image's placeholder entrypoint ([`EMPTY_IMAGE_ENTRYPOINT`]) in
/// `args[0]` means the pod gave no command.
fn process_args(
    input: &PlanInput<'_>,
    view: &dyn StoreFacts,
    base_args: &[String],
    search: &[PathBuf],
    bin_dirs: &[PathBuf],
) -> Result<Vec<String>, PlanError> {
    let closure = input.members;
    let (base_args, placeholder) = match base_args.split_first() {
        Some((first, rest)) if first == EMPTY_IMAGE_ENTRYPOINT => (rest, true),
        _ => (base_args, false),
    };
    if let Some(entrypoint) = input.entrypoint {
        let program = program::find_entrypoint(view, closure, input.roots, entrypoint, search)?;
        let mut args = vec![program.display().to_string()];
        args.extend(base_args.iter().cloned());
        return Ok(args);
    }
    let command = match base_args.first() {
        Some(command) if !placeholder => command,
        _ => {
            let name = input.main_program.ok_or(ProgramError::NothingToRun)?;
            let program = program::find_on_path(view, closure, "main program", name, bin_dirs)?;
            let mut args = vec![program.display().to_string()];
            args.extend(base_args.iter().cloned());
            return Ok(args);
        }
    };
    let mut args = base_args.to_vec();
    if !command.contains('/') {
        match program::find_on_path(view, closure, "command", command, search) {
            Ok(program) => args[0] = program.display().to_string(),
            // A normal image may provide the program itself; runc looks it up on PATH.
            Err(ProgramError::NotFound { .. }) if input.image == ImageKind::Normal => {}
            Err(err) => return Err(err.into()),
        }
    } else if input.image == ImageKind::Empty
        && command.starts_with(&format!("{STORE_DIR}/"))
        && !program::check_program(view, closure, "command", Path::new(command))?
    {
        return Err(ProgramError::NotFound {
            what: "command",
            program: command.clone(),
            searched: vec![command.into()],
        }
        .into());
    }
    Ok(args)
}
