//! The rootfs and OCI spec plan: what to change in a base spec so it runs a resolved closure.
//!
//! [`plan`] computes a [`SpecPlan`] as data from its inputs and a [`StoreView`]; [`apply`]
//! performs it on a spec without I/O. Applying a plan twice gives the same spec as applying it
//! once. The effects on the host (state files, `config.json`) live in [`crate::bundle`].

mod apply;
pub mod env;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod mounts;
pub mod users;
pub mod validate;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use apply::apply;
pub use env::EnvEdit;
pub use mounts::SkippedMember;

use crate::oci_image::EMPTY_IMAGE_ENTRYPOINT;
use crate::program::{self, ProgramError};
use crate::resolved::Resolved;
use crate::store_path::{STORE_DIR, StorePath};
use crate::store_view::StoreView;

/// What the container image brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageKind {
    /// The empty image: the rootfs holds nothing but what containix mounts (a pure Nix rootfs).
    Empty,
    /// A normal image: its rootfs is kept and the closure is added on top.
    Normal,
}

/// Everything a plan is computed from.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The resolved request: roots, closure and main program.
    pub resolved: &'a Resolved,
    /// The spec as containerd (or the CLI) made it; its `process.args` are the pod's command.
    pub base: &'a Spec,
    /// The entrypoint annotation, already validated: `/bin/app` or a program name.
    pub entrypoint: Option<&'a str>,
    /// What the container image brings.
    pub image: ImageKind,
    /// The per-container directory on the host that receives generated files.
    pub state_dir: &'a Path,
}

/// A file the plan writes into the state directory and mounts read-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// File name inside the state directory.
    pub name: String,
    /// Where it appears in the container.
    pub destination: PathBuf,
    /// Contents.
    pub contents: String,
}

/// The edits that turn a base spec into one that runs the closure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecPlan {
    /// The state directory the plan's files go to.
    pub state_dir: PathBuf,
    /// Mounts to add after the base spec's own, in order.
    pub mounts: Vec<Mount>,
    /// The process's full argument vector.
    pub args: Vec<String>,
    /// Environment changes, in order.
    pub env: Vec<EnvEdit>,
    /// Files to write into the state directory.
    pub files: Vec<StateFile>,
    /// Closure members that get no mount, and why.
    pub skipped: Vec<SkippedMember>,
    /// Whether the root filesystem is read-only: always for the empty image, whose rootfs
    /// holds nothing but the closure (so `/nix/store` cannot gain entries), else as the base
    /// spec says. runc applies it after creating every mount point.
    #[serde(default)]
    pub readonly_root: bool,
}

impl StateFile {
    /// The file's path on the host.
    pub fn host_path(&self, state_dir: &Path) -> PathBuf {
        state_dir.join(&self.name)
    }
}

/// Why no plan could be made.
#[derive(Debug, Error)]
pub enum PlanError {
    /// The base spec has no `root`.
    #[error("the base spec has no `root`; expected root.path naming the container's rootfs")]
    NoRoot,
    /// The base spec has no `process`.
    #[error(
        "the base spec has no `process`; expected the container's process with its user and args"
    )]
    NoProcess,
    /// The state directory path is unusable.
    #[error("state directory {path:?} {reason}")]
    StateDir {
        /// The path given.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A planned mount broke a rule (a bug in the planner if it ever happens).
    #[error("planned mount at {destination:?} {reason}")]
    InvalidMount {
        /// The mount's destination.
        destination: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A closure member is not in the local store.
    #[error("closure member {path} is missing from the local store")]
    MissingFromStore {
        /// The missing member.
        path: StorePath,
    },
    /// The base spec mounts something where a closure member goes.
    #[error(
        "the base spec mounts {destination:?}, inside closure member {member}; the closure is mounted read-only and cannot share that place"
    )]
    MountConflict {
        /// The base mount's destination.
        destination: PathBuf,
        /// The member it collides with.
        member: StorePath,
    },
    /// The program to run could not be found.
    #[error(transparent)]
    Program(#[from] ProgramError),
    /// The store could not be read.
    #[error("reading {path:?} in the store: {source}")]
    Store {
        /// The path being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// oci-spec rejected a value.
    #[error("building the OCI spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
}

/// Computes the plan that makes `input.base` run `input.resolved`, reading only what `view`
/// tells about the store. Deterministic: the same inputs give the same plan.
pub fn plan(input: &PlanInput<'_>, view: &dyn StoreView) -> Result<SpecPlan, PlanError> {
    let PlanInput {
        resolved,
        base,
        image,
        state_dir,
        ..
    } = *input;
    validate::check_state_dir(state_dir)?;
    let root = base.root().as_ref().ok_or(PlanError::NoRoot)?;
    let process = base.process().as_ref().ok_or(PlanError::NoProcess)?;
    let closure = &resolved.closure;
    let base_mounts: &[Mount] = base.mounts().as_deref().unwrap_or_default();
    let base_env: &[String] = process.env().as_deref().unwrap_or_default();
    let base_args: &[String] = process.args().as_deref().unwrap_or_default();

    let bin_dirs = program::bin_dirs(view, closure, &resolved.roots)?;
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
        let bundle = env::find_ca_bundle(view, closure, &resolved.roots).map_err(|source| {
            PlanError::Store {
                path: STORE_DIR.into(),
                source,
            }
        })?;
        if let Some(bundle) = bundle {
            for name in unset {
                env_edits.push(EnvEdit::SetDefault {
                    name: name.into(),
                    value: bundle.display().to_string(),
                });
            }
        }
    }

    let (mut mounts, skipped) = mounts::closure_binds(view, closure, base_mounts)?;
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
    let readonly_root = input.image == ImageKind::Empty || root.readonly() == Some(true);
    let tmp = Path::new("/tmp");
    if readonly_root && !mounts::already_covered(base_mounts, tmp) {
        mounts.push(mounts::tmpfs(tmp, &mounts::TMP_OPTIONS)?);
    }
    validate::check_mounts(&mounts, closure, state_dir)?;

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
    view: &dyn StoreView,
    base_args: &[String],
    search: &[PathBuf],
    bin_dirs: &[PathBuf],
) -> Result<Vec<String>, PlanError> {
    let closure = &input.resolved.closure;
    let (base_args, placeholder) = match base_args.split_first() {
        Some((first, rest)) if first == EMPTY_IMAGE_ENTRYPOINT => (rest, true),
        _ => (base_args, false),
    };
    if let Some(entrypoint) = input.entrypoint {
        let program =
            program::find_entrypoint(view, closure, &input.resolved.roots, entrypoint, search)?;
        let mut args = vec![program.display().to_string()];
        args.extend(base_args.iter().cloned());
        return Ok(args);
    }
    let command = match base_args.first() {
        Some(command) if !placeholder => command,
        _ => {
            let name = input
                .resolved
                .main_program
                .as_deref()
                .ok_or(ProgramError::NothingToRun)?;
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
