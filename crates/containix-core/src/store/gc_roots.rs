//! Per-consumer GC roots: `<state_dir>/gcroots/<consumer>/<store path base name>`, one symlink
//! per root store path, each registered with the daemon as an indirect root.
//!
//! A consumer is whatever keeps a closure in use (a container, a CSI volume). While its symlinks
//! exist, the garbage collector keeps the roots and their closures; removing them
//! ([`GcRoots::release`]) lets the indirect roots lapse. Symlinks are created under a temporary
//! name and renamed into place, so a reader never sees a half-made root, and both operations
//! are idempotent.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::store::daemon::{client::DaemonClient, error::DaemonError};
use crate::store::store_path::StorePath;

/// Longest consumer id accepted, in bytes.
pub const MAX_CONSUMER_LEN: usize = 128;

/// Prefix of symlinks being created; never a store path base name (those start with a hash).
const TEMP_PREFIX: &str = ".tmp-";

/// The GC roots containix holds, by consumer.
#[derive(Debug, Clone)]
pub struct GcRoots {
    dir: PathBuf,
}

/// One root held for a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRoot {
    /// The consumer holding it.
    pub consumer: String,
    /// The symlink.
    pub link: PathBuf,
    /// The store path it points to (`None` if the link does not point at a store path).
    pub target: Option<StorePath>,
}

/// Why GC roots could not be taken, released or listed.
#[derive(Debug, Error)]
pub enum GcRootError {
    /// The consumer id is not usable as a directory name.
    #[error(
        "invalid GC root consumer {0:?}: expected 1 to {MAX_CONSUMER_LEN} characters from \
         `A-Z a-z 0-9 . _ - + = @ :`, not starting with `.`"
    )]
    InvalidConsumer(String),
    /// The roots directory is relative: the daemon could not follow the links.
    #[error("the GC roots directory {} is not an absolute path", .0.display())]
    RelativeDir(PathBuf),
    /// A file system operation failed.
    #[error("GC roots: {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The daemon refused to register a root.
    #[error("GC roots: registering {} with the Nix daemon: {source}", link.display())]
    Daemon {
        /// The symlink.
        link: PathBuf,
        /// The daemon's error.
        source: DaemonError,
    },
}

impl GcRoots {
    /// The roots under `<state_dir>/gcroots`.
    pub fn new(state_dir: impl AsRef<Path>) -> Self {
        Self {
            dir: state_dir.as_ref().join("gcroots"),
        }
    }

    /// The directory holding every consumer's roots.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of one consumer's roots.
    pub fn consumer_dir(&self, consumer: &str) -> Result<PathBuf, GcRootError> {
        validate_consumer(consumer)?;
        Ok(self.dir.join(consumer))
    }

    /// Makes `roots` (and so their closures) the GC roots of `consumer`: one symlink per root,
    /// registered with `AddIndirectRoot`. Roots the consumer held before and no longer names
    /// are dropped afterwards, so the consumer's set is exactly `roots`. Holding the same set
    /// again changes nothing. Returns the symlinks.
    ///
    /// The caller must keep the roots alive until this returns (a temp root on `client`, see
    /// [`crate::resolve::resolver::Resolution::hold`]).
    pub async fn hold<S>(
        &self,
        consumer: &str,
        roots: &[StorePath],
        client: &mut DaemonClient<S>,
    ) -> Result<Vec<PathBuf>, GcRootError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let dir = self.consumer_dir(consumer)?;
        if !dir.is_absolute() {
            return Err(GcRootError::RelativeDir(self.dir.clone()));
        }
        fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
        let mut links = Vec::with_capacity(roots.len());
        for root in roots {
            let link = dir.join(root.base_name());
            if fs::read_link(&link).ok().as_deref() != Some(root.as_path()) {
                replace_symlink(root.as_path(), &link)?;
            }
            client
                .add_indirect_root(&link)
                .await
                .map_err(|source| GcRootError::Daemon {
                    link: link.clone(),
                    source,
                })?;
            links.push(link);
        }
        let wanted: BTreeSet<&Path> = links.iter().map(PathBuf::as_path).collect();
        for entry in fs::read_dir(&dir).map_err(io_error("reading", &dir))? {
            let path = entry.map_err(io_error("reading", &dir))?.path();
            if !wanted.contains(path.as_path()) {
                remove_link(&path)?;
            }
        }
        Ok(links)
    }

    /// Removes every root `consumer` holds; the garbage collector may then collect what only
    /// they kept alive. Releasing a consumer that holds nothing is not an error.
    pub fn release(&self, consumer: &str) -> Result<(), GcRootError> {
        let dir = self.consumer_dir(consumer)?;
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(io_error("reading", &dir)(err)),
        };
        for entry in entries {
            remove_link(&entry.map_err(io_error("reading", &dir))?.path())?;
        }
        match fs::remove_dir(&dir) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                Err(io_error("removing", &dir)(err))
            }
            _ => Ok(()),
        }
    }

    /// Every root held, by consumer then link, for diagnostics.
    pub fn list(&self) -> Result<Vec<HeldRoot>, GcRootError> {
        let consumers = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(io_error("reading", &self.dir)(err)),
        };
        let mut held = Vec::new();
        for consumer in consumers {
            let consumer = consumer.map_err(io_error("reading", &self.dir))?;
            let Ok(name) = consumer.file_name().into_string() else {
                continue;
            };
            if validate_consumer(&name).is_err() || !consumer.path().is_dir() {
                continue;
            }
            let dir = consumer.path();
            for entry in fs::read_dir(&dir).map_err(io_error("reading", &dir))? {
                let link = entry.map_err(io_error("reading", &dir))?.path();
                let target = fs::read_link(&link)
                    .ok()
                    .and_then(|t| t.to_str().and_then(|t| StorePath::parse(t).ok()));
                held.push(HeldRoot {
                    consumer: name.clone(),
                    link,
                    target,
                });
            }
        }
        held.sort_by(|a, b| (&a.consumer, &a.link).cmp(&(&b.consumer, &b.link)));
        Ok(held)
    }
}

/// Checks that `consumer` is a safe single path component.
pub fn validate_consumer(consumer: &str) -> Result<(), GcRootError> {
    let valid = !consumer.is_empty()
        && consumer.len() <= MAX_CONSUMER_LEN
        && !consumer.starts_with('.')
        && consumer
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+=@:".contains(c));
    if valid {
        Ok(())
    } else {
        Err(GcRootError::InvalidConsumer(consumer.to_owned()))
    }
}

/// Points `link` at `target` atomically: a symlink under a temporary name, renamed over `link`.
fn replace_symlink(target: &Path, link: &Path) -> Result<(), GcRootError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = link.parent().unwrap_or(Path::new("/"));
    let temp = dir.join(format!(
        "{TEMP_PREFIX}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::os::unix::fs::symlink(target, &temp).map_err(io_error("creating", &temp))?;
    fs::rename(&temp, link).map_err(|err| {
        let _ = fs::remove_file(&temp);
        io_error("renaming into place", link)(err)
    })
}

fn remove_link(path: &Path) -> Result<(), GcRootError> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(io_error("removing", path)(err)),
        _ => Ok(()),
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> GcRootError {
    let path = path.to_owned();
    move |source| GcRootError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_ids_are_single_safe_components() {
        for good in ["web", "pod-1234_app", "a.b", "ns:pod@c", "x=y+z"] {
            assert!(validate_consumer(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_CONSUMER_LEN + 1);
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "../x",
            "a b",
            "a\0b",
            long.as_str(),
        ] {
            let err = validate_consumer(bad).unwrap_err().to_string();
            assert!(err.contains("invalid GC root consumer"), "{err}");
        }
    }

    #[test]
    fn release_of_nothing_and_list_of_nothing_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let roots = GcRoots::new(dir.path());
        roots.release("nobody").unwrap();
        assert!(roots.list().unwrap().is_empty());
        assert!(roots.release("../etc").is_err());
    }

    #[test]
    fn symlinks_are_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("root");
        replace_symlink(Path::new("/nix/store/a"), &link).unwrap();
        replace_symlink(Path::new("/nix/store/b"), &link).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("/nix/store/b"));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
