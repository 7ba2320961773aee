//! The node's cached flake locks: for a ref that may move (`github:org/app`, `path:/srv/app`),
//! the locked ref Nix fetched for it last, so an unchanged source is not locked again for every
//! pod (`<state_dir>/cache/locks/<digest>.json`).
//!
//! When a cached lock is reused ([`lock_reuse`], [`is_fresh`], both pure):
//! - a `path:` folder: while its [fingerprint](crate::resolve::source_fingerprint) is unchanged
//!   (an edit makes the next pod lock again, whatever the TTL);
//! - a remote ref (forge, Git or tarball URL, registry id): for the policy's `lock-ttl` after it
//!   was locked (a moved branch is seen at most that late; zero locks for every resolution);
//! - other local refs (`git+file:`, `file:`, `tarball+file:`): never (locked every time).
//!
//! Entries are written atomically; an unreadable entry is a miss.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::request::flake_ref::{FlakeRef, FlakeSource};
use crate::state_file::write_atomically;

/// Version of the entry format; other versions are misses.
const FORMAT: u32 = 1;

/// How a cached lock of a ref may be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockReuse {
    /// While the folder's fingerprint is unchanged.
    Fingerprint(PathBuf),
    /// For the lock TTL.
    Ttl,
    /// Never: locked for every resolution.
    Never,
}

/// How a cached lock of `flake` (an unlocked ref, local paths resolved) may be reused.
pub fn lock_reuse(flake: &FlakeRef) -> LockReuse {
    match flake.source() {
        FlakeSource::Path { path, .. } if path.starts_with('/') => {
            LockReuse::Fingerprint(PathBuf::from(path))
        }
        _ if flake.is_local() => LockReuse::Never,
        _ => LockReuse::Ttl,
    }
}

/// One cached lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockEntry {
    format: u32,
    /// The ref as asked (canonical, local paths resolved).
    pub unlocked: String,
    /// The locked ref Nix fetched for it.
    pub locked: String,
    /// When it was locked, in milliseconds since the epoch.
    pub locked_ms: u64,
    /// The folder's fingerprint, taken before locking, for `path:` refs.
    pub fingerprint: Option<String>,
}

impl LockEntry {
    /// An entry: `unlocked` was locked to `locked` at `locked_ms`.
    pub fn new(
        unlocked: String,
        locked: String,
        locked_ms: u64,
        fingerprint: Option<String>,
    ) -> Self {
        Self {
            format: FORMAT,
            unlocked,
            locked,
            locked_ms,
            fingerprint,
        }
    }
}

/// Whether `entry` may be reused at `now_ms` for a ref reused as `reuse`, whose folder has the
/// fingerprint `fingerprint` now (for [`LockReuse::Fingerprint`]).
pub fn is_fresh(
    entry: &LockEntry,
    reuse: &LockReuse,
    now_ms: u64,
    ttl: Duration,
    fingerprint: Option<&str>,
) -> bool {
    match reuse {
        LockReuse::Fingerprint(_) => {
            fingerprint.is_some() && entry.fingerprint.as_deref() == fingerprint
        }
        LockReuse::Ttl => {
            // A clock set back makes every entry stale rather than fresh for longer.
            now_ms >= entry.locked_ms && u128::from(now_ms - entry.locked_ms) < ttl.as_millis()
        }
        LockReuse::Never => false,
    }
}

/// The directory of cached locks.
#[derive(Debug, Clone)]
pub struct LockCache {
    dir: PathBuf,
}

impl LockCache {
    /// The cached locks under `<state_dir>/cache/locks`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("cache").join("locks"),
        }
    }

    /// A file-name-safe digest of an unlocked ref.
    pub fn digest(unlocked: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"containix-lock-v1\0");
        hasher.update(unlocked.as_bytes());
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn entry_path(&self, unlocked: &str) -> PathBuf {
        self.dir.join(format!("{}.json", Self::digest(unlocked)))
    }

    /// The cached lock of `unlocked`, if there is a readable entry for exactly that ref.
    pub fn get(&self, unlocked: &str) -> Option<LockEntry> {
        let bytes = fs::read(self.entry_path(unlocked)).ok()?;
        serde_json::from_slice::<LockEntry>(&bytes)
            .ok()
            .filter(|entry| entry.format == FORMAT && entry.unlocked == unlocked)
    }

    /// Stores `entry`, replacing the ref's previous one atomically.
    pub fn put(&self, entry: &LockEntry) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let json = serde_json::to_vec_pretty(entry).map_err(std::io::Error::other)?;
        write_atomically(&self.entry_path(&entry.unlocked), &json)
    }

    /// Every locked ref some cached lock points to.
    pub fn locked_refs(&self) -> BTreeSet<String> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|entry| fs::read(entry.path()).ok())
            .filter_map(|bytes| serde_json::from_slice::<LockEntry>(&bytes).ok())
            .map(|entry| entry.locked)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(locked_ms: u64, fingerprint: Option<&str>) -> LockEntry {
        LockEntry::new(
            "path:/srv/app".into(),
            "path:/srv/app?narHash=sha256-x".into(),
            locked_ms,
            fingerprint.map(str::to_owned),
        )
    }

    #[test]
    fn refs_are_reused_by_kind() {
        let reuse = |text: &str| lock_reuse(&FlakeRef::parse(text).unwrap());
        assert_eq!(
            reuse("path:/srv/app"),
            LockReuse::Fingerprint("/srv/app".into())
        );
        assert_eq!(reuse("github:org/app"), LockReuse::Ttl);
        assert_eq!(reuse("git+https://example.org/app"), LockReuse::Ttl);
        assert_eq!(reuse("git+file:///srv/app"), LockReuse::Never);
        assert_eq!(reuse("file:///srv/app.tar.gz"), LockReuse::Never);
    }

    proptest! {
        /// A folder's lock is reused exactly while its fingerprint is the same, whatever the
        /// time; a remote lock exactly within the TTL after it was taken.
        #[test]
        fn freshness(locked in 0u64..1_000_000, elapsed in 0u64..1_000_000, ttl in 0u64..500_000,
                     same in any::<bool>()) {
            let ttl = Duration::from_millis(ttl);
            let now = locked + elapsed;
            let folder = LockReuse::Fingerprint("/srv/app".into());
            let cached = entry(locked, Some("aa"));
            let current = if same { "aa" } else { "bb" };
            prop_assert_eq!(is_fresh(&cached, &folder, now, ttl, Some(current)), same);
            prop_assert!(!is_fresh(&cached, &folder, now, ttl, None));
            prop_assert!(!is_fresh(&entry(locked, None), &folder, now, ttl, Some("aa")));
            prop_assert_eq!(
                is_fresh(&entry(locked, None), &LockReuse::Ttl, now, ttl, None),
                u128::from(elapsed) < ttl.as_millis()
            );
            if locked > 0 {
                prop_assert!(!is_fresh(&entry(locked, None), &LockReuse::Ttl, locked - 1, ttl, None));
            }
            prop_assert!(!is_fresh(&cached, &LockReuse::Never, now, ttl, Some("aa")));
        }
    }

    #[test]
    fn entries_round_trip_and_others_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LockCache::new(dir.path());
        assert_eq!(cache.get("path:/srv/app"), None);
        cache.put(&entry(5, Some("aa"))).unwrap();
        assert_eq!(cache.get("path:/srv/app"), Some(entry(5, Some("aa"))));
        assert_eq!(cache.get("path:/srv/other"), None);
        assert_eq!(
            cache.locked_refs(),
            BTreeSet::from(["path:/srv/app?narHash=sha256-x".to_owned()])
        );
    }
}
