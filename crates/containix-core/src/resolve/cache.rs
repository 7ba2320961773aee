//! The on-disk cache of resolutions of locked installables: `<state_dir>/cache/<key>.json`.
//!
//! A locked installable (one whose flake ref carries a `rev` or `narHash`) always evaluates to
//! the same derivation and outputs for a given system, so the evaluation can be skipped. Entries
//! hold only what evaluation produced (derivation, outputs, program, name, version); whether the
//! paths are still valid is checked with the daemon on every use. Entries are written atomically
//! (temporary file and rename), and an unreadable entry counts as a miss.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state_file::write_atomically;
use crate::store::store_path::StorePath;

/// Version of the entry format; other versions are misses.
const FORMAT: u32 = 1;

/// The identity of a cached resolution: the canonical installable and the system.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    installable: String,
    system: String,
}

impl CacheKey {
    /// The key of `installable` (canonical form, attribute explicit) evaluated for `system`.
    pub fn new(installable: impl Into<String>, system: impl Into<String>) -> Self {
        Self {
            installable: installable.into(),
            system: system.into(),
        }
    }

    /// The installable.
    pub fn installable(&self) -> &str {
        &self.installable
    }

    /// A file-name-safe digest: hex SHA-256 of `system`, NUL, `installable`.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.system.as_bytes());
        hasher.update([0]);
        hasher.update(self.installable.as_bytes());
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
    evaluation: CachedEvaluation,
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
                    && entry.system == key.system =>
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
            evaluation: evaluation.clone(),
        };
        let json = serde_json::to_vec_pretty(&entry).map_err(std::io::Error::other)?;
        write_atomically(&self.entry_path(key), &json)
    }

    /// Removes `key`'s entry, if any (its derivation is gone, so it must be evaluated again).
    pub fn remove(&self, key: &CacheKey) -> std::io::Result<()> {
        match fs::remove_file(self.entry_path(key)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
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
        let key = CacheKey::new("github:o/r/0123#x", "x86_64-linux");
        let other = CacheKey::new("github:o/r/0123#x", "aarch64-linux");
        assert_eq!(cache.get(&key), None);
        cache.put(&key, &evaluation()).unwrap();
        assert_eq!(cache.get(&key), Some(evaluation()));
        assert_eq!(cache.get(&other), None);
        assert_ne!(key.digest(), other.digest());
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
        let key = CacheKey::new("github:o/r/0123#x", "x86_64-linux");
        fs::create_dir_all(dir.path().join("cache")).unwrap();
        fs::write(cache.entry_path(&key), b"{not json").unwrap();
        assert_eq!(cache.get(&key), None);
        // An entry written for another key under this file name (a collision) is a miss.
        let foreign = CacheKey::new("github:o/r/4567#x", "x86_64-linux");
        cache.put(&foreign, &evaluation()).unwrap();
        fs::rename(cache.entry_path(&foreign), cache.entry_path(&key)).unwrap();
        assert_eq!(cache.get(&key), None);
    }
}
