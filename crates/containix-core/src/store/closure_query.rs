//! Closure resolution over the daemon protocol: the roots and everything they reference.
//!
//! The daemon has no closure operation, so the walk queries path infos breadth-first, one
//! pipelined batch per level: the cost is one round trip per level of the reference graph,
//! not one per path.

use std::collections::BTreeSet;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::store::closure::{Closure, ClosureError};
use crate::store::daemon::{client::DaemonClient, error::DaemonError};
use crate::store::path_info::PathInfo;
use crate::store::store_path::StorePath;

/// Why a closure could not be resolved.
#[derive(Debug, Error)]
pub enum ClosureQueryError {
    /// A root is not valid in the store.
    #[error("closure root {0} is not valid in the Nix store")]
    InvalidRoot(StorePath),
    /// A valid path refers to one the store says is not valid: the store is inconsistent.
    #[error("{referrer} refers to {missing}, which is not valid in the Nix store")]
    InvalidReference {
        /// The path holding the reference.
        referrer: StorePath,
        /// The path that is not valid.
        missing: StorePath,
    },
    /// Talking to the daemon failed.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// The infos do not form a closure (should not happen after a complete walk).
    #[error(transparent)]
    Closure(#[from] ClosureError),
}

/// Resolves the closure of `roots`: every path reachable through references, with its path
/// info. The result is deterministic (members in store-path order, roots in the order given).
pub async fn query_closure<S>(
    client: &mut DaemonClient<S>,
    roots: &[StorePath],
) -> Result<Closure, ClosureQueryError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut seen: BTreeSet<StorePath> = roots.iter().cloned().collect();
    let mut level: Vec<StorePath> = seen.iter().cloned().collect();
    let mut infos: Vec<PathInfo> = Vec::new();
    let mut referrers: std::collections::BTreeMap<StorePath, StorePath> = Default::default();
    let mut depth = 0usize;
    while !level.is_empty() {
        tracing::debug!(depth, paths = level.len(), "querying closure level");
        let replies = client.query_path_infos(&level).await?;
        let mut next = BTreeSet::new();
        for (path, reply) in level.into_iter().zip(replies) {
            let Some(info) = reply else {
                return Err(match referrers.remove(&path) {
                    None => ClosureQueryError::InvalidRoot(path),
                    Some(referrer) => ClosureQueryError::InvalidReference {
                        referrer,
                        missing: path,
                    },
                });
            };
            for reference in &info.references {
                if seen.insert(reference.clone()) {
                    referrers.insert(reference.clone(), path.clone());
                    next.insert(reference.clone());
                }
            }
            infos.push(info);
        }
        level = next.into_iter().collect();
        depth += 1;
    }
    Ok(Closure::new(roots.to_vec(), infos)?)
}
