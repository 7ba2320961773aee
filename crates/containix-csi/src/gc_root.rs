//! A GC root per published volume, so its closure survives between two pods using it and is
//! collectable once the last volume holding it is unpublished (nixkube #42 is this race).
//!
//! TODO(gc_roots): replace with `containix_core::gc_roots::GcRoots` (`hold(consumer, roots,
//! &mut DaemonClient)`, `release(consumer)`) once it is merged; the consumer names below carry
//! over. Until then each volume gets indirect roots of its own: symlinks
//! `<dir>/<consumer>/<n>-<name>` to its root store paths, registered with the daemon's
//! AddIndirectRoot, and released by deleting them.

use std::io;
use std::path::{Path, PathBuf};

use containix_core::daemon::{DaemonClient, DaemonError};
use containix_core::store_path::StorePath;
use thiserror::Error;

/// Why a GC root could not be held or released.
#[derive(Debug, Error)]
pub enum GcRootError {
    /// Creating or removing the root's links failed.
    #[error("GC root {path:?}: {source}")]
    Io {
        /// The link or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The daemon refused to register the root.
    #[error("registering GC root {path:?} with the Nix daemon: {source}")]
    Daemon {
        /// The link.
        path: PathBuf,
        /// The daemon's error.
        source: DaemonError,
    },
}

/// The volumes' GC roots, one directory of links per consumer under one directory.
#[derive(Debug, Clone)]
pub struct VolumeGcRoots {
    dir: PathBuf,
}

impl VolumeGcRoots {
    /// Roots kept under `dir` (created when the first root is held).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory holding `consumer`'s links.
    pub fn consumer_dir(&self, consumer: &str) -> PathBuf {
        self.dir.join(consumer)
    }

    /// Whether `consumer` holds roots.
    pub fn holds(&self, consumer: &str) -> bool {
        self.consumer_dir(consumer).exists()
    }

    /// Makes `roots` (and so their closure) GC roots for `consumer`, replacing what it held.
    /// `label` (the pod, when known) goes into the link names, which `nix-store --gc
    /// --print-roots` shows. On failure nothing is held.
    pub async fn hold(
        &self,
        consumer: &str,
        label: Option<&str>,
        roots: &[StorePath],
        daemon: &mut DaemonClient,
    ) -> Result<Vec<PathBuf>, GcRootError> {
        let result = self.hold_links(consumer, label, roots, daemon).await;
        if result.is_err() {
            let _ = self.release(consumer);
        }
        result
    }

    async fn hold_links(
        &self,
        consumer: &str,
        label: Option<&str>,
        roots: &[StorePath],
        daemon: &mut DaemonClient,
    ) -> Result<Vec<PathBuf>, GcRootError> {
        self.release(consumer)?;
        let dir = self.consumer_dir(consumer);
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let mut links = Vec::with_capacity(roots.len());
        for (index, root) in roots.iter().enumerate() {
            let name = match label {
                Some(label) => format!("{}-{index}-{}", sanitize(label), root.name()),
                None => format!("{index}-{}", root.name()),
            };
            let link = dir.join(name);
            std::os::unix::fs::symlink(root.as_path(), &link).map_err(io_error(&link))?;
            daemon
                .add_indirect_root(&link)
                .await
                .map_err(|source| GcRootError::Daemon {
                    path: link.clone(),
                    source,
                })?;
            links.push(link);
        }
        Ok(links)
    }

    /// Releases `consumer`'s roots; `Ok(false)` when it held none.
    pub fn release(&self, consumer: &str) -> Result<bool, GcRootError> {
        let dir = self.consumer_dir(consumer);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(io_error(&dir)(err)),
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> GcRootError + '_ {
    move |source| GcRootError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A label as a file name part: `shop/web-0` -> `shop_web-0`.
fn sanitize(label: &str) -> String {
    label
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
