//! The plan as data: what it is computed from ([`PlanInput`]) and the edits it makes
//! ([`SpecPlan`]).

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};
use serde::{Deserialize, Serialize};

use super::env::EnvEdit;
use super::mounts::SkippedMember;
use crate::resolve::resolved::Resolved;
use crate::store::members::Members;
use crate::store::store_path::StorePath;

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
    /// The closure's roots, in the request's order; the first is the main package.
    pub roots: &'a [StorePath],
    /// The closure's members: a [`crate::store::closure::Closure`], or the store view that
    /// shows them ([`crate::assemble::view::view_members::ViewMembers`]).
    pub members: &'a dyn Members,
    /// The package's main program ([`crate::resolve::resolved::Resolved::main_program`]).
    pub main_program: Option<&'a str>,
    /// The spec as containerd (or the CLI) made it; its `process.args` are the pod's command.
    pub base: &'a Spec,
    /// The entrypoint annotation, already validated: `/bin/app` or a program name.
    pub entrypoint: Option<&'a str>,
    /// What the container image brings.
    pub image: ImageKind,
    /// The per-container directory on the host that receives generated files.
    pub state_dir: &'a Path,
    /// The node's store view of the closure ([`crate::assemble::view`]): mounted as the
    /// container's whole `/nix/store`, one mount whatever the closure's size. Without one, each
    /// member is bound at its own path (what `containix spec` prints for a bundle off the node).
    pub store_view: Option<&'a Path>,
    /// The closure's CA bundles ([`super::env::ca_bundles`]) when they are known in advance, as
    /// a store view records them; `None` makes the plan look for one through the store, which
    /// costs a few lookups per closure member.
    pub ca_bundles: Option<&'a [PathBuf]>,
}

impl<'a> PlanInput<'a> {
    /// The input that runs `resolved` on `base` with one bind per closure member and the CA
    /// bundle searched for: a plan without a store view, as `containix spec` makes off the node.
    pub fn for_resolved(
        resolved: &'a Resolved,
        base: &'a Spec,
        entrypoint: Option<&'a str>,
        image: ImageKind,
        state_dir: &'a Path,
    ) -> Self {
        Self {
            roots: &resolved.roots,
            members: &resolved.closure,
            main_program: resolved.main_program.as_deref(),
            base,
            entrypoint,
            image,
            state_dir,
            store_view: None,
            ca_bundles: None,
        }
    }
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
    /// Whether the root filesystem is read-only: as the base spec says (Kubernetes'
    /// `readOnlyRootFilesystem`) when the closure comes from a store view, whose mount keeps
    /// `/nix/store` read-only either way; with per-member binds, also always for the empty image,
    /// so that its `/nix/store` cannot gain entries. runc applies it after creating every
    /// mount point.
    #[serde(default)]
    pub readonly_root: bool,
}

impl StateFile {
    /// The file's path on the host.
    pub fn host_path(&self, state_dir: &Path) -> PathBuf {
        state_dir.join(&self.name)
    }
}
