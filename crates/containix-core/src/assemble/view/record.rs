//! What a store view keeps on disk, under `<view-dir>/<id>/`:
//!
//! - `root/nix/store/`: the view itself, one entry per closure member;
//! - `closure.json`: the members' path infos, so a repeat start plans without the daemon;
//! - `ready.json` ([`ViewRecord`]): written last, by rename: a view without it is unfinished;
//! - `users/<consumer>`: one file per container or volume using the view, holding the boot id
//!   it was added in (a user from an earlier boot is gone).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::ViewError;
use super::mechanism::ViewMechanism;
use crate::state_file;
use crate::store::path_info::PathInfo;
use crate::store::store_path::StorePath;

/// The file that marks a view complete.
pub const READY_FILE: &str = "ready.json";
/// The members' path infos.
pub const CLOSURE_FILE: &str = "closure.json";
/// The directory populated with the members (`root/nix/store`).
pub const ROOT_DIR: &str = "root";
/// One file per user.
pub const USERS_DIR: &str = "users";
/// Where the kernel tells the current boot's id.
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// A finished view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewRecord {
    /// How it is filled.
    pub mechanism: ViewMechanism,
    /// The boot it was made in; a bind tree from an earlier boot has lost its mounts.
    pub boot_id: String,
    /// The closure's roots, sorted.
    pub roots: Vec<StorePath>,
    /// How many store paths it shows.
    pub members: usize,
    /// Their NAR size, in bytes.
    pub nar_size: u64,
    /// When it was finished, in seconds since the epoch.
    pub created: u64,
    /// The closure's CA bundles ([`crate::assemble::plan::env::ca_bundles`]), found once when
    /// the view was made so that a container's plan does not search every member for one.
    /// Absent in views made by containix before it recorded them: plans then search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundles: Option<Vec<PathBuf>>,
}

impl ViewRecord {
    /// Whether the view still shows its members in the boot `boot_id`: a link farm lives on
    /// disk, a bind tree only as long as its mounts.
    pub fn is_live(&self, boot_id: &str) -> bool {
        self.mechanism == ViewMechanism::LinkFarm || self.boot_id == boot_id
    }
}

/// How long a user of a view counts: a container or volume for as long as the node has not
/// rebooted (it cannot outlive the boot), a prefetch until a point in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserLease {
    /// Until the node reboots: the boot id it was taken in.
    Boot(String),
    /// Until this many seconds since the epoch, across reboots.
    Until(u64),
}

impl UserLease {
    /// A lease for the current boot.
    pub fn this_boot() -> Self {
        UserLease::Boot(boot_id())
    }

    /// Reads a user file's contents (a boot id, or `until=<seconds>`).
    pub fn parse(text: &str) -> Self {
        let text = text.trim();
        match text.strip_prefix("until=").map(str::parse) {
            Some(Ok(seconds)) => UserLease::Until(seconds),
            _ => UserLease::Boot(text.to_owned()),
        }
    }

    /// The user file's contents.
    pub fn render(&self) -> String {
        match self {
            UserLease::Boot(boot) => boot.clone(),
            UserLease::Until(seconds) => format!("until={seconds}"),
        }
    }

    /// Whether the lease still holds in boot `boot` at `now` (seconds since the epoch).
    pub fn is_live(&self, boot: &str, now: u64) -> bool {
        match self {
            UserLease::Boot(taken_in) => taken_in == boot,
            UserLease::Until(until) => now < *until,
        }
    }
}

/// The id of the view of the closure of `roots`: a closure is determined by its roots (store
/// paths never change their references), so their sorted set names it.
pub fn view_id(roots: &[StorePath]) -> String {
    let mut sorted: Vec<&str> = roots.iter().map(StorePath::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut hash = Sha256::new();
    hash.update(b"containix-view-v1\0");
    for root in sorted {
        hash.update(root.as_bytes());
        hash.update(b"\0");
    }
    let digest = hash.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The current boot's id, or `unknown` where the kernel does not say.
pub fn boot_id() -> String {
    fs::read_to_string(BOOT_ID_PATH)
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// When the current boot began, from `btime` in `/proc/stat`; `None` where the kernel does
/// not say.
pub fn boot_started() -> Option<std::time::SystemTime> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let seconds = stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds))
}

/// The paths of one view's files.
#[derive(Debug, Clone)]
pub struct ViewPaths {
    dir: PathBuf,
}

impl ViewPaths {
    /// The view in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The view's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory populated like a rootfs (`root/nix/store` inside).
    pub fn root(&self) -> PathBuf {
        self.dir.join(ROOT_DIR)
    }

    /// The store directory a container mounts at `/nix/store`.
    pub fn store(&self) -> PathBuf {
        crate::assemble::rootfs::store_dir_in(&self.root())
    }

    /// The ready marker.
    pub fn ready(&self) -> PathBuf {
        self.dir.join(READY_FILE)
    }

    /// The members' path infos.
    pub fn closure(&self) -> PathBuf {
        self.dir.join(CLOSURE_FILE)
    }

    /// The users' directory.
    pub fn users(&self) -> PathBuf {
        self.dir.join(USERS_DIR)
    }

    /// Reads the ready marker; `None` when the view is unfinished.
    pub fn read_record(&self) -> Result<Option<ViewRecord>, ViewError> {
        read_json(&self.ready())
    }

    /// Reads the members' path infos.
    pub fn read_closure(&self) -> Result<Vec<PathInfo>, ViewError> {
        let path = self.closure();
        read_json(&path)?.ok_or(ViewError::Corrupt {
            path,
            message: "missing; the view is incomplete".into(),
        })
    }
}

/// Reads a JSON state file of a view; `None` when it does not exist.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, ViewError> {
    state_file::read_json(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::InvalidData => ViewError::Corrupt {
            path: path.to_owned(),
            message: source.to_string(),
        },
        _ => ViewError::Io {
            action: "reading",
            path: path.to_owned(),
            source,
        },
    })
}

/// Writes a state file of a view atomically ([`state_file::write_atomically`]).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ViewError> {
    state_file::write_atomically(path, bytes).map_err(|source| ViewError::Io {
        action: "writing",
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(c: char, name: &str) -> StorePath {
        StorePath::parse(&format!("/nix/store/{}-{name}", c.to_string().repeat(32))).unwrap()
    }

    #[test]
    fn the_id_depends_on_the_set_of_roots_only() {
        let (a, b) = (path('a', "a"), path('b', "b"));
        let id = view_id(&[a.clone(), b.clone()]);
        assert_eq!(id.len(), 32);
        assert_eq!(id, view_id(&[b.clone(), a.clone(), b.clone()]));
        assert_ne!(id, view_id(&[a]));
    }

    #[test]
    fn leases_hold_for_their_boot_or_until_their_time() {
        assert_eq!(UserLease::parse("abc\n"), UserLease::Boot("abc".into()));
        assert_eq!(UserLease::parse("until=100"), UserLease::Until(100));
        assert_eq!(
            UserLease::parse("until=x"),
            UserLease::Boot("until=x".into())
        );
        for lease in [UserLease::Boot("b".into()), UserLease::Until(7)] {
            assert_eq!(UserLease::parse(&lease.render()), lease);
        }
        assert!(UserLease::Boot("b".into()).is_live("b", u64::MAX));
        assert!(!UserLease::Boot("b".into()).is_live("c", 0));
        assert!(UserLease::Until(10).is_live("any", 9));
        assert!(!UserLease::Until(10).is_live("any", 10));
    }

    #[test]
    fn a_bind_tree_dies_with_its_boot() {
        let mut record = ViewRecord {
            mechanism: ViewMechanism::BindTree,
            boot_id: "one".into(),
            roots: vec![],
            members: 0,
            nar_size: 0,
            created: 0,
            ca_bundles: None,
        };
        assert!(record.is_live("one"));
        assert!(!record.is_live("two"));
        record.mechanism = ViewMechanism::LinkFarm;
        assert!(record.is_live("two"));
    }
}
