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
        self.lock_any(std::slice::from_ref(&digest.to_owned()), deadline)
            .await
    }

    /// Takes one of `slots` slots named `<name>-<i>`, waiting until `deadline` at most: a
    /// node-wide counting semaphore (at most `slots` holders at a time, in any process).
    pub async fn lock_slot(
        &self,
        name: &str,
        slots: usize,
        deadline: Instant,
    ) -> Result<KeyLock, LockError> {
        let names: Vec<String> = (0..slots.max(1)).map(|i| format!("{name}-{i}")).collect();
        self.lock_any(&names, deadline).await
    }

    /// Takes the lock of the first of `digests` that is free, waiting until `deadline` at most.
    async fn lock_any(&self, digests: &[String], deadline: Instant) -> Result<KeyLock, LockError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| LockError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut pause = FIRST_POLL;
        loop {
            for digest in digests {
                if let Some(lock) = self.try_lock(digest)? {
                    return Ok(lock);
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

    /// One attempt at the lock of `digest`; `None` when another holder has it.
    fn try_lock(&self, digest: &str) -> Result<Option<KeyLock>, LockError> {
        let path = self.lock_path(digest);
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
            return match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) if is_current(&lock, &path) => Ok(Some(KeyLock { _lock: lock, path })),
                // The holder removed the file after we opened it: lock the new one.
                Ok(_) => continue,
                Err((_, Errno::EWOULDBLOCK | Errno::EINTR)) => Ok(None),
                Err((_, errno)) => Err(LockError::Io {
                    path,
                    source: errno.into(),
                }),
            };
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]
        /// However many tasks ask, at most `slots` hold a slot at once, and every one gets one.
        #[test]
        fn slots_bound_concurrency_and_serve_everyone(slots in 1usize..4, tasks in 1usize..10) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let (max, served) = runtime.block_on(slot_run(slots, tasks));
            proptest::prop_assert!(max <= slots, "{max} holders for {slots} slots");
            proptest::prop_assert_eq!(max, slots.min(tasks));
            proptest::prop_assert_eq!(served, tasks);
        }
    }

    async fn slot_run(slots: usize, tasks: usize) -> (usize, usize) {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let locks = LockDir::new(dir.path());
        let holding = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let mut joins = Vec::new();
        for _ in 0..tasks {
            let (locks, holding, max, served) =
                (locks.clone(), holding.clone(), max.clone(), served.clone());
            joins.push(tokio::spawn(async move {
                let slot = locks
                    .lock_slot("eval", slots, Instant::now() + Duration::from_secs(20))
                    .await
                    .unwrap();
                let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                holding.fetch_sub(1, Ordering::SeqCst);
                served.fetch_add(1, Ordering::SeqCst);
                drop(slot);
            }));
        }
        for join in joins {
            join.await.unwrap();
        }
        (max.load(Ordering::SeqCst), served.load(Ordering::SeqCst))
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
