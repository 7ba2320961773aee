//! Starting the detached worker of a posted resolution, and running one: the worker resolves
//! with the node policy's resolver and holds the result as a store view
//! ([`crate::resolve::inflight`] has the protocol).

use std::io;

use crate::assemble::view::registry::StoreViews;
use crate::request::policy::NodePolicy;
use crate::resolve::inflight::board::InflightBoard;
use crate::resolve::inflight::worker::{WorkerEnd, WorkerTimes, run_worker};
use crate::resolve::resolver::Resolver;
use crate::store::gc_roots::GcRoots;

/// Starts the worker of a posted key, so that it outlives the request that started it.
pub trait WorkerSpawner: Send + Sync {
    /// Starts the worker of `key`; returns once it is started, not once it is done.
    fn spawn(&self, key: &str) -> io::Result<()>;
}

/// Runs workers as tasks of this process's tokio runtime: they live as long as the process
/// (right for the CLI and tests; the shim starts them as processes of their own).
#[derive(Debug, Clone)]
pub struct InProcessSpawner {
    resolver: Resolver,
}

impl InProcessSpawner {
    /// Workers that resolve with `resolver`.
    pub fn new(resolver: Resolver) -> Self {
        Self { resolver }
    }
}

impl WorkerSpawner for InProcessSpawner {
    fn spawn(&self, key: &str) -> io::Result<()> {
        let resolver = self.resolver.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            if let Err(err) = run_detached(&resolver, &key).await {
                tracing::warn!(key, %err, "detached resolution worker");
            }
        });
        Ok(())
    }
}

/// Runs the worker of `key` under `resolver`'s policy: resolving, holding the result as a store
/// view, handing it over to the waiting pods.
pub async fn run_detached(resolver: &Resolver, key: &str) -> io::Result<WorkerEnd> {
    let policy = resolver.policy();
    let board = InflightBoard::new(&policy.state_dir);
    let views = StoreViews::new(
        policy.view_dir(),
        GcRoots::new(&policy.state_dir),
        policy.store_view,
    );
    let times = WorkerTimes {
        grace: policy.resolution_grace,
        ..WorkerTimes::default()
    };
    run_worker(&board, key, resolver, &views, times).await
}

/// [`run_detached`] with `policy`'s own resolver: what a worker process runs.
pub async fn run_detached_with_policy(policy: NodePolicy, key: &str) -> io::Result<WorkerEnd> {
    run_detached(&Resolver::new(policy), key).await
}
