//! A detached resolution's result held as a store view: the worker takes the view under its
//! own consumer name, so the waiting pods find it made, and lets go once they have it.

use super::registry::StoreViews;
use crate::resolve::inflight::worker::{HolderFuture, ResultHolder};
use crate::resolve::known_roots::KnownRoots;
use crate::resolve::resolver::Resolution;

impl ResultHolder for StoreViews {
    fn hold<'a>(
        &'a self,
        resolution: Resolution,
        consumer: &'a str,
    ) -> HolderFuture<'a, Result<KnownRoots, String>> {
        Box::pin(async move {
            let (_, resolved) = self
                .acquire(resolution, consumer)
                .await
                .map_err(|err| err.to_string())?;
            Ok(KnownRoots {
                roots: resolved.roots,
                main_program: resolved.main_program,
                package_name: resolved.package_name,
                package_version: resolved.package_version,
            })
        })
    }

    fn release<'a>(&'a self, consumer: &'a str) -> HolderFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.release(consumer)
                .await
                .map(drop)
                .map_err(|err| err.to_string())
        })
    }
}
