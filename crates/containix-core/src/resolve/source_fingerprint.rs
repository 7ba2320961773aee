//! A cheap fingerprint of a local flake folder, so a cached lock of a `path:` flake is reused
//! only while the folder is unchanged: every entry's relative path, type, size, mode, inode,
//! and modification and change times (the change time moves on any write, and cannot be set
//! back by an ordinary program), hashed. It reads metadata only, never file contents, and
//! never follows a symlink.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Folders with more entries than this are not fingerprinted (their locks are not cached).
pub const MAX_ENTRIES: usize = 100_000;

/// The fingerprint of the folder `root` (hex), or `None` when it has more than
/// [`MAX_ENTRIES`] entries or is not a folder.
pub fn fingerprint(root: &Path) -> io::Result<Option<String>> {
    let meta = fs::symlink_metadata(root)?;
    if !meta.is_dir() {
        return Ok(None);
    }
    let mut hash = Sha256::new();
    hash.update(b"containix-source-v1\0");
    add_entry(&mut hash, "", &meta, None);
    let mut count = 0;
    let mut pending = vec![String::new()];
    while let Some(dir) = pending.pop() {
        let mut entries: Vec<(String, fs::Metadata)> = Vec::new();
        for entry in fs::read_dir(root.join(&dir))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let relative = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            entries.push((relative, entry.metadata()?));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (relative, meta) in entries {
            count += 1;
            if count > MAX_ENTRIES {
                return Ok(None);
            }
            let target = if meta.file_type().is_symlink() {
                Some(fs::read_link(root.join(&relative))?)
            } else {
                None
            };
            add_entry(&mut hash, &relative, &meta, target.as_deref());
            if meta.is_dir() {
                pending.push(relative);
            }
        }
    }
    Ok(Some(
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
    ))
}

fn add_entry(hash: &mut Sha256, relative: &str, meta: &fs::Metadata, target: Option<&Path>) {
    hash.update(relative.as_bytes());
    hash.update([0]);
    for value in [
        u64::from(meta.mode()),
        meta.len(),
        meta.ino(),
        meta.dev(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
        meta.ctime() as u64,
        meta.ctime_nsec() as u64,
    ] {
        hash.update(value.to_le_bytes());
    }
    if let Some(target) = target {
        hash.update(target.as_os_str().as_encoded_bytes());
    }
    hash.update([0xff]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_change_in_the_tree_changes_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("flake.nix"), "{ }").unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("sub/data"), "a").unwrap();
        let first = fingerprint(root).unwrap().unwrap();
        assert_eq!(fingerprint(root).unwrap().unwrap(), first, "stable");

        let mut seen = vec![first];
        let mut changed = |what: &str| {
            let now = fingerprint(root).unwrap().unwrap();
            assert!(
                !seen.contains(&now),
                "{what} left the fingerprint as it was"
            );
            seen.push(now);
        };
        fs::write(root.join("sub/data"), "b").unwrap();
        changed("rewriting a nested file");
        fs::write(root.join("new"), "").unwrap();
        changed("adding a file");
        std::os::unix::fs::symlink("sub/data", root.join("link")).unwrap();
        changed("adding a symlink");
        fs::remove_file(root.join("link")).unwrap();
        std::os::unix::fs::symlink("flake.nix", root.join("link")).unwrap();
        changed("retargeting a symlink");
        fs::rename(root.join("new"), root.join("renamed")).unwrap();
        changed("renaming a file");
    }

    #[test]
    fn files_and_missing_folders_have_none() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), "").unwrap();
        assert_eq!(fingerprint(&dir.path().join("f")).unwrap(), None);
        assert!(fingerprint(&dir.path().join("missing")).is_err());
    }
}
