//! The few filesystem facts the planner needs about store paths, behind a trait.
//!
//! Planning asks "what is at this path?" and nothing else. [`HostStore`] answers from the host's
//! filesystem; [`MemoryStore`] answers from a map, so plans can be tested without a Nix store.
//! [`resolve`] follows symlinks the way the kernel would inside the container, using only these
//! answers.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// What is found at a path, without following a final symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory.
    Directory,
    /// A regular file; `executable` when any execute bit is set.
    File {
        /// Whether any execute bit is set.
        executable: bool,
    },
    /// A symbolic link and the target it names.
    Symlink {
        /// The link's target, as stored (absolute or relative to the link's directory).
        target: PathBuf,
    },
}

/// Read-only facts about paths, as the planner needs them.
pub trait StoreFacts {
    /// What is at `path`, without following a final symlink; `None` when nothing is there
    /// (including when a parent is not a directory).
    fn entry(&self, path: &Path) -> io::Result<Option<Entry>>;
}

/// The host's filesystem. Store paths look the same on the host and in the container, because
/// the container sees them through bind mounts at their own paths.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostStore;

impl StoreFacts for HostStore {
    fn entry(&self, path: &Path) -> io::Result<Option<Entry>> {
        let metadata = match std::fs::symlink_metadata(path) {
            Ok(metadata) => metadata,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        let file_type = metadata.file_type();
        Ok(Some(if file_type.is_symlink() {
            Entry::Symlink {
                target: std::fs::read_link(path)?,
            }
        } else if file_type.is_dir() {
            Entry::Directory
        } else {
            Entry::File {
                executable: metadata.permissions().mode() & 0o111 != 0,
            }
        }))
    }
}

/// An in-memory tree for tests: every inserted path gets its parents as directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStore {
    entries: BTreeMap<PathBuf, Entry>,
}

impl MemoryStore {
    /// An empty tree holding only `/`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory.
    pub fn dir(mut self, path: impl AsRef<Path>) -> Self {
        self.insert(path.as_ref(), Entry::Directory);
        self
    }

    /// Adds a regular file.
    pub fn file(mut self, path: impl AsRef<Path>, executable: bool) -> Self {
        self.insert(path.as_ref(), Entry::File { executable });
        self
    }

    /// Adds a symbolic link to `target`.
    pub fn symlink(mut self, path: impl AsRef<Path>, target: impl Into<PathBuf>) -> Self {
        self.insert(
            path.as_ref(),
            Entry::Symlink {
                target: target.into(),
            },
        );
        self
    }

    fn insert(&mut self, path: &Path, entry: Entry) {
        assert!(
            path.is_absolute(),
            "MemoryStore paths are absolute: {path:?}"
        );
        for ancestor in path.ancestors().skip(1) {
            self.entries
                .entry(ancestor.to_path_buf())
                .or_insert(Entry::Directory);
        }
        self.entries.insert(path.to_path_buf(), entry);
    }
}

impl StoreFacts for MemoryStore {
    fn entry(&self, path: &Path) -> io::Result<Option<Entry>> {
        if path == Path::new("/") {
            return Ok(Some(Entry::Directory));
        }
        Ok(self.entries.get(path).cloned())
    }
}

/// Most symlinks followed while resolving one path, as Linux allows.
pub const MAX_SYMLINK_HOPS: usize = 40;

/// Where a path leads once every symlink on the way is followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The final path, free of symlinks, `.` and `..`.
    pub path: PathBuf,
    /// What is at the final path (never a symlink).
    pub entry: Entry,
    /// Every symlink followed on the way, in order.
    pub links: Vec<PathBuf>,
}

/// Where following a path ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The path leads to an entry.
    Found(Resolution),
    /// The path leads nowhere: a missing entry, a file used as a directory, or more than
    /// [`MAX_SYMLINK_HOPS`] links.
    Missing,
    /// The path leaves the allowed area; this is where it would go next.
    Outside(PathBuf),
}

/// Follows `path` component by component, as the kernel would; `None` when it leads nowhere
/// (a missing entry, a file used as a directory, or more than [`MAX_SYMLINK_HOPS`] links).
pub fn resolve(view: &dyn StoreFacts, path: &Path) -> io::Result<Option<Resolution>> {
    Ok(match resolve_within(view, path, &|_| true)? {
        Outcome::Found(found) => Some(found),
        Outcome::Missing | Outcome::Outside(_) => None,
    })
}

/// Like [`resolve`], but stops as soon as a path about to be looked at is not `allowed`, such
/// as a symlink leading out of the closure.
pub fn resolve_within(
    view: &dyn StoreFacts,
    path: &Path,
    allowed: &dyn Fn(&Path) -> bool,
) -> io::Result<Outcome> {
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_components(&mut pending, path);
    let mut done = PathBuf::from("/");
    let mut entry = Entry::Directory;
    let mut links = Vec::new();
    while let Some(component) = pending.pop_front() {
        if component == ".." {
            done.pop();
            entry = Entry::Directory;
            continue;
        }
        if entry != Entry::Directory {
            return Ok(Outcome::Missing);
        }
        let candidate = done.join(&component);
        if !allowed(&candidate) {
            let mut outside = candidate;
            outside.extend(pending);
            return Ok(Outcome::Outside(outside));
        }
        match view.entry(&candidate)? {
            None => return Ok(Outcome::Missing),
            Some(Entry::Symlink { target }) => {
                if links.len() == MAX_SYMLINK_HOPS {
                    return Ok(Outcome::Missing);
                }
                links.push(candidate);
                if target.is_absolute() {
                    done = PathBuf::from("/");
                }
                let mut rest: VecDeque<OsString> = VecDeque::new();
                push_components(&mut rest, &target);
                rest.extend(pending);
                pending = rest;
                entry = Entry::Directory;
            }
            Some(found) => {
                done = candidate;
                entry = found;
            }
        }
    }
    Ok(Outcome::Found(Resolution {
        path: done,
        entry,
        links,
    }))
}

fn push_components(queue: &mut VecDeque<OsString>, path: &Path) {
    for component in path.components() {
        match component {
            Component::Normal(name) => queue.push_back(name.to_owned()),
            Component::ParentDir => queue.push_back("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "/nix/store/0c0v3mxyqdbsxg6wvf5l3z7c3khkfbyk-app";
    const LIB: &str = "/nix/store/1c0v3mxyqdbsxg6wvf5l3z7c3khkfbyk-lib";

    fn store() -> MemoryStore {
        MemoryStore::new()
            .file(format!("{LIB}/bin/tool"), true)
            .symlink(format!("{APP}/bin/app"), format!("{LIB}/bin/tool"))
            .symlink(format!("{APP}/bin/rel"), "../libexec/real")
            .file(format!("{APP}/libexec/real"), true)
            .symlink(format!("{APP}/bin/loop"), "loop")
            .symlink(format!("{APP}/share"), LIB)
            .file(format!("{APP}/README"), false)
    }

    #[test]
    fn follows_absolute_and_relative_links() {
        let view = store();
        let found = resolve(&view, Path::new(&format!("{APP}/bin/app")))
            .unwrap()
            .unwrap();
        assert_eq!(found.path, PathBuf::from(format!("{LIB}/bin/tool")));
        assert_eq!(found.entry, Entry::File { executable: true });
        assert_eq!(found.links, [PathBuf::from(format!("{APP}/bin/app"))]);

        let found = resolve(&view, Path::new(&format!("{APP}/bin/rel")))
            .unwrap()
            .unwrap();
        assert_eq!(found.path, PathBuf::from(format!("{APP}/libexec/real")));

        let found = resolve(&view, Path::new(&format!("{APP}/share/bin/tool")))
            .unwrap()
            .unwrap();
        assert_eq!(found.path, PathBuf::from(format!("{LIB}/bin/tool")));
    }

    #[test]
    fn dead_ends_resolve_to_none() {
        let view = store();
        for path in [
            format!("{APP}/bin/missing"),
            format!("{APP}/bin/loop"),
            format!("{APP}/README/x"),
            "/etc/passwd".to_owned(),
        ] {
            assert_eq!(resolve(&view, Path::new(&path)).unwrap(), None, "{path}");
        }
        let root = resolve(&view, Path::new("/")).unwrap().unwrap();
        assert_eq!(root.path, PathBuf::from("/"));
    }

    #[test]
    fn stops_at_the_boundary() {
        let view = store().symlink(format!("{APP}/bin/etc"), "/etc/ssl/../passwd");
        let inside_app = |path: &Path| path.starts_with(APP) || Path::new(APP).starts_with(path);
        let outcome = resolve_within(&view, Path::new(&format!("{APP}/bin/etc")), &inside_app);
        assert_eq!(
            outcome.unwrap(),
            Outcome::Outside("/etc/ssl/../passwd".into())
        );
        let outcome = resolve_within(&view, Path::new(&format!("{APP}/bin/app")), &inside_app);
        assert!(matches!(outcome.unwrap(), Outcome::Outside(p) if p.starts_with(LIB)));
        let outcome = resolve_within(&view, Path::new(&format!("{APP}/bin/rel")), &inside_app);
        assert!(matches!(outcome.unwrap(), Outcome::Found(_)));
    }

    #[test]
    fn host_store_reports_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("l")).unwrap();
        let view = HostStore;
        assert_eq!(view.entry(dir.path()).unwrap(), Some(Entry::Directory));
        assert_eq!(
            view.entry(&file).unwrap(),
            Some(Entry::File { executable: true })
        );
        assert_eq!(
            view.entry(&dir.path().join("l")).unwrap(),
            Some(Entry::Symlink { target: "f".into() })
        );
        assert_eq!(view.entry(&dir.path().join("none")).unwrap(), None);
        assert_eq!(view.entry(&file.join("below")).unwrap(), None);
    }
}
