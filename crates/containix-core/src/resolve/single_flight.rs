//! Node-wide single flight: one exclusive file lock per key under `<state_dir>/locks/`, so that
//! concurrent resolutions of the same locked installable (in any process on the node) evaluate
//! it once. The first takes the lock, evaluates and fills the cache; the others wait for the
//! lock and then find the cache filled.
//!
//! Waiting polls a non-blocking `flock` with a short, growing sleep: the tokio runtime is never
//! blocked, and the wait ends at the caller's deadline. The lock is released when the guard is
//! dropped (the kernel also releases it if the process dies). Lock files are left in place:
//! removing one while another process waits on it would let two holders in.

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
                Ok(lock) => return Ok(KeyLock { _lock: lock, path }),
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
}
