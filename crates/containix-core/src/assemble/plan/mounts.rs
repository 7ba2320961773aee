//! The mounts a plan adds: one read-only bind per closure member at its own path, the
//! state directory's files, and `/tmp` for a read-only root.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{Mount, MountBuilder};
use serde::{Deserialize, Serialize};

use super::error::PlanError;
use super::validate::base_destination;
use crate::assemble::program::within_closure;
use crate::assemble::store_facts::{Outcome, StoreFacts, resolve_within};
use crate::store::members::Members;
use crate::store::store_path::{STORE_DIR, StorePath};

/// Options of a closure member's bind: read-only, no setuid, no device nodes.
pub const CLOSURE_BIND_OPTIONS: [&str; 4] = ["rbind", "ro", "nosuid", "nodev"];

/// Options of a state-directory file's bind: like the closure's, and not executable.
pub const STATE_FILE_BIND_OPTIONS: [&str; 5] = ["rbind", "ro", "nosuid", "nodev", "noexec"];

/// Options of the `/tmp` tmpfs given to a read-only root.
pub const TMP_OPTIONS: [&str; 3] = ["nosuid", "nodev", "mode=1777"];

/// A closure member that gets no mount, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedMember {
    /// The member.
    pub path: StorePath,
    /// Why it is not mounted.
    pub reason: String,
}

/// A read-only bind of `source` at `destination`.
pub fn bind(source: &Path, destination: &Path, options: &[&str]) -> Result<Mount, PlanError> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// A tmpfs at `destination`.
pub fn tmpfs(destination: &Path, options: &[&str]) -> Result<Mount, PlanError> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ("tmpfs")
        .source("tmpfs")
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// Options of the store view's mount: recursive (a bind-tree view holds one mount per member),
/// read-only, no setuid, no device nodes.
pub const VIEW_BIND_OPTIONS: [&str; 4] = ["rbind", "ro", "nosuid", "nodev"];

/// The store view at `/nix/store`: the one mount that shows the whole closure. A base mount at
/// or below `/nix/store` would hide part of it, or be hidden, so it is refused.
pub fn view_bind(store: &Path, base: &[Mount]) -> Result<Mount, PlanError> {
    let destination = Path::new(STORE_DIR);
    if let Some(existing) = base
        .iter()
        .filter_map(base_destination)
        .find(|existing| existing.starts_with(destination))
    {
        return Err(PlanError::StoreMountConflict {
            destination: existing,
        });
    }
    bind(store, destination, &VIEW_BIND_OPTIONS)
}

/// One bind per closure member, in store order, plus the members that cannot be mounted.
///
/// A member that is a directory or a regular file is bound at its own path (runc creates a
/// directory or an empty file as the mount point, matching the source). A member that is a
/// symlink is bound too, which shows its target's contents, but only when the target lies in the
/// closure: the kernel follows the link on the host, so a link leading elsewhere would expose host
/// files. Such members, and dangling links, are skipped and reported.
pub fn closure_binds(
    view: &dyn StoreFacts,
    closure: &dyn Members,
    base: &[Mount],
) -> Result<(Vec<Mount>, Vec<SkippedMember>), PlanError> {
    let members = closure.list().map_err(|source| PlanError::Store {
        path: STORE_DIR.into(),
        source,
    })?;
    let mut mounts = Vec::with_capacity(members.len());
    let mut skipped = Vec::new();
    let inside_members = base_mounts_by_member(base);
    for member in &members {
        let store_error = |source| PlanError::Store {
            path: member.as_path().into(),
            source,
        };
        if view.entry(member.as_path()).map_err(store_error)?.is_none() {
            return Err(PlanError::MissingFromStore {
                path: member.clone(),
            });
        }
        let reason = match resolve_within(view, member.as_path(), &within_closure(closure))
            .map_err(store_error)?
        {
            Outcome::Found(_) => None,
            Outcome::Missing => Some("is a symlink that leads nowhere".to_string()),
            Outcome::Outside(outside) => Some(format!(
                "is a symlink leading to {}, outside the closure",
                outside.display()
            )),
        };
        if let Some(reason) = reason {
            skipped.push(SkippedMember {
                path: member.clone(),
                reason,
            });
            continue;
        }
        let mount = bind(member.as_path(), member.as_path(), &CLOSURE_BIND_OPTIONS)?;
        check_conflicts(member, &mount, &inside_members)?;
        mounts.push(mount);
    }
    Ok((mounts, skipped))
}

/// Base mounts whose destination lies at or below a store path, by that store path, in base
/// order: built once so that checking every member costs one lookup, not a scan of the base.
type MountsByMember<'a> = BTreeMap<StorePath, Vec<(PathBuf, &'a Mount)>>;

fn base_mounts_by_member(base: &[Mount]) -> MountsByMember<'_> {
    let mut by_member = MountsByMember::new();
    for existing in base {
        if let Some(destination) = base_destination(existing)
            && let Some(member) = store_path_of(&destination)
        {
            by_member
                .entry(member)
                .or_default()
                .push((destination, existing));
        }
    }
    by_member
}

/// The store path a normalised path is at or below (`/nix/store/<hash>-<name>[/...]`), if it
/// names a valid one.
fn store_path_of(path: &Path) -> Option<StorePath> {
    let rest = path.strip_prefix(STORE_DIR).ok()?;
    let Some(Component::Normal(base_name)) = rest.components().next() else {
        return None;
    };
    StorePath::parse(&format!("{STORE_DIR}/{}", base_name.to_str()?)).ok()
}

/// A base mount at or below a member would be hidden by (or would hide) the member's bind.
fn check_conflicts(
    member: &StorePath,
    mount: &Mount,
    inside_members: &MountsByMember<'_>,
) -> Result<(), PlanError> {
    for (destination, existing) in inside_members.get(member).into_iter().flatten() {
        if *existing != mount {
            return Err(PlanError::MountConflict {
                destination: destination.clone(),
                member: member.clone(),
            });
        }
    }
    Ok(())
}

/// Whether the base spec already mounts something at `destination` or at one of its parents
/// (other than `/`), in which case containix leaves that place alone. A scan of the base: the
/// plan asks this for a fixed handful of places, never per closure member.
pub fn already_covered(base: &[Mount], destination: &Path) -> bool {
    base.iter()
        .filter_map(base_destination)
        .any(|existing| destination.starts_with(&existing))
}
