//! Making evaluated outputs and requested store paths valid over the daemon, each protected by
//! a temp root before it is realised.

use std::collections::BTreeSet;

use crate::request::flake_ref::FlakeInstallable;
use crate::request::policy::node_policy::Realise;
use crate::store::daemon::{
    client::DaemonClient, derived_path::DerivedPath, error::DaemonError, ops::BuildMode,
};
use crate::store::store_path::StorePath;

use super::cache::{CacheKey, CachedEvaluation};
use super::error::ResolveError;
use super::run::{Run, StepError};
use super::step::Step;

/// One evaluated installable to realise.
pub(super) struct Target {
    /// What was evaluated.
    pub(super) installable: FlakeInstallable,
    /// Its derivation and outputs.
    pub(super) evaluation: CachedEvaluation,
    /// The cache entry it came from or went to, for locked installables.
    pub(super) cached: Option<CacheKey>,
}

impl Target {
    /// The outputs, `out` first, then the others by name.
    pub(super) fn roots(&self) -> Vec<StorePath> {
        self.evaluation.roots()
    }
}

/// Makes the target's outputs valid as the policy allows. `Ok(false)` means its derivation is
/// no longer in the store, so it must be evaluated again.
pub(super) async fn realise_target(
    client: &mut DaemonClient,
    run: &Run<'_>,
    realise: Realise,
    target: &Target,
) -> Result<bool, ResolveError> {
    let outputs = target.roots();
    let drv = &target.evaluation.drv_path;
    match realise {
        Realise::Substitute => {
            protect(client, run, outputs.iter()).await?;
            for output in &outputs {
                substitute(client, run, output).await?;
            }
            Ok(true)
        }
        Realise::Build => {
            protect(client, run, outputs.iter().chain([drv])).await?;
            let step = Step::Building(vec![drv.clone()]);
            let valid = run
                .step(step.clone(), async {
                    Ok::<_, StepError>(client.query_valid_paths(&outputs, false).await?)
                })
                .await
                .map_err(|err| daemon_error(run, &step, err))?;
            if outputs.iter().all(|output| valid.contains(output)) {
                return Ok(true);
            }
            let drv_valid = run
                .step(step.clone(), async {
                    Ok::<_, StepError>(client.is_valid_path(drv).await?)
                })
                .await
                .map_err(|err| daemon_error(run, &step, err))?;
            if !drv_valid {
                return Ok(false);
            }
            build(client, run, target).await?;
            Ok(true)
        }
    }
}

/// Builds (substituting what the caches have) the target's outputs.
async fn build(
    client: &mut DaemonClient,
    run: &Run<'_>,
    target: &Target,
) -> Result<(), ResolveError> {
    let drv = target.evaluation.drv_path.clone();
    let step = Step::Building(vec![drv.clone()]);
    let wanted = DerivedPath::built(drv.clone(), target.evaluation.outputs.keys().cloned())
        .map_err(|err| {
            daemon_error(
                run,
                &step,
                StepError::Daemon(DaemonError::InvalidRequest(err.to_string())),
            )
        })?;
    let results = run
        .step(step.clone(), async {
            Ok::<_, StepError>(
                client
                    .build_paths_with_results(std::slice::from_ref(&wanted), BuildMode::Normal)
                    .await?,
            )
        })
        .await
        .map_err(|err| match err {
            StepError::Daemon(DaemonError::Daemon {
                message, log_tail, ..
            }) => ResolveError::Build {
                container: run.container.to_owned(),
                drv: drv.clone(),
                status: crate::store::daemon::build_result::BuildStatus::MiscFailure,
                message: with_log(message, &log_tail),
            },
            other => daemon_error(run, &step, other),
        })?;
    for (_, result) in results {
        if !result.status.is_success() {
            return Err(ResolveError::Build {
                container: run.container.to_owned(),
                drv,
                status: result.status,
                message: result.error_msg,
            });
        }
    }
    Ok(())
}

/// Registers each path as a temp root of this connection (valid or not yet), so that once it
/// is valid the garbage collector keeps it, and its closure, while the connection lives.
pub(super) async fn protect<'p>(
    client: &mut DaemonClient,
    run: &Run<'_>,
    paths: impl Iterator<Item = &'p StorePath>,
) -> Result<(), ResolveError> {
    let mut seen = BTreeSet::new();
    for path in paths.filter(|p| seen.insert(*p)) {
        let step = Step::Protecting(path.clone());
        run.step(step.clone(), async {
            Ok::<_, StepError>(client.add_temp_root(path).await?)
        })
        .await
        .map_err(|err| daemon_error(run, &step, err))?;
    }
    Ok(())
}

/// Makes `path` valid by substitution (`EnsurePath`); never builds.
pub(super) async fn substitute(
    client: &mut DaemonClient,
    run: &Run<'_>,
    path: &StorePath,
) -> Result<(), ResolveError> {
    let step = Step::Substituting(path.clone());
    run.step(step.clone(), async {
        Ok::<_, StepError>(client.ensure_path(path).await?)
    })
    .await
    .map_err(|err| match err {
        StepError::Daemon(DaemonError::Daemon {
            message, log_tail, ..
        }) => ResolveError::Substitute {
            container: run.container.to_owned(),
            path: path.clone(),
            message,
            log: log_tail,
        },
        other => daemon_error(run, &step, other),
    })
}

/// A daemon's build failure message followed by what it logged before, if anything.
fn with_log(message: String, log_tail: &[String]) -> String {
    if log_tail.is_empty() {
        message
    } else {
        format!(
            "{message} (earlier in the operation: {})",
            log_tail.join("; ")
        )
    }
}

fn daemon_error(run: &Run<'_>, step: &Step, err: StepError) -> ResolveError {
    match err {
        StepError::Daemon(source) => ResolveError::Daemon {
            container: run.container.to_owned(),
            step: step.clone(),
            source: Box::new(source),
        },
        StepError::Resolve(err) => err,
    }
}
