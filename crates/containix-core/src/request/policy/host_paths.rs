//! The one effect of checking a flake ref against the policy: asking the node what a local path
//! resolves to. Behind a trait so the matching itself can be tested without a filesystem.

use std::io;
use std::path::{Path, PathBuf};

/// What the node's filesystem says about a path.
pub trait HostPaths {
    /// The absolute path with every symlink and `.`/`..` resolved (`realpath`).
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf>;

    /// Whether anything is at `path` (a final symlink is not followed).
    fn exists(&self, path: &Path) -> bool;
}

/// The real filesystem of this machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostFilesystem;

impl HostPaths for HostFilesystem {
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.symlink_metadata().is_ok()
    }
}

/// `path` with `.` and `..` resolved lexically (no filesystem access); `..` at the root stays
/// at the root, as the kernel does.
pub fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}
