//! Showing a closure under a target directory: `store/` holds exactly the closure's members
//! (same inodes and page cache as the store, never a copy), and `bin/` holds symlinks to the root
//! outputs' programs. Mounted at `/nix` in a container, the links resolve. `store/` is either the
//! node's store view of the closure, bound once ([`ClosureMountPlan::for_view`], what the CSI
//! plugin does), or one read-only bind per member ([`ClosureMountPlan::new`]).
//!
//! The target's own tree (the `store/` and `bin/` directories, the mount points, the links) is
//! a small read-only tmpfs, or for a writable volume an overlay whose lower layer holds that tree
//! and whose upper and work directories the caller provides. `store/` stays read-only in both
//! modes: store paths are immutable, a writable volume only accepts new entries.
//!
//! [`ClosureMountPlan`] is pure data computed from a [`StoreFacts`]; [`apply`] performs it through
//! a [`Mounter`] and undoes everything on failure; [`unmount_all`] undoes a plan's mounts and is
//! idempotent, so it also cleans up after a crash half way through.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::assemble::program::bin_dirs;
use crate::assemble::store_facts::{Entry, StoreFacts};
use crate::store::closure::Closure;
use crate::store::store_path::StorePath;

/// The directory under the target that holds the closure's members.
pub const STORE_DIR_NAME: &str = "store";
/// The directory under the target that holds links to the root outputs' programs.
pub const BIN_DIR_NAME: &str = "bin";
/// Options of the read-only volume's tmpfs (it only holds directories, empty files and links).
pub const TMPFS_OPTIONS: &str = "mode=0755,size=16m";

/// Why a closure could not be mounted.
#[derive(Debug, Error)]
pub enum ClosureMountError {
    /// A closure member does not exist in the local store.
    #[error("closure member {path} is missing from the Nix store")]
    MissingFromStore {
        /// The member.
        path: StorePath,
    },
    /// The store could not be read.
    #[error("reading {path:?} in the Nix store: {source}")]
    Store {
        /// The path being read.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A path cannot be given to overlayfs (its option syntax reserves `,`, `:` and `\`).
    #[error(
        "{path:?} cannot be an overlay layer: expected an absolute UTF-8 path without `,`, `:` or `\\`"
    )]
    UnsafeOverlayPath {
        /// The refused path.
        path: PathBuf,
    },
    /// Creating the volume's directories, mount points or links failed.
    #[error("preparing {path:?}: {source}")]
    Prepare {
        /// The path being created.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A mount failed.
    #[error("{mount}: {source}")]
    Mount {
        /// The mount that failed.
        mount: PlannedMount,
        /// The error the kernel gave.
        source: io::Error,
    },
    /// An unmount failed.
    #[error("unmounting {target:?}: {source}")]
    Unmount {
        /// The mount point.
        target: PathBuf,
        /// The error the kernel gave.
        source: io::Error,
    },
}

/// How the target's own tree is mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeMode {
    /// A tmpfs, made read-only once populated.
    ReadOnly,
    /// An overlay: `lower` gets the tree, writes land in `upper` (with `work` as overlayfs's
    /// scratch directory, on the same filesystem). All three are the caller's to remove.
    Writable(OverlayDirs),
}

/// The directories of a writable volume's overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayDirs {
    /// Holds the volume's tree; recreated by [`apply`].
    pub lower: PathBuf,
    /// Receives the writes; created empty by [`apply`].
    pub upper: PathBuf,
    /// Overlayfs's work directory; created empty by [`apply`].
    pub work: PathBuf,
}

/// One entry of the target's own tree, relative to its root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TreeEntry {
    /// A directory, also the mount point of a directory member.
    Directory(PathBuf),
    /// An empty file: the mount point of a member that is a regular file.
    MountPointFile(PathBuf),
    /// A symbolic link: a member that is itself a link, or a program in `bin/`.
    Symlink {
        /// Where the link is.
        path: PathBuf,
        /// What it points to, as stored.
        target: PathBuf,
    },
}

/// One mount of a plan, in the order [`apply`] performs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlannedMount {
    /// The read-only volume's tmpfs at the target.
    Tmpfs {
        /// The mount point.
        target: PathBuf,
    },
    /// The writable volume's overlay at the target.
    Overlay {
        /// The layers.
        dirs: OverlayDirs,
        /// The mount point.
        target: PathBuf,
    },
    /// A member's read-only bind.
    Bind {
        /// The member in `/nix/store`.
        source: PathBuf,
        /// The mount point under `<target>/store`.
        target: PathBuf,
    },
}

impl PlannedMount {
    /// The mount point.
    pub fn target(&self) -> &Path {
        match self {
            PlannedMount::Tmpfs { target }
            | PlannedMount::Overlay { target, .. }
            | PlannedMount::Bind { target, .. } => target,
        }
    }
}

impl std::fmt::Display for PlannedMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlannedMount::Tmpfs { target } => write!(f, "mounting a tmpfs at {target:?}"),
            PlannedMount::Overlay { dirs, target } => write!(
                f,
                "mounting an overlay of {:?} (upper {:?}) at {target:?}",
                dirs.lower, dirs.upper
            ),
            PlannedMount::Bind { source, target } => {
                write!(f, "bind-mounting {source:?} read-only at {target:?}")
            }
        }
    }
}

/// A program of a root output, linked from `bin/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinLink {
    /// The name under `bin/`.
    pub name: String,
    /// The program's path in the store, e.g. `/nix/store/...-app/bin/app`.
    pub program: PathBuf,
}

/// Everything that publishing a closure at a target does, as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosureMountPlan {
    /// The directory the closure is shown in.
    pub target: PathBuf,
    /// How the target's own tree is mounted.
    pub mode: VolumeMode,
    /// The target's own tree, parents before children.
    pub tree: Vec<TreeEntry>,
    /// The mounts, in order: the tree's mount, then one bind per member that is not a link.
    pub mounts: Vec<PlannedMount>,
}

impl ClosureMountPlan {
    /// Plans showing `closure` at `target`, with `bin/` holding `bin_links`.
    pub fn new(
        view: &dyn StoreFacts,
        closure: &Closure,
        bin_links: &[BinLink],
        target: &Path,
        mode: VolumeMode,
    ) -> Result<Self, ClosureMountError> {
        let store = PathBuf::from(STORE_DIR_NAME);
        let mut tree = vec![
            TreeEntry::Directory(store.clone()),
            TreeEntry::Directory(PathBuf::from(BIN_DIR_NAME)),
        ];
        let base = match &mode {
            VolumeMode::ReadOnly => PlannedMount::Tmpfs {
                target: target.to_owned(),
            },
            VolumeMode::Writable(dirs) => {
                for path in [&dirs.lower, &dirs.upper, &dirs.work] {
                    check_overlay_path(path)?;
                }
                PlannedMount::Overlay {
                    dirs: dirs.clone(),
                    target: target.to_owned(),
                }
            }
        };
        let mut mounts = vec![base];
        for member in closure.paths() {
            let entry = view
                .entry(member.as_path())
                .map_err(|source| ClosureMountError::Store {
                    path: member.as_path().to_owned(),
                    source,
                })?
                .ok_or_else(|| ClosureMountError::MissingFromStore {
                    path: member.clone(),
                })?;
            let relative = store.join(member.base_name());
            match entry {
                Entry::Symlink { target: link } => tree.push(TreeEntry::Symlink {
                    path: relative,
                    target: link,
                }),
                Entry::Directory | Entry::File { .. } => {
                    tree.push(if entry == Entry::Directory {
                        TreeEntry::Directory(relative.clone())
                    } else {
                        TreeEntry::MountPointFile(relative.clone())
                    });
                    mounts.push(PlannedMount::Bind {
                        source: member.as_path().to_owned(),
                        target: target.join(relative),
                    });
                }
            }
        }
        for link in bin_links {
            tree.push(TreeEntry::Symlink {
                path: Path::new(BIN_DIR_NAME).join(&link.name),
                target: link.program.clone(),
            });
        }
        Ok(Self {
            target: target.to_owned(),
            mode,
            tree,
            mounts,
        })
    }
}

impl ClosureMountPlan {
    /// Plans showing the closure of a store view at `target`: `store/` is one recursive,
    /// read-only bind of the view's store directory (`view_store`, which holds exactly the
    /// closure), whatever the closure's size, and `bin/` holds `bin_links`.
    pub fn for_view(
        view_store: &Path,
        bin_links: &[BinLink],
        target: &Path,
        mode: VolumeMode,
    ) -> Result<Self, ClosureMountError> {
        let mut plan = Self::new(&NoStore, &Closure::default(), bin_links, target, mode)?;
        plan.mounts.push(PlannedMount::Bind {
            source: view_store.to_owned(),
            target: target.join(STORE_DIR_NAME),
        });
        Ok(plan)
    }
}

/// The facts of an empty store, for planning a tree without members.
struct NoStore;

impl StoreFacts for NoStore {
    fn entry(&self, _: &Path) -> io::Result<Option<Entry>> {
        Ok(None)
    }
}

/// The programs in the `bin` directories of `roots` (those inside the closure), by name; the
/// first root that has a name wins, as on a `PATH`.
pub fn collect_bin_links(
    view: &dyn StoreFacts,
    closure: &Closure,
    roots: &[StorePath],
) -> Result<Vec<BinLink>, ClosureMountError> {
    let dirs = bin_dirs(view, closure, roots).map_err(|error| ClosureMountError::Store {
        path: PathBuf::from("bin"),
        source: io::Error::other(error.to_string()),
    })?;
    let mut links: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let entries = std::fs::read_dir(&dir).map_err(|source| ClosureMountError::Store {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| ClosureMountError::Store {
                path: dir.clone(),
                source,
            })?;
            // A name that is not UTF-8 cannot be a program a pod spec names; skip it.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            links.entry(name).or_insert_with(|| entry.path());
        }
    }
    Ok(links
        .into_iter()
        .map(|(name, program)| BinLink { name, program })
        .collect())
}

fn check_overlay_path(path: &Path) -> Result<(), ClosureMountError> {
    let ok = path.is_absolute()
        && path
            .to_str()
            .is_some_and(|text| !text.contains([',', ':', '\\']));
    if ok {
        Ok(())
    } else {
        Err(ClosureMountError::UnsafeOverlayPath {
            path: path.to_owned(),
        })
    }
}

/// The mount operations closure mounting needs.
pub trait Mounter: Send + Sync {
    /// Mounts a fresh, writable tmpfs ([`TMPFS_OPTIONS`]) at `target`.
    fn mount_tmpfs(&self, target: &Path) -> io::Result<()>;
    /// Makes the mount at `target` read-only (and nosuid, nodev).
    fn remount_read_only(&self, target: &Path) -> io::Result<()>;
    /// Mounts an overlay of `dirs` at `target` (nosuid, nodev).
    fn mount_overlay(&self, dirs: &OverlayDirs, target: &Path) -> io::Result<()>;
    /// Bind-mounts `source` at `target` with the mounts below it (a bind-tree store view is one
    /// mount per member), read-only, nosuid, nodev.
    fn bind_read_only(&self, source: &Path, target: &Path) -> io::Result<()>;
    /// Unmounts what is mounted at `target`; `Ok(false)` when nothing is (or `target` is gone).
    fn unmount(&self, target: &Path) -> io::Result<bool>;
}

/// Performs `plan`. On failure, everything already mounted is unmounted again before the error
/// is returned.
pub fn apply(plan: &ClosureMountPlan, mounter: &dyn Mounter) -> Result<(), ClosureMountError> {
    let result = apply_steps(plan, mounter);
    if result.is_err()
        && let Err(cleanup) = unmount_all(plan, mounter)
    {
        tracing::warn!(target = ?plan.target, %cleanup, "undoing a failed closure mount");
    }
    result
}

fn apply_steps(plan: &ClosureMountPlan, mounter: &dyn Mounter) -> Result<(), ClosureMountError> {
    let prepare = |path: &Path| {
        let path = path.to_owned();
        move |source| ClosureMountError::Prepare { path, source }
    };
    std::fs::create_dir_all(&plan.target).map_err(prepare(&plan.target))?;
    let mount_error = |mount: &PlannedMount| {
        let mount = mount.clone();
        move |source| ClosureMountError::Mount { mount, source }
    };
    let (base, binds) = plan
        .mounts
        .split_first()
        .expect("a plan always mounts the target's tree");
    match base {
        PlannedMount::Tmpfs { target } => {
            mounter.mount_tmpfs(target).map_err(mount_error(base))?;
            build_tree(target, &plan.tree)?;
            mounter
                .remount_read_only(target)
                .map_err(mount_error(base))?;
        }
        PlannedMount::Overlay { dirs, target } => {
            for dir in [&dirs.lower, &dirs.upper, &dirs.work] {
                remove_dir_if_present(dir).map_err(prepare(dir))?;
                std::fs::create_dir_all(dir).map_err(prepare(dir))?;
            }
            build_tree(&dirs.lower, &plan.tree)?;
            mounter
                .mount_overlay(dirs, target)
                .map_err(mount_error(base))?;
        }
        PlannedMount::Bind { .. } => unreachable!("the first mount is the target's tree"),
    }
    for bind in binds {
        let PlannedMount::Bind { source, target } = bind else {
            unreachable!("only the first mount is the target's tree");
        };
        mounter
            .bind_read_only(source, target)
            .map_err(mount_error(bind))?;
    }
    Ok(())
}

fn build_tree(root: &Path, tree: &[TreeEntry]) -> Result<(), ClosureMountError> {
    for entry in tree {
        let (path, result) = match entry {
            TreeEntry::Directory(path) => (path, std::fs::create_dir(root.join(path))),
            TreeEntry::MountPointFile(path) => {
                (path, std::fs::File::create(root.join(path)).map(drop))
            }
            TreeEntry::Symlink { path, target } => {
                (path, std::os::unix::fs::symlink(target, root.join(path)))
            }
        };
        result.map_err(|source| ClosureMountError::Prepare {
            path: root.join(path),
            source,
        })?;
    }
    Ok(())
}

fn remove_dir_if_present(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Unmounts every mount of `plan` that is mounted, members first, and removes the overlay's
/// directories. Idempotent: mounts that are not there are skipped. Returns how many mounts were
/// undone. The target directory itself is left for the caller.
pub fn unmount_all(
    plan: &ClosureMountPlan,
    mounter: &dyn Mounter,
) -> Result<usize, ClosureMountError> {
    let mut undone = 0;
    for mount in plan.mounts.iter().rev() {
        let target = mount.target();
        let unmounted = mounter
            .unmount(target)
            .map_err(|source| ClosureMountError::Unmount {
                target: target.to_owned(),
                source,
            })?;
        undone += usize::from(unmounted);
    }
    if let VolumeMode::Writable(dirs) = &plan.mode {
        for dir in [&dirs.lower, &dirs.upper, &dirs.work] {
            remove_dir_if_present(dir).map_err(|source| ClosureMountError::Prepare {
                path: dir.clone(),
                source,
            })?;
        }
    }
    Ok(undone)
}

/// The real mounts, through mount(2) and umount2(2).
#[derive(Debug, Clone, Copy, Default)]
pub struct SyscallMounter;

impl Mounter for SyscallMounter {
    fn mount_tmpfs(&self, target: &Path) -> io::Result<()> {
        use nix::mount::{MsFlags, mount};
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        mount(
            Some("containix"),
            target,
            Some("tmpfs"),
            flags,
            Some(TMPFS_OPTIONS),
        )?;
        Ok(())
    }

    fn remount_read_only(&self, target: &Path) -> io::Result<()> {
        use nix::mount::{MsFlags, mount};
        let flags =
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        mount(None::<&str>, target, None::<&str>, flags, None::<&str>)?;
        Ok(())
    }

    fn mount_overlay(&self, dirs: &OverlayDirs, target: &Path) -> io::Result<()> {
        use nix::mount::{MsFlags, mount};
        for dir in [&dirs.lower, &dirs.upper, &dirs.work] {
            check_overlay_path(dir).map_err(io::Error::other)?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            dirs.lower.display(),
            dirs.upper.display(),
            dirs.work.display()
        );
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            flags,
            Some(options.as_str()),
        )?;
        Ok(())
    }

    fn bind_read_only(&self, source: &Path, target: &Path) -> io::Result<()> {
        use nix::mount::{MsFlags, mount};
        mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )?;
        let flags = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV;
        if let Err(errno) = mount(None::<&str>, target, None::<&str>, flags, None::<&str>) {
            // Never leave a writable bind of a store path behind.
            let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
            return Err(errno.into());
        }
        Ok(())
    }

    fn unmount(&self, target: &Path) -> io::Result<bool> {
        use nix::errno::Errno;
        use nix::mount::{MntFlags, umount2};
        match umount2(target, MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => Ok(true),
            // Not a mount point, or no longer there: nothing to undo.
            Err(Errno::EINVAL | Errno::ENOENT | Errno::ENOTDIR) => Ok(false),
            // Still in use (a process has a file open): detach now, free when released.
            Err(Errno::EBUSY) => {
                umount2(target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW)?;
                Ok(true)
            }
            Err(errno) => Err(errno.into()),
        }
    }
}

/// A [`Mounter`] that records calls instead of mounting, for tests. It tracks what is "mounted"
/// so that [`Mounter::unmount`] answers like the kernel, and can be told to fail one call.
#[derive(Debug, Default)]
pub struct RecordingMounter {
    state: Mutex<RecordingState>,
}

#[derive(Debug, Default)]
struct RecordingState {
    calls: Vec<String>,
    mounted: Vec<PathBuf>,
    fail_on: Option<String>,
}

impl RecordingMounter {
    /// A mounter that succeeds at everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the first call whose record contains `needle` fail with `EIO`.
    pub fn fail_on(self, needle: &str) -> Self {
        self.state.lock().unwrap().fail_on = Some(needle.to_owned());
        self
    }

    /// Every call so far, as `op target [source]` lines.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// What is mounted now, in mount order.
    pub fn mounted(&self) -> Vec<PathBuf> {
        self.state.lock().unwrap().mounted.clone()
    }

    fn record(&self, call: String, mount: Option<&Path>) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        let fails = state.fail_on.as_deref().is_some_and(|n| call.contains(n));
        state.calls.push(call);
        if fails {
            state.fail_on = None;
            return Err(io::Error::from_raw_os_error(nix::libc::EIO));
        }
        if let Some(target) = mount {
            state.mounted.push(target.to_owned());
        }
        Ok(())
    }
}

impl Mounter for RecordingMounter {
    fn mount_tmpfs(&self, target: &Path) -> io::Result<()> {
        self.record(format!("tmpfs {}", target.display()), Some(target))
    }

    fn remount_read_only(&self, target: &Path) -> io::Result<()> {
        self.record(format!("remount-ro {}", target.display()), None)
    }

    fn mount_overlay(&self, dirs: &OverlayDirs, target: &Path) -> io::Result<()> {
        let call = format!("overlay {} {}", target.display(), dirs.lower.display());
        self.record(call, Some(target))
    }

    fn bind_read_only(&self, source: &Path, target: &Path) -> io::Result<()> {
        let call = format!("bind {} {}", target.display(), source.display());
        self.record(call, Some(target))
    }

    fn unmount(&self, target: &Path) -> io::Result<bool> {
        self.record(format!("unmount {}", target.display()), None)?;
        let mut state = self.state.lock().unwrap();
        match state.mounted.iter().rposition(|m| m == target) {
            Some(index) => {
                state.mounted.remove(index);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::store_facts::MemoryStore;
    use crate::store::path_info::PathInfo;

    fn path(name: &str) -> StorePath {
        let hash = match name {
            "app" => "a",
            "lib" => "b",
            "data" => "c",
            _ => "d",
        };
        StorePath::parse(&format!("/nix/store/{}-{name}", hash.repeat(32))).unwrap()
    }

    fn info(name: &str, refs: &[&str]) -> PathInfo {
        PathInfo::new(
            path(name),
            "0".repeat(64),
            100,
            refs.iter().map(|r| path(r)),
        )
    }

    /// app (dir with bin/app) -> lib (dir), data (a file), link (a link to data).
    fn fixture() -> (MemoryStore, Closure) {
        let view = MemoryStore::new()
            .file(path("app").as_path().join("bin/app"), true)
            .dir(path("lib").as_path())
            .file(path("data").as_path(), false)
            .symlink(path("link").as_path(), path("data").as_path());
        let closure = Closure::new(
            vec![path("app")],
            [
                info("app", &["lib", "link"]),
                info("lib", &[]),
                info("link", &["data"]),
                info("data", &[]),
            ],
        )
        .unwrap();
        (view, closure)
    }

    fn links() -> Vec<BinLink> {
        vec![BinLink {
            name: "app".into(),
            program: path("app").as_path().join("bin/app"),
        }]
    }

    #[test]
    fn plans_a_bind_per_member_and_copies_member_links() {
        let (view, closure) = fixture();
        let target = Path::new("/vol");
        let plan =
            ClosureMountPlan::new(&view, &closure, &links(), target, VolumeMode::ReadOnly).unwrap();
        let binds: Vec<_> = plan.mounts.iter().map(|m| m.target().to_owned()).collect();
        assert_eq!(
            binds,
            [
                PathBuf::from("/vol"),
                target.join("store").join(path("app").base_name()),
                target.join("store").join(path("lib").base_name()),
                target.join("store").join(path("data").base_name()),
            ]
        );
        assert!(plan.tree.contains(&TreeEntry::MountPointFile(
            Path::new("store").join(path("data").base_name())
        )));
        assert!(plan.tree.contains(&TreeEntry::Symlink {
            path: Path::new("store").join(path("link").base_name()),
            target: path("data").as_path().to_owned(),
        }));
        assert!(plan.tree.contains(&TreeEntry::Symlink {
            path: PathBuf::from("bin/app"),
            target: path("app").as_path().join("bin/app"),
        }));
    }

    #[test]
    fn missing_members_and_unsafe_overlay_paths_are_refused() {
        let (_, closure) = fixture();
        let err = ClosureMountPlan::new(
            &MemoryStore::new(),
            &closure,
            &[],
            Path::new("/vol"),
            VolumeMode::ReadOnly,
        )
        .unwrap_err();
        assert!(
            matches!(err, ClosureMountError::MissingFromStore { .. }),
            "{err}"
        );
        let (view, closure) = fixture();
        let dirs = OverlayDirs {
            lower: "/state/a,b".into(),
            upper: "/state/upper".into(),
            work: "/state/work".into(),
        };
        let err = ClosureMountPlan::new(
            &view,
            &closure,
            &[],
            Path::new("/vol"),
            VolumeMode::Writable(dirs),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("cannot be an overlay layer"),
            "{err}"
        );
    }

    #[test]
    fn apply_builds_the_tree_and_unmount_all_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("vol");
        let (view, closure) = fixture();
        let plan = ClosureMountPlan::new(&view, &closure, &links(), &target, VolumeMode::ReadOnly)
            .unwrap();
        let mounter = RecordingMounter::new();
        apply(&plan, &mounter).unwrap();
        assert_eq!(mounter.mounted().len(), 4);
        assert!(mounter.calls()[1].starts_with("remount-ro"));
        // The fake tmpfs is the directory itself, so the tree is visible there.
        assert!(target.join("store").join(path("lib").base_name()).is_dir());
        assert!(
            target
                .join("store")
                .join(path("data").base_name())
                .is_file()
        );
        assert_eq!(
            std::fs::read_link(target.join("bin/app")).unwrap(),
            path("app").as_path().join("bin/app")
        );
        assert_eq!(unmount_all(&plan, &mounter).unwrap(), 4);
        assert!(mounter.mounted().is_empty());
        assert_eq!(unmount_all(&plan, &mounter).unwrap(), 0);
        let unmounts: Vec<_> = mounter
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("unmount"))
            .collect();
        assert_eq!(unmounts[3], format!("unmount {}", target.display()));
    }

    #[test]
    fn a_failed_bind_leaves_nothing_mounted() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("vol");
        let (view, closure) = fixture();
        let dirs = OverlayDirs {
            lower: dir.path().join("lower"),
            upper: dir.path().join("upper"),
            work: dir.path().join("work"),
        };
        let plan = ClosureMountPlan::new(
            &view,
            &closure,
            &links(),
            &target,
            VolumeMode::Writable(dirs.clone()),
        )
        .unwrap();
        let mounter = RecordingMounter::new().fail_on(path("lib").base_name());
        let err = apply(&plan, &mounter).unwrap_err();
        assert!(err.to_string().contains("bind-mounting"), "{err}");
        assert!(mounter.mounted().is_empty(), "{:?}", mounter.mounted());
        assert!(!dirs.lower.exists() && !dirs.upper.exists() && !dirs.work.exists());
    }
}
