//! The on-disk cache of evaluations of locked installables: `<state_dir>/cache/<key>.json`.
//!
//! A locked installable (one whose flake ref carries a `rev` or `narHash`) always evaluates to
//! the same derivation and outputs for a given system and evaluator, so the evaluation is done
//! once per node. Entries hold only what evaluation produced (derivation, outputs, program,
//! name, version); whether the outputs are still valid is checked with the daemon on every use
//! that is not served by an existing store view. Each entry's derivation is a GC root
//! (`<state_dir>/cache/gcroots/eval-<key>/`), so it can be built again without evaluating;
//! [`ResolutionCache::remove`] drops both. Entries are written atomically (temporary file and
//! rename), and an unreadable entry counts as a miss.
//!
//! A failed evaluation is never an entry. It is remembered for [`FAILURE_TTL`] only
//! (`failed/<key>.json`), so a burst of pods of a broken flake evaluates it once, and a fix is
//! tried as soon as that short time has passed (a fixed source has a new lock, and so a new key,
//! at once). Every evaluation run is appended to `evaluations.log` (one JSON line each).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::request::flake_ref::FlakeInstallable;
use crate::state_file::write_atomically;
use crate::store::gc_roots::GcRoots;
use crate::store::store_path::StorePath;

/// Version of the entry format; other versions are misses.
const FORMAT: u32 = 2;

/// How long a failed evaluation is answered from memory instead of being run again.
pub const FAILURE_TTL: Duration = Duration::from_secs(10);

/// The evaluation log is started afresh (the old one kept as `evaluations.log.old`) past this
/// size.
const LOG_LIMIT: u64 = 1 << 20;

/// The identity of a cached evaluation: the canonical locked installable, the system and the
/// evaluator (the policy's `nix-command`): everything of the node policy that changes what an
/// evaluation gives. (Whether a pod may use it is checked on every use.)
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    installable: String,
    system: String,
    evaluator: String,
}

impl CacheKey {
    /// The key of `installable` (canonical form, attribute explicit) evaluated for `system` by
    /// `evaluator`.
    pub fn new(
        installable: impl Into<String>,
        system: impl Into<String>,
        evaluator: impl Into<String>,
    ) -> Self {
        Self {
            installable: installable.into(),
            system: system.into(),
            evaluator: evaluator.into(),
        }
    }

    /// The installable.
    pub fn installable(&self) -> &str {
        &self.installable
    }

    /// The flake ref of the installable, in canonical form.
    pub fn flake(&self) -> Option<String> {
        FlakeInstallable::parse(&self.installable)
            .ok()
            .map(|installable| installable.flake.to_string())
    }

    /// A file-name-safe digest: hex SHA-256 of `system`, NUL, `installable`, NUL, `evaluator`.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.system.as_bytes());
        hasher.update([0]);
        hasher.update(self.installable.as_bytes());
        hasher.update([0]);
        hasher.update(self.evaluator.as_bytes());
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// What evaluating a locked installable gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedEvaluation {
    /// The derivation.
    pub drv_path: StorePath,
    /// The outputs to install, by name.
    pub outputs: BTreeMap<String, StorePath>,
    /// The default program.
    pub main_program: Option<String>,
    /// The package name.
    pub package_name: Option<String>,
    /// The package version.
    pub package_version: Option<String>,
}

impl CachedEvaluation {
    /// The outputs as closure roots: `out` first, then the others by name.
    pub fn roots(&self) -> Vec<StorePath> {
        self.outputs
            .get("out")
            .into_iter()
            .chain(
                self.outputs
                    .iter()
                    .filter(|(n, _)| *n != "out")
                    .map(|(_, p)| p),
            )
            .cloned()
            .collect()
    }
}

#[derive(Serialize, Deserialize)]
struct Entry {
    format: u32,
    installable: String,
    system: String,
    evaluator: String,
    evaluation: CachedEvaluation,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Failure {
    format: u32,
    installable: String,
    system: String,
    evaluator: String,
    message: String,
    failed_ms: u64,
}

/// One line of `evaluations.log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationRecord {
    /// What ran: `lock` (`nix flake metadata`) or `eval` (`nix eval`).
    pub kind: String,
    /// The installable (or flake ref) as asked.
    pub subject: String,
    /// The locked ref or installable it ran on, when known.
    pub locked: Option<String>,
    /// How long it took, in milliseconds.
    pub millis: u64,
    /// Whether it succeeded.
    pub ok: bool,
    /// The process that ran it.
    pub pid: u32,
    /// When it ended, in milliseconds since the epoch.
    pub at_ms: u64,
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct ResolutionCache {
    dir: PathBuf,
}

impl ResolutionCache {
    /// The cache under `<state_dir>/cache`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("cache"),
        }
    }

    /// The file holding `key`'s entry.
    pub fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.digest()))
    }

    /// The cached evaluation of `key`, if there is a readable entry for exactly that key.
    pub fn get(&self, key: &CacheKey) -> Option<CachedEvaluation> {
        let path = self.entry_path(key);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "cannot read a resolution cache entry");
                return None;
            }
        };
        match serde_json::from_slice::<Entry>(&bytes) {
            Ok(entry)
                if entry.format == FORMAT
                    && entry.installable == key.installable
                    && entry.system == key.system
                    && entry.evaluator == key.evaluator =>
            {
                Some(entry.evaluation)
            }
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "ignoring a corrupt resolution cache entry");
                None
            }
        }
    }

    /// Stores `evaluation` for `key`, replacing any entry atomically.
    pub fn put(&self, key: &CacheKey, evaluation: &CachedEvaluation) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let entry = Entry {
            format: FORMAT,
            installable: key.installable.clone(),
            system: key.system.clone(),
            evaluator: key.evaluator.clone(),
            evaluation: evaluation.clone(),
        };
        let json = serde_json::to_vec_pretty(&entry).map_err(std::io::Error::other)?;
        write_atomically(&self.entry_path(key), &json)
    }

    /// Removes `key`'s entry, its GC root and any remembered failure (its derivation is gone,
    /// or its lock is stale).
    pub fn remove(&self, key: &CacheKey) -> std::io::Result<()> {
        let digest = key.digest();
        self.gc_roots()
            .release(&root_consumer(&digest))
            .map_err(std::io::Error::other)?;
        remove_file(&self.dir.join("failed").join(format!("{digest}.json")))?;
        remove_file(&self.entry_path(key))
    }

    /// The GC roots of the entries' derivations.
    pub fn gc_roots(&self) -> GcRoots {
        GcRoots::new(&self.dir)
    }

    /// The GC root consumer name of `key`'s derivation.
    pub fn root_consumer(&self, key: &CacheKey) -> String {
        root_consumer(&key.digest())
    }

    /// Every readable entry's key.
    pub fn keys(&self) -> Vec<CacheKey> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|entry| fs::read(entry.path()).ok())
            .filter_map(|bytes| serde_json::from_slice::<Entry>(&bytes).ok())
            .filter(|entry| entry.format == FORMAT)
            .map(|entry| CacheKey::new(entry.installable, entry.system, entry.evaluator))
            .collect()
    }

    /// The message of `key`'s evaluation if it failed less than `ttl` before `now_ms`.
    pub fn recent_failure(&self, key: &CacheKey, now_ms: u64, ttl: Duration) -> Option<String> {
        let path = self
            .dir
            .join("failed")
            .join(format!("{}.json", key.digest()));
        let failure: Failure = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
        let same = failure.format == FORMAT
            && failure.installable == key.installable
            && failure.system == key.system
            && failure.evaluator == key.evaluator;
        let recent =
            now_ms >= failure.failed_ms && u128::from(now_ms - failure.failed_ms) < ttl.as_millis();
        (same && recent).then_some(failure.message)
    }

    /// Remembers that `key`'s evaluation failed with `message` at `now_ms`.
    pub fn put_failure(&self, key: &CacheKey, message: &str, now_ms: u64) -> std::io::Result<()> {
        let dir = self.dir.join("failed");
        fs::create_dir_all(&dir)?;
        let failure = Failure {
            format: FORMAT,
            installable: key.installable.clone(),
            system: key.system.clone(),
            evaluator: key.evaluator.clone(),
            message: message.to_owned(),
            failed_ms: now_ms,
        };
        let json = serde_json::to_vec_pretty(&failure).map_err(std::io::Error::other)?;
        write_atomically(&dir.join(format!("{}.json", key.digest())), &json)
    }

    /// Appends `record` to `evaluations.log`.
    pub fn record(&self, record: &EvaluationRecord) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let log = self.log_path();
        if fs::metadata(&log).is_ok_and(|meta| meta.len() > LOG_LIMIT) {
            fs::rename(&log, log.with_extension("log.old"))?;
        }
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        // One write of a short line to a file opened for appending: lines never interleave.
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?
            .write_all(&line)
    }

    /// The evaluation log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("evaluations.log")
    }

    /// The records in the evaluation log, oldest first (unreadable lines skipped).
    pub fn records(&self) -> Vec<EvaluationRecord> {
        fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

/// The entries to drop once a moving ref's lock changed from `old_lock`: those evaluated from
/// `old_lock`, unless a cached lock still points to it (another ref locked to the same source).
/// Pure.
pub fn stale_entries(
    old_lock: &str,
    still_locked: &BTreeSet<String>,
    keys: &[CacheKey],
) -> Vec<CacheKey> {
    if still_locked.contains(old_lock) {
        return Vec::new();
    }
    keys.iter()
        .filter(|key| key.flake().as_deref() == Some(old_lock))
        .cloned()
        .collect()
}

fn root_consumer(digest: &str) -> String {
    format!("eval-{}", &digest[..40.min(digest.len())])
}

fn remove_file(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluation() -> CachedEvaluation {
        CachedEvaluation {
            drv_path: StorePath::parse("/nix/store/ar25pqwqc1pfzvpw69sln376hqy1bn07-hello-1.0.drv")
                .unwrap(),
            outputs: BTreeMap::from([(
                "out".to_owned(),
                StorePath::parse("/nix/store/0c1h5b3ldrb1d8jq6ln5ai3k06h3ipm8-hello-1.0").unwrap(),
            )]),
            main_program: Some("hello".into()),
            package_name: Some("hello".into()),
            package_version: Some("1.0".into()),
        }
    }

    #[test]
    fn round_trips_and_keys_differ_by_system() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResolutionCache::new(dir.path());
        let key = CacheKey::new("github:o/r/0123#x", "x86_64-linux", "nix");
        let other = CacheKey::new("github:o/r/0123#x", "aarch64-linux", "nix");
        assert_eq!(cache.get(&key), None);
        cache.put(&key, &evaluation()).unwrap();
        assert_eq!(cache.get(&key), Some(evaluation()));
        assert_eq!(cache.get(&other), None);
        assert_ne!(key.digest(), other.digest());
        let other_nix = CacheKey::new("github:o/r/0123#x", "x86_64-linux", "/opt/nix/bin/nix");
        assert_eq!(
            cache.get(&other_nix),
            None,
            "another evaluator is another key"
        );
        // Only the entry is left: no temporary files.
        assert_eq!(fs::read_dir(dir.path().join("cache")).unwrap().count(), 1);
        cache.remove(&key).unwrap();
        cache.remove(&key).unwrap();
        assert_eq!(cache.get(&key), None);
    }

    #[test]
    fn corrupt_or_foreign_entries_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResolutionCache::new(dir.path());
        let key = CacheKey::new("github:o/r/0123#x", "x86_64-linux", "nix");
        fs::create_dir_all(dir.path().join("cache")).unwrap();
        fs::write(cache.entry_path(&key), b"{not json").unwrap();
        assert_eq!(cache.get(&key), None);
        // An entry written for another key under this file name (a collision) is a miss.
        let foreign = CacheKey::new("github:o/r/4567#x", "x86_64-linux", "nix");
        cache.put(&foreign, &evaluation()).unwrap();
        fs::rename(cache.entry_path(&foreign), cache.entry_path(&key)).unwrap();
        assert_eq!(cache.get(&key), None);
    }

    #[test]
    fn failures_are_remembered_briefly_and_never_as_success() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResolutionCache::new(dir.path());
        let key = CacheKey::new("path:/x?narHash=sha256-a#p", "x86_64-linux", "nix");
        cache.put_failure(&key, "error: boom", 1_000).unwrap();
        assert_eq!(cache.get(&key), None);
        assert_eq!(
            cache
                .recent_failure(&key, 1_000 + 9_999, FAILURE_TTL)
                .as_deref(),
            Some("error: boom")
        );
        assert_eq!(
            cache.recent_failure(&key, 1_000 + 10_000, FAILURE_TTL),
            None
        );
        assert_eq!(cache.recent_failure(&key, 999, FAILURE_TTL), None);
        let other = CacheKey::new("path:/x?narHash=sha256-b#p", "x86_64-linux", "nix");
        assert_eq!(cache.recent_failure(&other, 1_000, FAILURE_TTL), None);
        cache.remove(&key).unwrap();
        assert_eq!(cache.recent_failure(&key, 1_000, FAILURE_TTL), None);
    }

    #[test]
    fn the_log_keeps_one_line_per_run() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResolutionCache::new(dir.path());
        let record = EvaluationRecord {
            kind: "eval".into(),
            subject: "path:/x#p".into(),
            locked: None,
            millis: 5,
            ok: true,
            pid: 1,
            at_ms: 2,
        };
        cache.record(&record).unwrap();
        cache.record(&record).unwrap();
        assert_eq!(cache.records(), vec![record.clone(), record]);
    }

    fn arb_key() -> impl proptest::strategy::Strategy<Value = CacheKey> {
        use proptest::prelude::*;
        (0..3u8, 0..3u8, 0..2u8).prop_map(|(flake, attr, system)| {
            CacheKey::new(
                format!("path:/f{flake}?narHash=sha256-a#p{attr}"),
                format!("s{system}-linux"),
                "nix",
            )
        })
    }

    proptest::proptest! {
        /// Dropping an old lock drops exactly its entries, and none while a cached lock still
        /// points to it.
        #[test]
        fn stale_entries_are_exactly_the_old_lock_s(
            keys in proptest::collection::vec(arb_key(), 0..12),
            old in 0..3u8,
            kept in proptest::collection::btree_set(0..3u8, 0..3),
        ) {
            let old_lock = format!("path:/f{old}?narHash=sha256-a");
            let still: BTreeSet<String> =
                kept.iter().map(|k| format!("path:/f{k}?narHash=sha256-a")).collect();
            let dropped = stale_entries(&old_lock, &still, &keys);
            if still.contains(&old_lock) {
                proptest::prop_assert!(dropped.is_empty());
            } else {
                for key in &keys {
                    let of_old = key.flake().as_deref() == Some(old_lock.as_str());
                    proptest::prop_assert_eq!(dropped.contains(key), of_old);
                }
            }
        }
    }
}
