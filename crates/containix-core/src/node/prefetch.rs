//! Warming a node before its pods land: resolving closures ahead of time (substituting or
//! building them as the node policy allows) and keeping their store views for a while, so that a
//! pod of one of them starts with no build and no substitution (and, for store paths and locked
//! flakes, no daemon round trip at all).

use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::sync::watch;

use crate::assemble::view::error::ViewError;
use crate::assemble::view::record::UserLease;
use crate::assemble::view::registry::{StoreViews, View};
use crate::request::container_request::Request;
use crate::resolve::error::ResolveError;
use crate::resolve::inflight::work_request::WorkRequest;
use crate::resolve::progress::ResolveProgress;
use crate::resolve::resolved::Resolved;
use crate::resolve::resolver::Resolver;
use crate::store::gc_roots::GcRoots;

/// Why a closure could not be prefetched or released.
#[derive(Debug, Error)]
pub enum PrefetchError {
    /// Resolving it failed.
    #[error(transparent)]
    Resolve(#[from] Box<ResolveError>),
    /// Its store view could not be made, kept or let go.
    #[error(transparent)]
    View(#[from] Box<ViewError>),
}

/// A prefetched closure, held until `until`.
#[derive(Debug, Clone)]
pub struct PrefetchHold {
    /// The name its view knows the hold by (`prefetch-<key>`).
    pub consumer: String,
    /// The view.
    pub view: View,
    /// What it resolved to.
    pub resolved: Resolved,
    /// Until when it is kept, in seconds since the epoch.
    pub until: u64,
}

/// Prefetches under one node policy.
#[derive(Debug, Clone)]
pub struct Prefetcher {
    resolver: Resolver,
    views: StoreViews,
}

impl Prefetcher {
    /// A prefetcher resolving with `resolver`, into the store views of its policy.
    pub fn new(resolver: Resolver) -> Self {
        let policy = resolver.policy();
        let views = StoreViews::new(
            policy.view_dir(),
            GcRoots::new(&policy.state_dir),
            policy.store_view,
        );
        Self { resolver, views }
    }

    /// The name a prefetch of `request` holds its view by: the same for the same request, so
    /// prefetching again renews the hold and releasing finds it.
    pub fn consumer(&self, request: &Request) -> String {
        let work = WorkRequest::of(request, &self.resolver.policy().system);
        format!("prefetch-{}", work.key())
    }

    /// Resolves `request` and keeps its store view for `keep` from now (renewing an earlier
    /// hold), reporting progress on `progress`.
    pub async fn prefetch(
        &self,
        request: &Request,
        keep: Duration,
        progress: &watch::Sender<ResolveProgress>,
    ) -> Result<PrefetchHold, PrefetchError> {
        let resolution = self
            .resolver
            .resolve_with_progress(request, progress)
            .await
            .map_err(Box::new)?;
        let consumer = self.consumer(request);
        let until = SystemTime::now()
            .checked_add(keep)
            .unwrap_or(SystemTime::now())
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (view, resolved) = self
            .views
            .acquire_for(resolution, &consumer, UserLease::Until(until))
            .await
            .map_err(Box::new)?;
        Ok(PrefetchHold {
            consumer,
            view,
            resolved,
            until,
        })
    }

    /// Lets go of the prefetch of `request`; its view goes if nothing else uses it. Returns
    /// whether there was a hold.
    pub async fn release(&self, request: &Request) -> Result<bool, PrefetchError> {
        let released = self
            .views
            .release(&self.consumer(request))
            .await
            .map_err(Box::new)?;
        Ok(released > 0)
    }

    /// Removes expired holds (and views nobody uses any more), as every shim does at start.
    pub async fn sweep(&self) -> Result<(), PrefetchError> {
        self.views.sweep().await.map(drop).map_err(Box::new)?;
        Ok(())
    }
}
