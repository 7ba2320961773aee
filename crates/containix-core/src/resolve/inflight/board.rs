//! The node's board of detached resolutions, one directory per key under
//! `<state-dir>/inflight/`:
//!
//! - `request.json`: the [`WorkRequest`], written by the first shim that asks;
//! - `worker.lock`: held (`flock`) by the worker for its whole life, so "is a worker running"
//!   is one non-blocking lock attempt, and a second worker for the same key gives up;
//! - `status.json`: the worker's [`InflightStatus`], rewritten as it goes;
//! - `waiters/<pod>`: one empty file per pod that wants the result. A pod's file stays while
//!   the kubelet retries, and goes when the pod has its container or is deleted; a worker with
//!   no waiter for its grace period stops.
//!
//! The board lives as long as the boot: its files are written whole but not synced to disk.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use tokio::time::Instant;

use super::status::{InflightResult, InflightState, InflightStatus};
use super::work_request::WorkRequest;
use crate::state_file::{read_json, write_atomically_for_this_boot};

const REQUEST_FILE: &str = "request.json";
const STATUS_FILE: &str = "status.json";
const LOCK_FILE: &str = "worker.lock";
const WAITERS_DIR: &str = "waiters";

/// How often a waiting shim reads the status once the resolution has taken
/// [`QUICK_WAIT`]: a build of minutes does not need its end seen sooner.
const WAIT_POLL: Duration = Duration::from_millis(100);
/// How often it reads the status at most before then: a resolution that makes the view of a
/// closure of thousands of paths ends in under a second, and a longer poll would add most of
/// its interval to the pod's start.
const QUICK_WAIT_POLL: Duration = Duration::from_millis(10);
/// How long a wait counts as quick.
const QUICK_WAIT: Duration = Duration::from_secs(10);
/// The first wait between two reads of the status, doubling up to the above: a resolution of
/// a few milliseconds (a closure already in the store) is not made to wait for a whole poll.
const FIRST_WAIT_POLL: Duration = Duration::from_millis(1);

/// The detached resolutions of one node.
#[derive(Debug, Clone)]
pub struct InflightBoard {
    dir: PathBuf,
}

/// One resolution on the board, for `containix status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InflightEntry {
    /// Its key.
    pub key: String,
    /// What it resolves.
    pub request: Option<WorkRequest>,
    /// Its latest status, if the worker wrote one.
    pub status: Option<InflightStatus>,
    /// The pods waiting for it.
    pub waiters: Vec<String>,
    /// Whether a worker holds it.
    pub worker_running: bool,
}

/// What a waiting shim learns before its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The closure is valid and held for the waiters.
    Done(InflightResult),
    /// The resolution failed.
    Failed(String),
    /// Still running at the deadline; the latest status, if any.
    Pending(Option<InflightStatus>),
    /// No worker holds the key and none finished it: one must be started.
    NoWorker,
}

/// The worker's hold on a key.
#[derive(Debug)]
pub struct WorkerLock {
    _lock: Flock<File>,
}

impl InflightBoard {
    /// The board under `<state_dir>/inflight`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("inflight"),
        }
    }

    /// The directory of `key`.
    pub fn work_dir(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Posts `work` for `pod`: its directory and request exist afterwards, and `pod` waits for
    /// it. Returns the key.
    ///
    /// When it fails (a full disk), a directory this call created is removed again, so no
    /// request is left that no pod waits for.
    pub fn post(&self, work: &WorkRequest, pod: &str) -> io::Result<String> {
        let key = work.key();
        let dir = self.work_dir(&key);
        let mut attempts = 0;
        loop {
            let created = !dir.exists();
            match self.post_once(&dir, work, pod) {
                Ok(()) => return Ok(key),
                // A worker that just finished removed the directory meanwhile: post afresh.
                Err(err) if err.kind() == io::ErrorKind::NotFound && attempts < 10 => {
                    attempts += 1;
                }
                Err(err) => {
                    // Leave nothing behind (a full state dir): a directory made here, with no
                    // waiter in it, goes again.
                    if created && self.waiters(&key).is_empty() {
                        let _ = self.remove(&key);
                    }
                    return Err(err);
                }
            }
        }
    }

    fn post_once(&self, dir: &Path, work: &WorkRequest, pod: &str) -> io::Result<()> {
        fs::create_dir_all(dir.join(WAITERS_DIR))?;
        if !dir.join(REQUEST_FILE).exists() {
            let json = serde_json::to_vec_pretty(work).map_err(io::Error::other)?;
            write_atomically_for_this_boot(&dir.join(REQUEST_FILE), &json)?;
        }
        File::create(dir.join(WAITERS_DIR).join(file_name(pod)))?;
        Ok(())
    }

    /// `pod` no longer waits for `key`.
    pub fn withdraw(&self, key: &str, pod: &str) -> io::Result<()> {
        remove_if_present(&self.work_dir(key).join(WAITERS_DIR).join(file_name(pod)))
    }

    /// `pod` is gone: it waits for nothing any more.
    pub fn forget_pod(&self, pod: &str) -> io::Result<()> {
        for key in self.keys()? {
            self.withdraw(&key, pod)?;
        }
        Ok(())
    }

    /// The pods waiting for `key`.
    pub fn waiters(&self, key: &str) -> Vec<String> {
        let mut pods: Vec<String> = fs::read_dir(self.work_dir(key).join(WAITERS_DIR))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect();
        pods.sort();
        pods
    }

    /// The request posted under `key`.
    pub fn request(&self, key: &str) -> io::Result<Option<WorkRequest>> {
        read_json(&self.work_dir(key).join(REQUEST_FILE))
    }

    /// The worker's latest status for `key`.
    pub fn status(&self, key: &str) -> Option<InflightStatus> {
        read_json(&self.work_dir(key).join(STATUS_FILE))
            .ok()
            .flatten()
    }

    /// Writes `key`'s status (the worker does).
    pub fn write_status(&self, key: &str, status: &InflightStatus) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(status).map_err(io::Error::other)?;
        write_atomically_for_this_boot(&self.work_dir(key).join(STATUS_FILE), &json)
    }

    /// Takes the worker lock of `key`; `None` when another worker holds it.
    pub fn lock_worker(&self, key: &str) -> io::Result<Option<WorkerLock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.work_dir(key).join(LOCK_FILE))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(WorkerLock { _lock: lock })),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(errno.into()),
        }
    }

    /// Whether a worker holds `key`.
    pub fn worker_running(&self, key: &str) -> bool {
        if !self.work_dir(key).join(LOCK_FILE).exists() {
            return false;
        }
        matches!(self.lock_worker(key), Ok(None))
    }

    /// Waits until `key`'s resolution is done or failed, or `deadline` comes.
    pub async fn wait(&self, key: &str, deadline: Instant) -> WaitOutcome {
        let started = Instant::now();
        let mut poll = FIRST_WAIT_POLL;
        loop {
            // The worker writes its last status before it lets go of the lock: read the lock
            // first, so a finished worker's status is seen.
            let running = self.worker_running(key);
            let status = self.status(key);
            if let Some(outcome) = status.as_ref().and_then(finished) {
                return outcome;
            }
            if !running {
                return WaitOutcome::NoWorker;
            }
            let now = Instant::now();
            if now >= deadline {
                return WaitOutcome::Pending(status);
            }
            tokio::time::sleep_until((now + poll).min(deadline)).await;
            poll = (poll * 2).min(wait_poll(now - started));
        }
    }

    /// Removes `key`'s directory (the worker does, last).
    pub fn remove(&self, key: &str) -> io::Result<()> {
        match fs::remove_dir_all(self.work_dir(key)) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    /// Removes the directories no worker holds and no pod waits for (left by a worker that was
    /// killed). Returns their keys.
    pub fn sweep(&self) -> io::Result<Vec<String>> {
        let mut removed = Vec::new();
        for key in self.keys()? {
            if self.waiters(&key).is_empty()
                && let Some(lock) = self.lock_worker(&key)?
            {
                self.remove(&key)?;
                drop(lock);
                removed.push(key);
            }
        }
        Ok(removed)
    }

    /// Every resolution on the board.
    pub fn list(&self) -> io::Result<Vec<InflightEntry>> {
        self.keys()?
            .into_iter()
            .map(|key| {
                Ok(InflightEntry {
                    request: self.request(&key).unwrap_or(None),
                    status: self.status(&key),
                    waiters: self.waiters(&key),
                    worker_running: self.worker_running(&key),
                    key,
                })
            })
            .collect()
    }

    fn keys(&self) -> io::Result<Vec<String>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let mut keys: Vec<String> = entries
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        keys.sort();
        Ok(keys)
    }
}

/// The outcome a finished status tells, if it is finished.
fn finished(status: &InflightStatus) -> Option<WaitOutcome> {
    match status.state {
        InflightState::Running => None,
        InflightState::Done => status.result.clone().map(WaitOutcome::Done),
        InflightState::Failed => Some(WaitOutcome::Failed(
            status.error.clone().unwrap_or_default(),
        )),
    }
}

/// A pod id as a file name: ids are hex or `namespace_name` forms; anything else is hashed.
fn file_name(pod: &str) -> String {
    let safe = !pod.is_empty()
        && pod.len() <= 128
        && !pod.starts_with('.')
        && pod
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@+=".contains(&b));
    if safe {
        pod.to_owned()
    } else {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(pod.as_bytes());
        format!(
            "pod-{}",
            digest[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// The longest wait between two reads of a status, after `waited`.
fn wait_poll(waited: Duration) -> Duration {
    if waited < QUICK_WAIT {
        QUICK_WAIT_POLL
    } else {
        WAIT_POLL
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::inflight::work_request::WorkSource;

    #[test]
    fn a_wait_reads_often_at_first_and_seldom_in_a_long_build() {
        assert_eq!(wait_poll(Duration::ZERO), QUICK_WAIT_POLL);
        assert_eq!(
            wait_poll(QUICK_WAIT - Duration::from_millis(1)),
            QUICK_WAIT_POLL
        );
        assert_eq!(wait_poll(QUICK_WAIT), WAIT_POLL);
        assert_eq!(wait_poll(Duration::from_secs(600)), WAIT_POLL);
    }

    fn work() -> WorkRequest {
        WorkRequest {
            container: "app".into(),
            source: WorkSource::Flake("github:org/app#default".into()),
            namespace: None,
            system: "x86_64-linux".into(),
            timeout_secs: None,
        }
    }

    #[tokio::test]
    async fn waiters_come_and_go_and_a_missing_worker_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let board = InflightBoard::new(dir.path());
        let key = board.post(&work(), "pod-a").unwrap();
        assert_eq!(board.post(&work(), "../../etc").unwrap(), key);
        assert_eq!(board.waiters(&key).len(), 2);
        assert!(board.waiters(&key).iter().all(|w| !w.contains('/')));
        assert_eq!(board.request(&key).unwrap(), Some(work()));
        assert!(!board.worker_running(&key));
        let now = Instant::now();
        assert_eq!(board.wait(&key, now).await, WaitOutcome::NoWorker);

        let lock = board.lock_worker(&key).unwrap().unwrap();
        assert!(board.worker_running(&key));
        assert!(
            board.lock_worker(&key).unwrap().is_none(),
            "one worker per key"
        );
        let mut status = InflightStatus::running("x".into(), 0);
        board.write_status(&key, &status).unwrap();
        let pending = board
            .wait(&key, Instant::now() + Duration::from_millis(50))
            .await;
        assert!(
            matches!(pending, WaitOutcome::Pending(Some(_))),
            "{pending:?}"
        );
        status.state = InflightState::Failed;
        status.error = Some("no".into());
        board.write_status(&key, &status).unwrap();
        assert_eq!(
            board
                .wait(&key, Instant::now() + Duration::from_secs(5))
                .await,
            WaitOutcome::Failed("no".into())
        );

        board.forget_pod("pod-a").unwrap();
        assert_eq!(board.waiters(&key).len(), 1);
        assert_eq!(
            board.sweep().unwrap(),
            Vec::<String>::new(),
            "a pod still waits"
        );
        board.forget_pod("../../etc").unwrap();
        assert_eq!(
            board.sweep().unwrap(),
            Vec::<String>::new(),
            "the worker holds it"
        );
        drop(lock);
        assert_eq!(board.sweep().unwrap(), [key]);
        assert_eq!(
            fs::read_dir(dir.path().join("inflight")).unwrap().count(),
            0
        );
    }
}
