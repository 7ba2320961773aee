//! The store paths a container sees, as planning asks about them: whether a path is one of
//! them, and which they are. A [`Closure`] answers from memory; a store view answers from its
//! directory ([`crate::assemble::view::view_members`]), so a repeat start plans without
//! loading the closure's path infos.

use crate::store::closure::Closure;
use crate::store::store_path::StorePath;

/// A set of store paths: the members of one closure.
pub trait Members: std::fmt::Debug + Sync {
    /// Whether `path` is a member.
    fn contains(&self, path: &StorePath) -> bool;

    /// Every member, in store-path order.
    fn list(&self) -> std::io::Result<Vec<StorePath>>;
}

impl Members for Closure {
    fn contains(&self, path: &StorePath) -> bool {
        Closure::contains(self, path)
    }

    fn list(&self) -> std::io::Result<Vec<StorePath>> {
        Ok(self.paths().cloned().collect())
    }
}
