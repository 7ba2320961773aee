//! The node's store views: made on first use, shared, counted, and removed with their GC root
//! when the last user goes.
//!
//! Every change to a view happens under its node-wide lock (`<view-dir>/locks/<id>.lock`, see
//! [`LockDir`]), so shims and the CSI plugin on the same node agree. The user count is the
//! number of files in `users/`: adding or removing a user is one file operation, so a process
//! killed half way leaves a consistent count. A view without `ready.json` is unfinished: the
//! next process to take its lock (or [`StoreViews::sweep`]) removes it. A bind tree made in an
//! earlier boot has lost its mounts and is rebuilt on next use; users recorded in an earlier
//! boot no longer count.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::error::ViewError;
use super::mechanism::{ViewMechanism, first_choice};
use super::mount_clone::MountClone;
use super::record::{UserLease, ViewPaths, ViewRecord, boot_id, view_id, write_atomically};
use super::view_members::ViewMembers;
use crate::assemble::plan::env;
use crate::assemble::rootfs::{self, RootfsError};
use crate::assemble::store_facts::HostStore;
use crate::request::duration::millis;
use crate::request::view_setting::ViewSetting;
use crate::resolve::held_closure::HeldClosure;
use crate::resolve::resolved::Resolved;
use crate::resolve::single_flight::{KeyLock, LockDir, LockError};
use crate::state_file;
use crate::store::closure::Closure;
use crate::store::gc_roots::{GcRoots, validate_consumer};
use crate::store::path_info::PathInfo;
use crate::store::store_path::{STORE_DIR, StorePath};

/// How long a process waits for another to finish with a view (making a link farm of a large
/// closure takes seconds).
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(600);

/// The views of one node, under one directory.
#[derive(Debug, Clone)]
pub struct StoreViews {
    dir: PathBuf,
    gc_roots: GcRoots,
    setting: ViewSetting,
    locks: LockDir,
    lock_wait: Duration,
}

/// A view one consumer holds.
#[derive(Debug, Clone)]
pub struct View {
    /// The view's id (see [`view_id`]).
    pub id: String,
    /// How it is filled.
    pub mechanism: ViewMechanism,
    /// The directory to mount at `/nix/store`: it holds exactly the closure's members.
    pub store: PathBuf,
    /// The closure's CA bundles as the view recorded them (see [`ViewRecord::ca_bundles`]).
    pub ca_bundles: Option<Vec<PathBuf>>,
    /// How many store paths it shows.
    pub member_count: usize,
    /// Their NAR size, in bytes.
    pub nar_size: u64,
    paths: ViewPaths,
}

impl View {
    fn of(id: String, paths: ViewPaths, record: ViewRecord) -> Self {
        Self {
            id,
            mechanism: record.mechanism,
            store: paths.store(),
            ca_bundles: record.ca_bundles,
            member_count: record.members,
            nar_size: record.nar_size,
            paths,
        }
    }

    /// Its members, answered from its directory: what a container's plan asks, at the cost of
    /// one `lstat` per question.
    pub fn members(&self) -> ViewMembers {
        ViewMembers::new(self.store.clone())
    }

    /// The closure the view shows, with `roots` in the caller's order, read from the path infos
    /// it recorded (`closure.json`; tens of milliseconds for thousands of members).
    pub fn closure(&self, roots: Vec<StorePath>) -> Result<Closure, ViewError> {
        let infos = self.paths.read_closure()?;
        Closure::new(roots, infos).map_err(|source| ViewError::Corrupt {
            path: self.paths.closure(),
            message: source.to_string(),
        })
    }
}

/// One view as `containix status` and the tests list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewSummary {
    /// The view's id.
    pub id: String,
    /// Its record; `None` while (or if) it is unfinished.
    pub record: Option<ViewRecord>,
    /// Its users whose lease holds, by name.
    pub users: Vec<ViewUser>,
}

/// A user of a view whose lease holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewUser {
    /// The container, volume or prefetch.
    pub name: String,
    /// Its lease.
    pub lease: UserLease,
}

impl PartialEq<str> for ViewUser {
    fn eq(&self, name: &str) -> bool {
        self.name == name
    }
}

impl PartialEq<&str> for ViewUser {
    fn eq(&self, name: &&str) -> bool {
        self.name == *name
    }
}

/// What [`StoreViews::sweep`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Views removed: unfinished, or without a user in this boot.
    pub removed: Vec<String>,
    /// Views another process held, left alone.
    pub busy: Vec<String>,
}

impl StoreViews {
    /// The views under `dir`, rooted through `gc_roots`, made as `setting` says.
    pub fn new(dir: impl Into<PathBuf>, gc_roots: GcRoots, setting: ViewSetting) -> Self {
        let dir = dir.into();
        Self {
            locks: LockDir::new(&dir),
            dir,
            gc_roots,
            setting,
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }

    /// Waits at most `wait` for another process's hold on a view.
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// The directory holding the views.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The setting views are made under.
    pub fn setting(&self) -> ViewSetting {
        self.setting
    }

    /// The GC root consumer that keeps view `id`'s closure alive.
    pub fn gc_consumer(id: &str) -> String {
        format!("view-{id}")
    }

    fn paths(&self, id: &str) -> ViewPaths {
        ViewPaths::new(self.dir.join(id))
    }

    /// Takes the view of `roots` for `consumer` if it is already made and its GC root held:
    /// no daemon, no evaluation. `None` means the caller must resolve and [`acquire`] it.
    ///
    /// [`acquire`]: Self::acquire
    pub async fn acquire_existing(
        &self,
        roots: &[StorePath],
        consumer: &str,
    ) -> Result<Option<View>, ViewError> {
        check_consumer(consumer)?;
        let id = view_id(roots);
        let paths = self.paths(&id);
        if !paths.ready().exists() {
            return Ok(None);
        }
        let _lock = self.lock(&id).await?;
        let Some(record) = paths.read_record()? else {
            return Ok(None);
        };
        if !record.is_live(&boot_id())
            || !mounts_visible(&paths, &record)
            || !self.roots_held(&id, &record.roots)
        {
            return Ok(None);
        }
        add_user(&paths, consumer, &UserLease::this_boot())?;
        Ok(Some(View::of(id, paths, record)))
    }

    /// Takes the view of `resolution`'s closure for `consumer`, making it first if needed; the
    /// closure is rooted for the view over the resolution's daemon connection, which then
    /// closes. On failure, nothing of a view this call started is left.
    pub async fn acquire(
        &self,
        resolution: impl HeldClosure,
        consumer: &str,
    ) -> Result<(View, Resolved), ViewError> {
        self.acquire_for(resolution, consumer, UserLease::this_boot())
            .await
    }

    /// [`acquire`](Self::acquire), with `consumer` counting until `lease` ends instead of for
    /// this boot (a prefetch keeps a view for a set time, across reboots).
    pub async fn acquire_for(
        &self,
        resolution: impl HeldClosure,
        consumer: &str,
        lease: UserLease,
    ) -> Result<(View, Resolved), ViewError> {
        check_consumer(consumer)?;
        let id = view_id(&resolution.resolved().roots);
        let paths = self.paths(&id);
        let lock = self.lock(&id).await?;
        if let Some(record) = paths.read_record()?
            && record.is_live(&boot_id())
            && mounts_visible(&paths, &record)
            && self.roots_held(&id, &record.roots)
        {
            add_user(&paths, consumer, &lease)?;
            return Ok((View::of(id, paths, record), resolution.release()));
        }
        // Unfinished, from an earlier boot, or unrooted: start again from nothing.
        remove_files(&id, &paths)?;
        let result = self.make(&id, &paths, resolution, consumer, &lease).await;
        if result.is_err() {
            // The error that stopped the work matters more than a failed undo.
            let _ = remove_files(&id, &paths);
            let _ = self.gc_roots.release(&Self::gc_consumer(&id));
            let _ = lock.remove();
        }
        result
    }

    async fn make(
        &self,
        id: &str,
        paths: &ViewPaths,
        resolution: impl HeldClosure,
        consumer: &str,
        lease: &UserLease,
    ) -> Result<(View, Resolved), ViewError> {
        let started = std::time::Instant::now();
        let resolved = resolution
            .hold(&self.gc_roots, &Self::gc_consumer(id))
            .await
            .map_err(|source| ViewError::GcRoot {
                id: id.to_owned(),
                source: Box::new(source),
            })?;
        let (first, may_fall_back) = first_choice(self.setting);
        let closure = resolved.closure.clone();
        let root = paths.root();
        let held = started.elapsed();
        let (mechanism, ca_bundles, timings) = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let mechanism = fill(&root, &closure, first, may_fall_back)?;
            let filled = started.elapsed();
            if mechanism == ViewMechanism::LinkFarm {
                sync_filesystem_of(&root)?;
            }
            let synced = started.elapsed();
            let ca_bundles =
                env::ca_bundles(&HostStore, &closure).map_err(|source| RootfsError::Io {
                    action: "looking for CA bundles in",
                    path: STORE_DIR.into(),
                    source,
                })?;
            let searched = started.elapsed();
            Ok::<_, RootfsError>((
                mechanism,
                ca_bundles,
                [filled, synced - filled, searched - synced],
            ))
        })
        .await
        .expect("filling a view does not panic")
        .map_err(|source| ViewError::Assemble {
            id: id.to_owned(),
            source: Box::new(source),
        })?;
        let infos: Vec<PathInfo> = resolved.closure.infos().cloned().collect();
        let json = serde_json::to_vec(&infos).expect("path infos serialise");
        write_atomically(&paths.closure(), &json)?;
        let mut roots = resolved.roots.clone();
        roots.sort();
        roots.dedup();
        let record = ViewRecord {
            mechanism,
            boot_id: boot_id(),
            roots,
            members: resolved.closure.len(),
            nar_size: resolved.closure.nar_size(),
            created: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            ca_bundles: Some(ca_bundles),
        };
        let json = serde_json::to_vec_pretty(&record).expect("a record serialises");
        write_atomically(&paths.ready(), &json)?;
        add_user(paths, consumer, lease)?;
        tracing::info!(
            view = id,
            mechanism = %mechanism,
            members = record.members,
            root_ms = millis(held),
            fill_ms = millis(timings[0]),
            sync_ms = millis(timings[1]),
            ca_ms = millis(timings[2]),
            total_ms = millis(started.elapsed()),
            "store view made"
        );
        Ok((View::of(id.to_owned(), paths.clone(), record), resolved))
    }

    /// Removes `consumer` from every view it uses; a view left without users is removed with
    /// its GC root. Returns how many views `consumer` used. Releasing a consumer that uses
    /// nothing is not an error.
    pub async fn release(&self, consumer: &str) -> Result<usize, ViewError> {
        check_consumer(consumer)?;
        let mut released = 0;
        for id in self.ids()? {
            let paths = self.paths(&id);
            if !paths.users().join(consumer).exists() {
                continue;
            }
            let lock = self.lock(&id).await?;
            remove_file(&paths.users().join(consumer))?;
            released += 1;
            if live_users(&paths)?.is_empty() {
                self.remove(&id, &paths, lock)?;
            }
        }
        Ok(released)
    }

    /// Removes every view no process is working on that is unfinished or has no user in this
    /// boot: what a process killed while making or releasing a view, or a reboot, left behind.
    pub async fn sweep(&self) -> Result<SweepReport, ViewError> {
        let mut report = SweepReport::default();
        for id in self.ids()? {
            let lock = match self.locks.lock(&id, Instant::now()).await {
                Ok(lock) => lock,
                Err(LockError::Expired) => {
                    report.busy.push(id);
                    continue;
                }
                Err(LockError::Io { path, source }) => {
                    return Err(ViewError::Io {
                        action: "locking",
                        path,
                        source,
                    });
                }
            };
            let paths = self.paths(&id);
            if paths.read_record()?.is_none() || live_users(&paths)?.is_empty() {
                self.remove(&id, &paths, lock)?;
                report.removed.push(id);
            }
        }
        Ok(report)
    }

    /// Every view on disk, with its record and users.
    pub fn list(&self) -> Result<Vec<ViewSummary>, ViewError> {
        self.ids()?
            .into_iter()
            .map(|id| {
                let paths = self.paths(&id);
                Ok(ViewSummary {
                    record: paths.read_record()?,
                    users: live_users(&paths)?,
                    id,
                })
            })
            .collect()
    }

    /// Removes a view, its GC root and, last, its lock file (see [`KeyLock::remove`]).
    fn remove(&self, id: &str, paths: &ViewPaths, lock: KeyLock) -> Result<(), ViewError> {
        remove_files(id, paths)?;
        self.gc_roots
            .release(&Self::gc_consumer(id))
            .map_err(|source| ViewError::GcRoot {
                id: id.to_owned(),
                source: Box::new(source),
            })?;
        let lock_path = lock.path().to_owned();
        lock.remove().map_err(|source| ViewError::Io {
            action: "removing",
            path: lock_path,
            source,
        })?;
        tracing::info!(view = id, "store view removed");
        Ok(())
    }

    /// Whether the view's GC root links are all there, pointing at `roots`.
    fn roots_held(&self, id: &str, roots: &[StorePath]) -> bool {
        let Ok(dir) = self.gc_roots.consumer_dir(&Self::gc_consumer(id)) else {
            return false;
        };
        roots.iter().all(|root| {
            fs::read_link(dir.join(root.base_name())).is_ok_and(|target| target == root.as_path())
        })
    }

    /// The ids of the views on disk (directories named by 32 hex digits).
    fn ids(&self) -> Result<Vec<String>, ViewError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ViewError::Io {
                    action: "listing",
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn lock(&self, id: &str) -> Result<KeyLock, ViewError> {
        let started = Instant::now();
        self.locks
            .lock(id, started + self.lock_wait)
            .await
            .map_err(|err| match err {
                LockError::Expired => ViewError::Locked {
                    id: id.to_owned(),
                    waited_secs: started.elapsed().as_secs(),
                },
                LockError::Io { path, source } => ViewError::Io {
                    action: "locking",
                    path,
                    source,
                },
            })
    }
}

/// Fills `root` with `closure` by `first`, or, when that cannot hard-link and `may_fall_back`,
/// by bind mounts. Returns the mechanism used.
fn fill(
    root: &Path,
    closure: &Closure,
    first: ViewMechanism,
    may_fall_back: bool,
) -> Result<ViewMechanism, RootfsError> {
    fs::create_dir_all(root).map_err(|source| RootfsError::Io {
        action: "creating",
        path: root.to_owned(),
        source,
    })?;
    if first == ViewMechanism::LinkFarm {
        match link_farm(root, closure) {
            Ok(()) => return Ok(ViewMechanism::LinkFarm),
            Err(err) if may_fall_back => {
                tracing::info!(%err, "cannot hard-link store files into the view; using bind mounts");
            }
            Err(err) => return Err(err),
        }
    }
    let bind_tree = ViewMechanism::BindTree;
    rootfs::populate(root, closure, bind_tree.link_mode(), &mut |_| {})?;
    Ok(bind_tree)
}

/// Flushes the filesystem holding `root` to disk: a link farm outlives the boot, so its
/// directories and links must be on disk before `ready.json` says the view is complete (a
/// power loss must not leave a ready view with members missing). It also keeps the farm's
/// writeback out of the next pods' starts, which would otherwise wait behind it in the
/// filesystem's journal.
fn sync_filesystem_of(root: &Path) -> Result<(), RootfsError> {
    let io_error = |source| RootfsError::Io {
        action: "syncing the filesystem of",
        path: root.to_owned(),
        source,
    };
    let dir = fs::File::open(root).map_err(io_error)?;
    nix::unistd::syncfs(&dir).map_err(|errno| io_error(errno.into()))
}

/// Hard-links `closure` into `root`: directly, or, where `/nix/store` is a bind mount that
/// `link()` cannot cross, through a private clone of the mount holding `root`, in which the
/// store directory is the filesystem's own ([`MountClone`]).
fn link_farm(root: &Path, closure: &Closure) -> Result<(), RootfsError> {
    let mode = ViewMechanism::LinkFarm.link_mode();
    let direct = match rootfs::populate(root, closure, mode, &mut |_| {}) {
        Ok(_) => return Ok(()),
        Err(err @ RootfsError::Hardlink { .. }) => err,
        Err(err) => return Err(err),
    };
    let Ok(clone) = MountClone::containing(root) else {
        return Err(direct);
    };
    let (Some(store), Some(inside)) = (clone.path_of(Path::new(STORE_DIR)), clone.path_of(root))
    else {
        return Err(direct);
    };
    rootfs::populate_from(&inside, &store, closure, mode, &mut |_| {}).map(drop)
}

/// Whether a bind tree's mounts are there in this process's mount namespace: made in another
/// (a container without shared propagation), or lost, the view would show empty directories.
/// A root that is a directory or a file must be the store's own inode in the view.
fn mounts_visible(paths: &ViewPaths, record: &ViewRecord) -> bool {
    use std::os::unix::fs::MetadataExt;
    if record.mechanism != ViewMechanism::BindTree {
        return true;
    }
    record.roots.iter().all(|root| {
        let Ok(store) = fs::symlink_metadata(root.as_path()) else {
            return false;
        };
        if store.file_type().is_symlink() {
            return true;
        }
        fs::symlink_metadata(paths.store().join(root.base_name()))
            .is_ok_and(|view| view.dev() == store.dev() && view.ino() == store.ino())
    })
}

fn check_consumer(consumer: &str) -> Result<(), ViewError> {
    validate_consumer(consumer).map_err(|source| ViewError::Consumer {
        consumer: consumer.to_owned(),
        source: Box::new(source),
    })
}

fn add_user(paths: &ViewPaths, consumer: &str, lease: &UserLease) -> Result<(), ViewError> {
    let users = paths.users();
    fs::create_dir_all(&users).map_err(|source| ViewError::Io {
        action: "creating",
        path: users.clone(),
        source,
    })?;
    let path = users.join(consumer);
    let bytes = lease.render();
    // A user for this boot needs no disk flush: a reboot ends it anyway. A lease that outlives
    // the boot (a prefetch) must survive a power loss.
    let written = match lease {
        UserLease::Boot(_) => state_file::write_atomically_for_this_boot(&path, bytes.as_bytes()),
        UserLease::Until(_) => state_file::write_atomically(&path, bytes.as_bytes()),
    };
    written.map_err(|source| ViewError::Io {
        action: "writing",
        path,
        source,
    })
}

/// The users whose lease holds; the others (from an earlier boot, or expired) are removed on
/// the way.
fn live_users(paths: &ViewPaths) -> Result<Vec<ViewUser>, ViewError> {
    let dir = paths.users();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ViewError::Io {
                action: "listing",
                path: dir,
                source,
            });
        }
    };
    let boot = boot_id();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut users = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let lease = UserLease::parse(&fs::read_to_string(entry.path()).unwrap_or_default());
        if lease.is_live(&boot, now) {
            users.push(ViewUser { name, lease });
        } else {
            remove_file(&entry.path())?;
        }
    }
    users.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(users)
}

fn remove_file(path: &Path) -> Result<(), ViewError> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(ViewError::Io {
            action: "removing",
            path: path.to_owned(),
            source: err,
        }),
        _ => Ok(()),
    }
}

/// Unmounts and removes a view's directory (not its GC root).
fn remove_files(id: &str, paths: &ViewPaths) -> Result<(), ViewError> {
    let assemble = |source| ViewError::Assemble {
        id: id.to_owned(),
        source: Box::new(source),
    };
    if paths.dir().exists() {
        rootfs::unmount_under(paths.dir()).map_err(assemble)?;
    }
    rootfs::remove_tree(paths.dir()).map_err(assemble)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> StorePath {
        StorePath::parse(&format!("/nix/store/{}-app", "a".repeat(32))).unwrap()
    }

    /// A view laid out on disk as [`StoreViews::acquire`] leaves it, without a daemon.
    fn fake_view(views: &StoreViews, mechanism: ViewMechanism, boot: &str, users: &[(&str, &str)]) {
        let id = view_id(&[root()]);
        let paths = views.paths(&id);
        fs::create_dir_all(paths.store()).unwrap();
        let infos = vec![PathInfo::new(root(), "sha256:0", 1, [])];
        write_atomically(&paths.closure(), &serde_json::to_vec(&infos).unwrap()).unwrap();
        let record = ViewRecord {
            mechanism,
            boot_id: boot.into(),
            roots: vec![root()],
            members: 1,
            nar_size: 1,
            created: 0,
            ca_bundles: None,
        };
        write_atomically(&paths.ready(), &serde_json::to_vec(&record).unwrap()).unwrap();
        fs::create_dir_all(paths.users()).unwrap();
        for (user, boot) in users {
            fs::write(paths.users().join(user), boot).unwrap();
        }
        let gc = views
            .gc_roots
            .consumer_dir(&StoreViews::gc_consumer(&id))
            .unwrap();
        fs::create_dir_all(&gc).unwrap();
        std::os::unix::fs::symlink(root().as_path(), gc.join(root().base_name())).unwrap();
    }

    fn registry(dir: &Path) -> StoreViews {
        StoreViews::new(dir.join("views"), GcRoots::new(dir), ViewSetting::Auto)
            .with_lock_wait(Duration::from_secs(5))
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                out.extend(files(&entry.path()));
            } else {
                out.push(entry.path());
            }
        }
        out
    }

    #[tokio::test]
    async fn a_made_view_is_reused_without_the_daemon_and_goes_with_its_last_user() {
        let dir = tempfile::tempdir().unwrap();
        let views = registry(dir.path());
        fake_view(
            &views,
            ViewMechanism::LinkFarm,
            &boot_id(),
            &[("ctr-1", &boot_id())],
        );
        let view = views
            .acquire_existing(&[root()], "ctr-2")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.closure(vec![root()]).unwrap().len(), 1);
        assert_eq!(views.list().unwrap()[0].users, ["ctr-1", "ctr-2"]);

        assert_eq!(views.release("ctr-1").await.unwrap(), 1);
        assert_eq!(views.list().unwrap().len(), 1, "ctr-2 still uses it");
        assert_eq!(views.release("ctr-2").await.unwrap(), 1);
        assert_eq!(views.release("ctr-2").await.unwrap(), 0);
        assert!(views.list().unwrap().is_empty());
        assert_eq!(
            files(dir.path()),
            Vec::<PathBuf>::new(),
            "no view, root or lock left"
        );
    }

    #[tokio::test]
    async fn a_view_that_cannot_serve_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let views = registry(dir.path());
        assert!(
            views
                .acquire_existing(&[root()], "c")
                .await
                .unwrap()
                .is_none()
        );
        // A bind tree from an earlier boot has lost its mounts.
        fake_view(&views, ViewMechanism::BindTree, "an-earlier-boot", &[]);
        assert!(
            views
                .acquire_existing(&[root()], "c")
                .await
                .unwrap()
                .is_none()
        );
        // A view whose GC root is gone may have lost members to the collector.
        let id = view_id(&[root()]);
        views
            .gc_roots
            .release(&StoreViews::gc_consumer(&id))
            .unwrap();
        fs::remove_dir_all(views.paths(&id).dir()).unwrap();
        fake_view(&views, ViewMechanism::LinkFarm, &boot_id(), &[]);
        views
            .gc_roots
            .release(&StoreViews::gc_consumer(&id))
            .unwrap();
        assert!(
            views
                .acquire_existing(&[root()], "c")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            views.list().unwrap()[0].users.is_empty(),
            "no user is added to a view that is not reused"
        );
        assert!(matches!(
            views.acquire_existing(&[root()], "../escape").await,
            Err(ViewError::Consumer { .. })
        ));
    }

    #[tokio::test]
    async fn a_sweep_removes_unfinished_views_and_views_of_an_earlier_boot() {
        let dir = tempfile::tempdir().unwrap();
        let views = registry(dir.path());
        // Users recorded in an earlier boot are gone: the view goes.
        fake_view(
            &views,
            ViewMechanism::LinkFarm,
            &boot_id(),
            &[("old", "an-earlier-boot")],
        );
        // A process killed while making a view left a directory without `ready.json`.
        let unfinished = views.dir().join("b".repeat(32));
        fs::create_dir_all(unfinished.join("root/nix/store/x")).unwrap();
        let report = views.sweep().await.unwrap();
        assert_eq!(report.removed.len(), 2, "{report:?}");
        assert!(views.list().unwrap().is_empty());
        assert_eq!(files(dir.path()), Vec::<PathBuf>::new());

        // A view in use stays.
        fake_view(
            &views,
            ViewMechanism::LinkFarm,
            &boot_id(),
            &[("live", &boot_id())],
        );
        assert_eq!(views.sweep().await.unwrap(), SweepReport::default());
        assert_eq!(views.list().unwrap()[0].users, ["live"]);
    }

    #[tokio::test]
    async fn a_view_another_process_holds_is_left_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let views = registry(dir.path());
        fake_view(&views, ViewMechanism::LinkFarm, &boot_id(), &[]);
        let id = view_id(&[root()]);
        let held = views.lock(&id).await.unwrap();
        let report = views.sweep().await.unwrap();
        assert_eq!(report.busy, std::slice::from_ref(&id));
        drop(held);
        assert_eq!(views.sweep().await.unwrap().removed, [id]);
    }
}
