//! Published volumes, recorded on disk as `<state_dir>/volumes/<id>.json` so that a restarted
//! plugin can unpublish what an earlier process published.
//!
//! A record is written (atomically: a temporary file, fsync, rename) before any effect of a
//! publish, with `complete: false`, and rewritten with `complete: true` once everything is in
//! place. A record that stays incomplete (the plugin died half way) names everything that may
//! have been done, so the next publish or unpublish of that volume undoes it first.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use containix_core::assemble::closure_mount::{ClosureMountPlan, OverlayDirs};
use containix_core::request::volume_attributes::PodInfo;
use containix_core::store::store_path::StorePath;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// What one published volume did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// The CO's volume id.
    pub volume_id: String,
    /// Where the volume is published.
    pub target_path: PathBuf,
    /// Whether it was published read-only.
    pub readonly: bool,
    /// The volume attributes it was published with (pod info keys included).
    pub attributes: BTreeMap<String, String>,
    /// The pod, when the kubelet said.
    pub pod: PodInfo,
    /// The closure's roots.
    pub roots: Vec<StorePath>,
    /// How many store paths the closure has.
    pub closure_size: usize,
    /// The closure's NAR size in bytes.
    pub nar_size: u64,
    /// The GC root consumer name.
    pub gc_consumer: String,
    /// The mounts and the tree.
    pub plan: ClosureMountPlan,
    /// Whether publishing finished.
    pub complete: bool,
}

/// Why the volume records could not be read or written.
#[derive(Debug, Error)]
pub enum StateError {
    /// Reading, writing or removing a record failed.
    #[error("volume state {path:?}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A record is not valid JSON of the expected shape.
    #[error("volume state {path:?}: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The decoding error.
        source: serde_json::Error,
    },
}

/// The records of published volumes, under one directory.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    dir: PathBuf,
}

impl VolumeStore {
    /// Opens (creating) the record directory `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StateError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| StateError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// The file name stem for a volume id: the id itself when it is a plain name, else a hash.
    pub fn file_stem(volume_id: &str) -> String {
        let plain = (1..=128).contains(&volume_id.len())
            && !volume_id.starts_with('.')
            && volume_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if plain {
            volume_id.to_owned()
        } else {
            Self::hashed_stem(volume_id)
        }
    }

    /// `sha256-<hex>` of a volume id: a short, safe name for any id.
    pub fn hashed_stem(volume_id: &str) -> String {
        let digest = Sha256::digest(volume_id.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256-{hex}")
    }

    /// The record file of a volume.
    pub fn record_path(&self, volume_id: &str) -> PathBuf {
        self.dir
            .join(format!("{}.json", Self::file_stem(volume_id)))
    }

    /// The directory of a volume's private files (its writable overlay's layers).
    pub fn volume_dir(&self, volume_id: &str) -> PathBuf {
        self.dir.join(format!("{}.d", Self::file_stem(volume_id)))
    }

    /// The overlay layers of a writable volume.
    pub fn overlay_dirs(&self, volume_id: &str) -> OverlayDirs {
        let dir = self.volume_dir(volume_id);
        OverlayDirs {
            lower: dir.join("lower"),
            upper: dir.join("upper"),
            work: dir.join("work"),
        }
    }

    /// The record of a volume, if there is one.
    pub fn load(&self, volume_id: &str) -> Result<Option<VolumeRecord>, StateError> {
        let path = self.record_path(volume_id);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| StateError::Corrupt { path, source })
    }

    /// Writes a volume's record atomically.
    pub fn save(&self, record: &VolumeRecord) -> Result<(), StateError> {
        let path = self.record_path(&record.volume_id);
        let temporary = path.with_extension("json.tmp");
        let io_error = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(record).expect("a record always serializes");
        let mut file = std::fs::File::create(&temporary).map_err(io_error)?;
        file.write_all(&json).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
        std::fs::rename(&temporary, &path).map_err(io_error)?;
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Removes a volume's record and private directory; missing ones are fine.
    pub fn remove(&self, volume_id: &str) -> Result<(), StateError> {
        let dir = self.volume_dir(volume_id);
        match std::fs::remove_dir_all(&dir) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                return Err(StateError::Io {
                    path: dir,
                    source: err,
                });
            }
            _ => {}
        }
        let path = self.record_path(volume_id);
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                Err(StateError::Io { path, source: err })
            }
            _ => Ok(()),
        }
    }

    /// Every recorded volume id.
    pub fn volume_ids(&self) -> Result<Vec<String>, StateError> {
        let io_error = |source| StateError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io_error)? {
            let path = entry.map_err(io_error)?.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(record) = serde_json::from_str::<VolumeRecord>(&text)
            {
                ids.push(record.volume_id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The record directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use containix_core::assemble::closure_mount::VolumeMode;

    use super::*;

    fn record(id: &str) -> VolumeRecord {
        VolumeRecord {
            volume_id: id.to_owned(),
            target_path: "/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/nix/mount".into(),
            readonly: true,
            attributes: BTreeMap::from([("storePaths".into(), "/nix/store/x".into())]),
            pod: PodInfo::default(),
            roots: vec![],
            closure_size: 0,
            nar_size: 0,
            gc_consumer: id.to_owned(),
            plan: ClosureMountPlan {
                target: "/t".into(),
                mode: VolumeMode::ReadOnly,
                tree: vec![],
                mounts: vec![],
            },
            complete: false,
        }
    }

    #[test]
    fn records_round_trip_and_odd_ids_get_hashed_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(dir.path().join("volumes")).unwrap();
        for id in ["csi-0123abcd", "../../etc/passwd", "a/b", ""] {
            assert_eq!(store.load(id).unwrap(), None);
            store.save(&record(id)).unwrap();
            assert_eq!(store.load(id).unwrap(), Some(record(id)));
            assert!(store.record_path(id).starts_with(store.dir()));
        }
        assert_eq!(store.volume_ids().unwrap().len(), 4);
        assert_eq!(VolumeStore::file_stem("csi-0123abcd"), "csi-0123abcd");
        assert!(VolumeStore::file_stem("a/b").starts_with("sha256-"));
        store.remove("a/b").unwrap();
        store.remove("a/b").unwrap();
        assert_eq!(store.load("a/b").unwrap(), None);
    }
}
