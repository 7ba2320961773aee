//! The detached worker: resolves one posted request, reports its progress on the board, keeps
//! the result held until every waiting pod has taken it, and stops when it is done, when no
//! pod has waited for its grace period, or at the resolution deadline. It runs in a process of
//! its own (the shim starts one, see `containerd-shim-containix-v1 containix-resolve`), so a
//! cancelled Task.Create or a killed shim does not stop it.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use super::board::InflightBoard;
use super::status::{InflightState, InflightStatus};
use crate::request::duration::millis;
use crate::resolve::known_roots::KnownRoots;
use crate::resolve::progress::ResolveProgress;
use crate::resolve::resolver::{Resolution, Resolver};

/// A boxed future, as [`ResultHolder`] returns them.
pub type HolderFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Keeps a finished resolution's closure for the pods that wait for it (the node's store views
/// do), under a consumer name of the worker's, until the worker lets it go.
pub trait ResultHolder: Send + Sync {
    /// Holds the closure of `resolution` for `consumer`; an error is a message for the pods.
    fn hold<'a>(
        &'a self,
        resolution: Resolution,
        consumer: &'a str,
    ) -> HolderFuture<'a, Result<KnownRoots, String>>;

    /// Lets go of what `consumer` held.
    fn release<'a>(&'a self, consumer: &'a str) -> HolderFuture<'a, Result<(), String>>;
}

/// How long a worker waits for pods.
#[derive(Debug, Clone, Copy)]
pub struct WorkerTimes {
    /// How long a resolution nobody waits for goes on (a deleted pod is often replaced at once).
    pub grace: Duration,
    /// How long a finished result waits for the pods that asked (a kubelet retries a failed
    /// start after a back-off of up to five minutes).
    pub hand_over: Duration,
    /// How long a failure stays on the board for the pods that wait.
    pub failure_linger: Duration,
    /// How often the worker writes its status and looks for waiters.
    pub tick: Duration,
}

impl Default for WorkerTimes {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(30),
            hand_over: Duration::from_secs(600),
            failure_linger: Duration::from_secs(5),
            tick: Duration::from_millis(250),
        }
    }
}

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEnd {
    /// Another worker holds the key.
    AlreadyRunning,
    /// Resolved and handed over (or no pod came for it within the hand-over time).
    Done,
    /// Failed; the message was on the board for the waiting pods.
    Failed(String),
    /// No pod waited for it for the grace period: cancelled.
    Abandoned,
}

/// The consumer name a worker holds its result under.
pub fn holder_consumer(key: &str) -> String {
    format!("inflight-{key}")
}

/// Runs the worker of `key`, resolving with `resolver` and holding the result with `holder`.
/// Leaves nothing on the board when it returns: no status, lock, request or waiter files.
pub async fn run_worker(
    board: &InflightBoard,
    key: &str,
    resolver: &Resolver,
    holder: &dyn ResultHolder,
    times: WorkerTimes,
) -> std::io::Result<WorkerEnd> {
    let Some(lock) = board.lock_worker(key)? else {
        return Ok(WorkerEnd::AlreadyRunning);
    };
    let work = board.request(key)?;
    let Some(request) = work.as_ref().and_then(|work| work.to_request()) else {
        board.remove(key)?;
        return Ok(WorkerEnd::Failed(
            "the posted request is missing or unreadable".into(),
        ));
    };
    let work = work.unwrap_or_else(|| unreachable!("checked above"));
    let mut status = InflightStatus::running(work.describe(), now_ms());
    board.write_status(key, &status)?;
    tracing::info!(key, request = %status.request, "detached resolution started");

    let started = Instant::now();
    let (progress_tx, progress) = watch::channel(ResolveProgress::default());
    let resolve = resolver.resolve_with_progress(&request, &progress_tx);
    tokio::pin!(resolve);
    let mut ticker = tokio::time::interval(times.tick);
    let mut alone_since: Option<Instant> = None;
    let result = loop {
        tokio::select! {
            result = &mut resolve => break Some(result),
            _ = ticker.tick() => {
                status.update(&progress.borrow(), now_ms());
                board.write_status(key, &status)?;
                if board.waiters(key).is_empty() {
                    let since = *alone_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= times.grace {
                        break None;
                    }
                } else {
                    alone_since = None;
                }
            }
        }
    };
    let end = match result {
        // Dropping the resolution closes its daemon connection, which stops its build.
        None => {
            tracing::info!(key, "no pod waits for the resolution any more; cancelled");
            WorkerEnd::Abandoned
        }
        Some(Err(error)) => fail(board, key, &mut status, error.to_string(), times).await?,
        Some(Ok(resolution)) => {
            let resolved_in = started.elapsed();
            let consumer = holder_consumer(key);
            match holder.hold(resolution, &consumer).await {
                Err(message) => fail(board, key, &mut status, message, times).await?,
                Ok(known) => {
                    status.state = InflightState::Done;
                    status.step = None;
                    status.step_short = None;
                    status.result = Some(known.into());
                    status.updated_ms = now_ms();
                    board.write_status(key, &status)?;
                    tracing::info!(
                        key,
                        resolve_ms = millis(resolved_in),
                        hold_ms = millis(started.elapsed() - resolved_in),
                        "detached resolution done; handing over"
                    );
                    hand_over(board, key, times).await;
                    // Off the board first: a pod that posts from now on starts a new
                    // resolution instead of reading a result whose view may be going.
                    board.remove(key)?;
                    if let Err(message) = holder.release(&consumer).await {
                        tracing::warn!(key, %message, "releasing the held result");
                    }
                    drop(lock);
                    return Ok(WorkerEnd::Done);
                }
            }
        }
    };
    board.remove(key)?;
    drop(lock);
    Ok(end)
}

/// Puts the failure on the board for the waiting pods, for a little while.
async fn fail(
    board: &InflightBoard,
    key: &str,
    status: &mut InflightStatus,
    message: String,
    times: WorkerTimes,
) -> std::io::Result<WorkerEnd> {
    tracing::warn!(key, %message, "detached resolution failed");
    status.state = InflightState::Failed;
    status.error = Some(message.clone());
    status.updated_ms = now_ms();
    board.write_status(key, status)?;
    let until = Instant::now() + times.failure_linger;
    while Instant::now() < until && !board.waiters(key).is_empty() {
        tokio::time::sleep(times.tick).await;
    }
    Ok(WorkerEnd::Failed(message))
}

/// Waits until every waiting pod has taken the result (each withdraws once it has its view),
/// or no pod has waited for the grace period, or the hand-over time is up.
async fn hand_over(board: &InflightBoard, key: &str, times: WorkerTimes) {
    let until = Instant::now() + times.hand_over;
    let mut alone_since: Option<Instant> = None;
    while Instant::now() < until {
        if board.waiters(key).is_empty() {
            // A pod that has its view withdraws; none left means none needs the hold.
            let since = *alone_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= times.tick {
                return;
            }
        } else {
            alone_since = None;
        }
        tokio::time::sleep(times.tick).await;
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
