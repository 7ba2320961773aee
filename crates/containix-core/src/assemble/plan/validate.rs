//! Checks that keep a plan inside its bounds: destinations inside the rootfs, bind sources
//! inside the closure or the state directory.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Mount;

use super::error::PlanError;
use crate::store::members::Members;
use crate::store::store_path::{STORE_DIR, StorePath};

/// Normalises a mount destination to an absolute path inside the rootfs: `.` and repeated
/// slashes go away; `..`, the rootfs itself and relative paths are rejected.
pub fn normalize_destination(destination: &Path) -> Result<PathBuf, &'static str> {
    if !destination.is_absolute() {
        return Err("is relative; expected an absolute path inside the container");
    }
    let mut normal = PathBuf::from("/");
    for component in destination.components() {
        match component {
            Component::Normal(name) => normal.push(name),
            Component::ParentDir => return Err("contains '..', which could leave the rootfs"),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if normal == Path::new("/") {
        return Err("is the rootfs itself");
    }
    Ok(normal)
}

/// Normalises a base mount's destination for comparisons, treating a relative one as relative
/// to `/` as runc does; `None` when it cannot be normalised (such mounts are kept untouched).
pub fn base_destination(mount: &Mount) -> Option<PathBuf> {
    normalize_destination(&Path::new("/").join(mount.destination())).ok()
}

/// Checks a state directory path: absolute, normalised, not `/` and not inside the store.
pub fn check_state_dir(state_dir: &Path) -> Result<(), PlanError> {
    let invalid = |reason| PlanError::StateDir {
        path: state_dir.into(),
        reason,
    };
    if !state_dir.is_absolute() {
        return Err(invalid("is relative; expected an absolute path"));
    }
    if state_dir.components().any(|c| c == Component::ParentDir) {
        return Err(invalid("contains '..'"));
    }
    if state_dir.parent().is_none() {
        return Err(invalid("is /; expected a directory of its own"));
    }
    let normal: PathBuf = state_dir.components().collect();
    if normal.as_os_str() != state_dir.as_os_str() {
        return Err(invalid(
            "is not normalised; expected a path without '.' or '//'",
        ));
    }
    if state_dir.starts_with(STORE_DIR) {
        return Err(invalid(
            "is inside the Nix store, which is read-only and shared",
        ));
    }
    Ok(())
}

/// Checks every mount a plan adds: a normalised destination inside the rootfs, no destination
/// twice, and bind sources only in closure members, the state directory, or the store view
/// (at `/nix/store` only).
pub fn check_mounts(
    mounts: &[Mount],
    closure: &dyn Members,
    state_dir: &Path,
    store_view: Option<&Path>,
) -> Result<(), PlanError> {
    let mut seen = std::collections::HashSet::new();
    for mount in mounts {
        let destination = mount.destination();
        let invalid = |reason| PlanError::InvalidMount {
            destination: destination.clone(),
            reason,
        };
        let normal = normalize_destination(destination).map_err(invalid)?;
        if normal.as_os_str() != destination.as_os_str() {
            return Err(invalid("is not normalised"));
        }
        if !seen.insert(normal) {
            return Err(invalid("is planned twice"));
        }
        if mount.typ().as_deref() != Some("bind") {
            continue;
        }
        let Some(source) = mount.source() else {
            return Err(invalid("is a bind mount without a source"));
        };
        let in_closure = source
            .to_str()
            .and_then(|text| StorePath::parse_prefix(text).ok())
            .is_some_and(|(member, rest)| rest.is_empty() && closure.contains(&member));
        let in_state_dir = source.starts_with(state_dir)
            && source
                .components()
                .all(|c| c != Component::ParentDir && c != Component::CurDir);
        let is_view = store_view == Some(source.as_path()) && destination == Path::new(STORE_DIR);
        if !in_closure && !in_state_dir && !is_view {
            return Err(invalid(
                "has a bind source outside the closure, the state directory and the store view",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_normalise_or_fail() {
        assert_eq!(
            normalize_destination(Path::new("/etc//./passwd/")).unwrap(),
            PathBuf::from("/etc/passwd")
        );
        for (bad, reason) in [
            ("etc/passwd", "relative"),
            ("/nix/store/../../etc", "'..'"),
            ("/", "rootfs itself"),
            ("/./", "rootfs itself"),
        ] {
            let err = normalize_destination(Path::new(bad)).unwrap_err();
            assert!(err.contains(reason), "{bad}: {err}");
        }
    }

    #[test]
    fn state_dirs_are_checked() {
        check_state_dir(Path::new("/run/containix/abc")).unwrap();
        for (bad, reason) in [
            ("run/x", "relative"),
            ("/run/../x", "'..'"),
            ("/run//x", "not normalised"),
            ("/", "is /"),
            ("/nix/store/x", "inside the Nix store"),
        ] {
            let err = check_state_dir(Path::new(bad)).unwrap_err().to_string();
            assert!(err.contains(reason), "{bad}: {err}");
        }
    }
}
