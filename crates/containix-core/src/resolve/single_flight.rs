//! Node-wide single flight: one exclusive file lock per key under `<state_dir>/locks/`, so that
//! concurrent resolutions of the same locked installable (in any process on the node) evaluate
//! it once. The first takes the lock, evaluates and fills the cache; the others wait for the
//! lock and then find the cache filled.
//!
//! Waiting polls a non-blocking `flock` with a short, growing sleep: the tokio runtime is never
//! blocked, and the wait ends at the caller's deadline. The lock is released when the guard is
//! dropped (the kernel also releases it if the process dies). A holder may remove the lock file
//! while it holds it ([`KeyLock::remove`], for keys whose state is gone): a waiter that locked
//! the removed file sees that it is no longer the one at the path and tries again, so two
//! holders never overlap.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use tokio::time::Instant;

/// The first sleep between attempts; doubled up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(5);
const MAX_POLL: Duration = Duration::from_millis(100);

/// The directory of lock files.
#[derive(Debug, Clone)]
pub struct LockDir {
    dir: PathBuf,
}

/// An exclusive lock on one key, held until dropped.
#[derive(Debug)]
pub struct KeyLock {
    _lock: Flock<File>,
    path: PathBuf,
}

/// Why a lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// The deadline passed while another holder kept the lock.
    Expired,
    /// The lock file could not be created or locked.
    Io {
        /// The lock file (or its directory).
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl LockDir {
    /// Locks under `<state_dir>/locks`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("locks"),
        }
    }

    /// The lock file of a key digest (hex).
    pub fn lock_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.lock"))
    }

    /// Takes the exclusive lock of `digest`, waiting until `deadline` at most.
    pub async fn lock(&self, digest: &str, deadline: Instant) -> Result<KeyLock, LockError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| LockError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let path = self.lock_path(digest);
        let mut pause = FIRST_POLL;
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|source| LockError::Io {
                    path: path.clone(),
                    source,
                })?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) if is_current(&lock, &path) => return Ok(KeyLock { _lock: lock, path }),
                // The holder removed the file after we opened it: lock the new one.
                Ok(_) => continue,
                Err((_, Errno::EWOULDBLOCK | Errno::EINTR)) => {}
                Err((_, errno)) => {
                    return Err(LockError::Io {
                        path,
                        source: errno.into(),
                    });
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(LockError::Expired);
            }
            tokio::time::sleep_until((now + pause).min(deadline)).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }
}

impl KeyLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the lock file, then releases the lock.
    pub fn remove(self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

/// Whether the locked file is still the one at `path` (not removed and replaced meanwhile).
fn is_current(lock: &Flock<File>, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (lock.metadata(), std::fs::metadata(path)) {
        (Ok(held), Ok(now)) => held.ino() == now.ino() && held.dev() == now.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_holder_waits_and_respects_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let locks = LockDir::new(dir.path());
        let first = locks
            .lock("abc", Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        let waited = locks
            .lock("abc", Instant::now() + Duration::from_millis(30))
            .await;
        assert!(matches!(waited, Err(LockError::Expired)), "{waited:?}");
        // Other keys are independent.
        let other = locks
            .lock("def", Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        drop(first);
        let again = locks
            .lock("abc", Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(again.path(), locks.lock_path("abc"));
        drop((other, again));
    }

    #[tokio::test]
    async fn a_removed_lock_file_is_not_shared_by_two_holders() {
        let dir = tempfile::tempdir().unwrap();
        let locks = LockDir::new(dir.path());
        let first = locks
            .lock("abc", Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        // A waiter opened the file before the holder removed it.
        let stale = std::fs::File::open(locks.lock_path("abc")).unwrap();
        first.remove().unwrap();
        assert!(!locks.lock_path("abc").exists());
        let stale = Flock::lock(stale, FlockArg::LockExclusiveNonblock).unwrap();
        assert!(!is_current(&stale, &locks.lock_path("abc")));
        let second = locks
            .lock("abc", Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        assert!(is_current(&second._lock, second.path()));
    }
}
