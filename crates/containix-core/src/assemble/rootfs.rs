//! Populating a bundle's `rootfs/nix/store` with exactly a closure, for bundles that run
//! outside the node (the CLI's `assemble` and `run`).
//!
//! Three ways to put a member there, chosen by [`LinkMode`]:
//!
//! - [`LinkMode::Hardlink`]: directories are recreated, regular files hardlinked to the store's,
//!   symlinks recreated. No privilege and no mounts; needs the bundle on the store's filesystem
//!   and, with `fs.protected_hardlinks`, either root or ownership of the store files. The links
//!   share inodes with the store, so the container must see them read-only (the CLI binds
//!   `rootfs/nix/store` read-only onto itself in `config.json`).
//! - [`LinkMode::Copy`]: like hardlink, but regular files are copied; works across filesystems.
//! - [`LinkMode::Bind`]: each member is bind-mounted read-only (`nosuid`, `nodev`) from the
//!   store, as the node does; needs root (`CAP_SYS_ADMIN`), and [`depopulate`] must unmount it.
//!   A member that is a symlink is recreated as a symlink instead: the kernel would follow it on
//!   the host, where it could lead outside the closure; inside the container it resolves within
//!   the rootfs.
//!
//! In every mode `rootfs/nix/store` holds one entry per closure member and nothing else.
//! Directories keep the store's permissions (read-only), so [`depopulate`] restores write
//! permission before it removes anything. When [`populate`] fails it undoes what it did.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::store::closure::Closure;
use crate::store::store_path::STORE_DIR;

/// How closure members get into the rootfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkMode {
    /// Recreate directories and symlinks, hardlink regular files.
    Hardlink,
    /// Recreate directories and symlinks, copy regular files.
    Copy,
    /// Bind-mount each member read-only (needs root).
    Bind,
}

impl LinkMode {
    /// The mode's name as the CLI spells it: `hardlink`, `copy` or `bind`.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkMode::Hardlink => "hardlink",
            LinkMode::Copy => "copy",
            LinkMode::Bind => "bind",
        }
    }

    /// [`LinkMode::Hardlink`] when `dir` (or its closest existing ancestor) is on the same
    /// filesystem as the store, else [`LinkMode::Copy`].
    pub fn for_target(dir: &Path) -> LinkMode {
        let existing = dir.ancestors().find(|d| d.exists());
        match (existing.map(fs::metadata), fs::metadata(STORE_DIR)) {
            (Some(Ok(target)), Ok(store)) if target.dev() == store.dev() => LinkMode::Hardlink,
            _ => LinkMode::Copy,
        }
    }
}

/// How far [`populate`] got, for progress reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Members done.
    pub paths_done: usize,
    /// Members in the closure.
    pub paths_total: usize,
    /// NAR bytes of the members done (an estimate of the data placed).
    pub bytes_done: u64,
    /// NAR bytes of the whole closure.
    pub bytes_total: u64,
}

/// What [`populate`] made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Populated {
    /// Members placed.
    pub paths: usize,
    /// Regular files hardlinked or copied (zero in bind mode).
    pub files: u64,
    /// Bytes of the regular files hardlinked or copied.
    pub file_bytes: u64,
    /// Mount points created, in order (bind mode only).
    pub mounts: Vec<PathBuf>,
}

/// Why a rootfs could not be populated or removed.
#[derive(Debug, Error)]
pub enum RootfsError {
    /// A file system operation failed.
    #[error("{action} {path:?}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Hardlinking is not possible here; copy mode is.
    #[error(
        "cannot hardlink {path:?} into the rootfs: {source}; use copy mode (`--link copy`) when \
         the bundle is on another filesystem or the store files belong to another user"
    )]
    Hardlink {
        /// The store file.
        path: PathBuf,
        /// The underlying error (`EXDEV` or `EPERM`).
        source: io::Error,
    },
    /// Bind mounts need privilege.
    #[error(
        "bind-mounting {path:?} into the rootfs: {source}; bind mode needs root \
         (CAP_SYS_ADMIN), use `--link hardlink` or `--link copy` otherwise"
    )]
    Mount {
        /// The member.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A member holds something other than files, directories and symlinks.
    #[error("{path:?} is neither a file, a directory nor a symlink; the store holds nothing else")]
    UnsupportedFileType {
        /// The entry.
        path: PathBuf,
    },
    /// The rootfs already has a `nix/store`.
    #[error("{path:?} already exists; the rootfs must not have a nix/store yet")]
    AlreadyPopulated {
        /// The existing store directory.
        path: PathBuf,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RootfsError {
    let path = path.to_path_buf();
    move |source| RootfsError::Io {
        action,
        path,
        source,
    }
}

/// The store directory inside `rootfs`: `<rootfs>/nix/store`.
pub fn store_dir_in(rootfs: &Path) -> PathBuf {
    rootfs.join(STORE_DIR.trim_start_matches('/'))
}

/// Places every member of `closure` into `<rootfs>/nix/store` by `mode`, reporting progress after
/// each member. On failure, everything it made is undone (mounts unmounted, `nix/` removed when it
/// created it).
pub fn populate(
    rootfs: &Path,
    closure: &Closure,
    mode: LinkMode,
    progress: &mut dyn FnMut(Progress),
) -> Result<Populated, RootfsError> {
    populate_from(rootfs, Path::new(STORE_DIR), closure, mode, progress)
}

/// [`populate`], reading the members from `store_dir` instead of `/nix/store` (the same store
/// seen through another mount, such as a private clone of the mount that holds it).
pub fn populate_from(
    rootfs: &Path,
    store_dir: &Path,
    closure: &Closure,
    mode: LinkMode,
    progress: &mut dyn FnMut(Progress),
) -> Result<Populated, RootfsError> {
    let store = store_dir_in(rootfs);
    if fs::symlink_metadata(&store).is_ok() {
        return Err(RootfsError::AlreadyPopulated { path: store });
    }
    let nix_dir = store
        .parent()
        .expect("nix/store has a parent")
        .to_path_buf();
    let created_nix = fs::symlink_metadata(&nix_dir).is_err();
    let result = populate_store(&store, store_dir, closure, mode, progress);
    if result.is_err() {
        // The error that stopped the work matters more than a failed undo.
        let _ = unmount_under(&store);
        let _ = remove_tree(if created_nix { &nix_dir } else { &store });
    }
    result
}

fn populate_store(
    store: &Path,
    store_dir: &Path,
    closure: &Closure,
    mode: LinkMode,
    progress: &mut dyn FnMut(Progress),
) -> Result<Populated, RootfsError> {
    fs::create_dir_all(store).map_err(io_error("creating", store))?;
    let mut state = Progress {
        paths_total: closure.len(),
        bytes_total: closure.nar_size(),
        ..Progress::default()
    };
    let mut done = Populated::default();
    progress(state);
    for info in closure.infos() {
        let source = store_dir.join(info.path.base_name());
        let target = store.join(info.path.base_name());
        match mode {
            LinkMode::Hardlink | LinkMode::Copy => place_tree(&source, &target, mode, &mut done)?,
            LinkMode::Bind => bind_member(&source, &target, &mut done)?,
        }
        done.paths += 1;
        state.paths_done += 1;
        state.bytes_done += info.nar_size;
        progress(state);
    }
    // Like the store itself: nobody adds entries inside the container or the bundle.
    set_mode(store, 0o555)?;
    Ok(done)
}

/// Recreates `source` at `target`: directories and symlinks anew, regular files by `mode`.
fn place_tree(
    source: &Path,
    target: &Path,
    mode: LinkMode,
    done: &mut Populated,
) -> Result<(), RootfsError> {
    let meta = fs::symlink_metadata(source).map_err(io_error("reading", source))?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        let link = fs::read_link(source).map_err(io_error("reading", source))?;
        symlink(&link, target).map_err(io_error("creating", target))?;
    } else if kind.is_file() {
        match mode {
            LinkMode::Hardlink => {
                use nix::errno::Errno;
                let refused = [Errno::EXDEV as i32, Errno::EPERM as i32];
                fs::hard_link(source, target).map_err(|err| match err.raw_os_error() {
                    Some(code) if refused.contains(&code) => RootfsError::Hardlink {
                        path: source.into(),
                        source: err,
                    },
                    _ => io_error("hardlinking", target)(err),
                })?;
            }
            _ => {
                fs::copy(source, target).map_err(io_error("copying", source))?;
                set_mode(target, meta.mode() & 0o777)?;
            }
        }
        done.files += 1;
        done.file_bytes += meta.len();
    } else if kind.is_dir() {
        fs::create_dir(target).map_err(io_error("creating", target))?;
        let entries = fs::read_dir(source).map_err(io_error("reading", source))?;
        let mut names = Vec::new();
        for entry in entries {
            names.push(entry.map_err(io_error("reading", source))?.file_name());
        }
        names.sort();
        for name in names {
            place_tree(&source.join(&name), &target.join(&name), mode, done)?;
        }
        set_mode(target, meta.mode() & 0o777)?;
    } else {
        return Err(RootfsError::UnsupportedFileType {
            path: source.into(),
        });
    }
    Ok(())
}

/// Bind-mounts one member read-only at `target`, or recreates it when it is a symlink.
fn bind_member(source: &Path, target: &Path, done: &mut Populated) -> Result<(), RootfsError> {
    use nix::mount::{MsFlags, mount};

    let meta = fs::symlink_metadata(source).map_err(io_error("reading", source))?;
    if meta.file_type().is_symlink() {
        let link = fs::read_link(source).map_err(io_error("reading", source))?;
        return symlink(&link, target).map_err(io_error("creating", target));
    }
    if meta.is_dir() {
        fs::create_dir(target).map_err(io_error("creating", target))?;
    } else if meta.is_file() {
        fs::File::create(target).map_err(io_error("creating", target))?;
    } else {
        return Err(RootfsError::UnsupportedFileType {
            path: source.into(),
        });
    }
    let mount_error = |err: nix::Error| RootfsError::Mount {
        path: source.into(),
        source: io::Error::from(err),
    };
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(mount_error)?;
    done.mounts.push(target.into());
    // A bind mount takes read-only and the other flags only on a remount.
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(mount_error)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), RootfsError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_error("chmod", path))
}

/// Every mount point at or below `dir`, deepest first, read from `/proc/self/mountinfo`.
pub fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>, RootfsError> {
    let mountinfo = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(mountinfo).map_err(io_error("reading", mountinfo))?;
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|point| point.starts_with(&dir))
        .collect();
    found.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    found.dedup();
    Ok(found)
}

/// Mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
pub(crate) fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts every mount at or below `dir`, deepest first; a busy mount is detached lazily.
pub fn unmount_under(dir: &Path) -> Result<usize, RootfsError> {
    use nix::mount::{MntFlags, umount2};

    let points = mounts_under(dir)?;
    for point in &points {
        if umount2(point.as_path(), MntFlags::empty()).is_err() {
            umount2(point.as_path(), MntFlags::MNT_DETACH).map_err(|err| RootfsError::Io {
                action: "unmounting",
                path: point.clone(),
                source: err.into(),
            })?;
        }
    }
    Ok(points.len())
}

/// Unmounts what [`populate`] mounted and removes `<rootfs>/nix`. Safe to call again.
pub fn depopulate(rootfs: &Path) -> Result<(), RootfsError> {
    let store = store_dir_in(rootfs);
    unmount_under(&store)?;
    remove_tree(store.parent().expect("nix/store has a parent"))
}

/// Removes `path` and everything below it, first giving directories write permission (store
/// directories are read-only). Refuses to descend into mount points: call [`unmount_under`]
/// first. A missing `path` is not an error.
pub fn remove_tree(path: &Path) -> Result<(), RootfsError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(io_error("reading", path)(err)),
    };
    if !meta.is_dir() {
        return fs::remove_file(path).map_err(io_error("removing", path));
    }
    if let Some(parent) = path.parent()
        && let Ok(parent_meta) = fs::metadata(parent)
        && parent_meta.dev() != meta.dev()
    {
        return Err(RootfsError::Io {
            action: "removing",
            path: path.into(),
            source: io::Error::other("it is a mount point; unmount it first"),
        });
    }
    if meta.mode() & 0o700 != 0o700 {
        set_mode(path, (meta.mode() & 0o7777) | 0o700)?;
    }
    for entry in fs::read_dir(path).map_err(io_error("reading", path))? {
        let entry = entry.map_err(io_error("reading", path))?;
        remove_tree(&entry.path())?;
    }
    fs::remove_dir(path).map_err(io_error("removing", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(
            unescape_mountinfo(r"/tmp/back\134slash"),
            r"/tmp/back\slash"
        );
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/trailing\04"), r"/trailing\04");
    }

    #[test]
    fn remove_tree_handles_read_only_directories() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ro");
        fs::create_dir_all(dir.join("inner")).unwrap();
        fs::write(dir.join("inner/file"), "x").unwrap();
        set_mode(&dir.join("inner"), 0o555).unwrap();
        set_mode(&dir, 0o555).unwrap();
        remove_tree(&dir).unwrap();
        assert!(!dir.exists());
        remove_tree(&dir).unwrap();
    }

    #[test]
    fn populate_copies_a_tree_and_undoes_a_failure() {
        // Real store paths are needed for a closure; an empty closure still makes nix/store.
        let root = tempfile::tempdir().unwrap();
        let rootfs = root.path().join("rootfs");
        fs::create_dir(&rootfs).unwrap();
        let mut reports = Vec::new();
        let made = populate(&rootfs, &Closure::default(), LinkMode::Copy, &mut |p| {
            reports.push(p)
        })
        .unwrap();
        assert_eq!(made, Populated::default());
        assert_eq!(reports.len(), 1);
        assert!(store_dir_in(&rootfs).is_dir());
        let err = populate(&rootfs, &Closure::default(), LinkMode::Copy, &mut |_| {}).unwrap_err();
        assert!(matches!(err, RootfsError::AlreadyPopulated { .. }), "{err}");
        depopulate(&rootfs).unwrap();
        assert!(!rootfs.join("nix").exists());
        assert!(rootfs.exists());
    }
}
