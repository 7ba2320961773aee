//! A closure: a set of root store paths and everything they reference, transitively.
//!
//! The closure is what containix mounts into a container, and it is also the SBOM.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::store::path_info::PathInfo;
use crate::store::store_path::StorePath;

/// The full closure of some roots, with each member's path info, in store-path order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closure {
    roots: Vec<StorePath>,
    paths: BTreeMap<StorePath, PathInfo>,
}

/// Why a set of path infos is not a closure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClosureError {
    /// A root has no path info.
    #[error("closure root {0} has no path info")]
    MissingRoot(StorePath),
    /// A member refers to a path that is not in the closure.
    #[error("closure member {referrer} refers to {missing}, which is not in the closure")]
    MissingReference {
        /// The member holding the dangling reference.
        referrer: StorePath,
        /// The path it refers to.
        missing: StorePath,
    },
}

impl Closure {
    /// Builds a closure from its roots and the path infos of all members, checking that it is
    /// closed under references. Infos not reachable from the roots are dropped.
    pub fn new(
        roots: Vec<StorePath>,
        infos: impl IntoIterator<Item = PathInfo>,
    ) -> Result<Self, ClosureError> {
        let mut all: BTreeMap<StorePath, PathInfo> = infos
            .into_iter()
            .map(|info| (info.path.clone(), info))
            .collect();
        let mut paths = BTreeMap::new();
        let mut pending: Vec<StorePath> = Vec::new();
        for root in &roots {
            if !all.contains_key(root) && !paths.contains_key(root) {
                return Err(ClosureError::MissingRoot(root.clone()));
            }
            pending.push(root.clone());
        }
        while let Some(path) = pending.pop() {
            let Some(info) = all.remove(&path) else {
                continue;
            };
            for reference in &info.references {
                if paths.contains_key(reference) || *reference == path {
                    continue;
                }
                if !all.contains_key(reference) {
                    return Err(ClosureError::MissingReference {
                        referrer: path.clone(),
                        missing: reference.clone(),
                    });
                }
                pending.push(reference.clone());
            }
            paths.insert(path, info);
        }
        let mut unique_roots = Vec::with_capacity(roots.len());
        let mut seen = BTreeSet::new();
        for root in roots {
            if seen.insert(root.clone()) {
                unique_roots.push(root);
            }
        }
        Ok(Self {
            roots: unique_roots,
            paths,
        })
    }

    /// The roots the closure was computed from, in the order given, without duplicates.
    pub fn roots(&self) -> &[StorePath] {
        &self.roots
    }

    /// Every member with its path info, in store-path order.
    pub fn infos(&self) -> impl ExactSizeIterator<Item = &PathInfo> {
        self.paths.values()
    }

    /// Every member, in store-path order.
    pub fn paths(&self) -> impl ExactSizeIterator<Item = &StorePath> {
        self.paths.keys()
    }

    /// The path info of one member.
    pub fn get(&self, path: &StorePath) -> Option<&PathInfo> {
        self.paths.get(path)
    }

    /// Whether `path` is a member.
    pub fn contains(&self, path: &StorePath) -> bool {
        self.paths.contains_key(path)
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether the closure has no members.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Sum of the members' NAR sizes: what the closure occupies in the store, roughly.
    pub fn nar_size(&self) -> u64 {
        self.paths.values().map(|info| info.nar_size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str) -> StorePath {
        StorePath::parse(&format!("/nix/store/{}-{name}", "a".repeat(32))).unwrap()
    }

    fn info(name: &str, refs: &[&str]) -> PathInfo {
        PathInfo::new(
            path(name),
            "0".repeat(64),
            100,
            refs.iter().map(|r| path(r)),
        )
    }

    #[test]
    fn keeps_reachable_members_only() {
        let closure = Closure::new(
            vec![path("app"), path("app")],
            [
                info("app", &["app", "lib"]),
                info("lib", &["libc"]),
                info("libc", &[]),
                info("unrelated", &[]),
            ],
        )
        .unwrap();
        assert_eq!(closure.roots(), &[path("app")]);
        let names: Vec<_> = closure.paths().map(|p| p.name().to_owned()).collect();
        assert_eq!(names, ["app", "lib", "libc"]);
        assert_eq!(closure.nar_size(), 300);
    }

    #[test]
    fn rejects_open_sets() {
        let err = Closure::new(vec![path("app")], [info("app", &["lib"])]).unwrap_err();
        assert_eq!(
            err,
            ClosureError::MissingReference {
                referrer: path("app"),
                missing: path("lib")
            }
        );
        let err = Closure::new(vec![path("gone")], []).unwrap_err();
        assert!(err.to_string().contains("has no path info"));
    }
}
