//! Node state files (view records, cache entries, in-flight statuses) as every stage writes
//! them: whole or not at all, so a reader never sees half a file and a killed writer leaves at
//! most a temporary file beside it.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` atomically: a uniquely named temporary file in the same directory,
/// synced, then renamed over `path`. The temporary file is removed if anything fails.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_via_temp(path, bytes, true)
}

/// [`write_atomically`] without syncing to disk, for state that only matters until the node
/// reboots (a container's use of a view). A killed process still leaves the old file or the
/// new one, as the page cache outlives it; a power loss is a reboot, after which such state is
/// swept, not trusted. Saves a disk flush per container start, which on a node busy writing
/// costs milliseconds.
pub fn write_atomically_for_this_boot(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_via_temp(path, bytes, false)
}

fn write_via_temp(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        if sync {
            file.sync_all()?;
        }
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Reads a JSON file; `Ok(None)` when it does not exist, `InvalidData` when it does not parse.
pub fn read_json<T: for<'de> serde::Deserialize<'de>>(path: &Path) -> io::Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ready.json");
        write_atomically(&file, b"{}").unwrap();
        write_atomically(&file, b"[1]").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"[1]");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing: Option<Vec<u8>> = read_json(&dir.path().join("none.json")).unwrap();
        assert!(missing.is_none());
        fs::write(&file, b"not json").unwrap();
        let err = read_json::<Vec<u8>>(&file).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let unwritable = dir.path().join("missing-dir/file.json");
        assert!(write_atomically(&unwritable, b"x").is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
