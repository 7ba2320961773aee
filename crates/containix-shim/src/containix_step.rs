//! The seam where containix prepares a bundle before runc sees it.
//!
//! The shim calls [`ContainixStep::prepare`] in Task.Create after the rootfs is mounted and
//! before `runc create`, and [`ContainixStep::cleanup`] when the container is deleted (or
//! its creation failed after the step ran). Everything containix-specific (resolving the
//! flake, rooting the closure, rewriting `config.json`) lives behind this trait, in
//! containix-core; the shim itself stays a plain runc shim.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use containix_core::assemble::container_step::{
    ContainerStep, Decision, Outcome, decide, read_annotations,
};
use containix_core::assemble::plan::EnvEdit;
use containix_core::assemble::plan::env::apply_env;
use containix_core::request::policy::NodePolicy;
use containix_core::resolve::Resolver;
use containix_core::resolve::inflight::board::InflightBoard;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::reaper::ReaperAwareRunner;
use crate::resolve_worker::ProcessSpawner;

/// What the step did with a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// The bundle is left exactly as containerd wrote it (pause containers, containers
    /// without a containix source, containers listed in `containix.dev/passthrough`).
    Passthrough,
    /// The step rewrote the bundle (rootfs and `config.json`) for runc.
    Prepared,
}

/// Why the step failed; the shim reports it to containerd as `containix: <message>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    message: String,
}

impl StepError {
    /// An error whose message names what failed and what was expected.
    pub fn new(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
        }
    }
}

/// The containix hook of Task.Create and Task.Delete.
#[async_trait]
pub trait ContainixStep: Send + Sync + 'static {
    /// Prepares `bundle` for container `container_id`, whose OCI spec carries `annotations`.
    ///
    /// Must leave nothing behind when it fails.
    /// It answers by `deadline` (the caller's, from ttrpc) when there is one: a resolution
    /// still running then goes on without it.
    async fn prepare(
        &self,
        bundle: &Path,
        container_id: &str,
        annotations: &HashMap<String, String>,
        deadline: Option<Instant>,
    ) -> Result<StepOutcome, StepError>;

    /// Releases what `prepare` set up for `container_id`. Idempotent: it is also called for
    /// containers the step passed through, and after a failed `prepare`.
    async fn cleanup(&self, container_id: &str) -> Result<(), StepError>;

    /// Edits the environment of a process exec'd in `container_id` the way `prepare` edited
    /// the container's own (the closure's `bin` dirs on `PATH`, CA bundle variables).
    fn exec_env(&self, _container_id: &str, _env: &mut Vec<String>) {}

    /// Removes what an earlier process left half done (a store view it was making when it was
    /// killed, views whose users are gone after a reboot). Runs once when the shim starts
    /// serving.
    async fn sweep(&self) {}
}

/// The real step: containix-core's [`ContainerStep`] under the node policy.
///
/// The policy is loaded once, when the shim starts. If it cannot be loaded, containers without
/// containix annotations (the pause container, plain sidecars) still run, and containix
/// containers fail with the policy's error.
pub struct CoreStep {
    step: Result<ContainerStep, String>,
    /// The environment edits of each prepared container, for its execs.
    exec_env: Mutex<HashMap<String, Vec<EnvEdit>>>,
}

impl CoreStep {
    /// Loads the node policy (`CONTAINIX_CONFIG`, else `/etc/containix/policy.toml`, else the
    /// old `/etc/containix/config.toml`).
    pub fn from_environment() -> Self {
        let step = NodePolicy::load()
            .map_err(|err| err.to_string())
            .and_then(|policy| {
                let board = InflightBoard::new(&policy.state_dir);
                let spawner = ProcessSpawner::new(board)
                    .map_err(|err| format!("finding the shim's own binary: {err}"))?;
                let resolver =
                    Resolver::new(policy).with_process_runner(Arc::new(ReaperAwareRunner));
                Ok(ContainerStep::with_resolver(resolver).with_spawner(Arc::new(spawner)))
            });
        if let Err(message) = &step {
            warn!("containix: {message}; containix containers will fail until it is fixed");
        }
        CoreStep {
            step,
            exec_env: Mutex::default(),
        }
    }
}

#[async_trait]
impl ContainixStep for CoreStep {
    async fn prepare(
        &self,
        bundle: &Path,
        container_id: &str,
        _annotations: &HashMap<String, String>,
        deadline: Option<Instant>,
    ) -> Result<StepOutcome, StepError> {
        let step = match &self.step {
            Ok(step) => step,
            Err(policy_error) => {
                let annotations = read_annotations(&bundle.join("config.json"))
                    .map_err(|err| StepError::new(err.to_string()))?;
                return match decide(&annotations) {
                    Ok(Decision::Passthrough(_)) => Ok(StepOutcome::Passthrough),
                    _ => Err(StepError::new(policy_error.clone())),
                };
            }
        };
        match step.prepare_until(container_id, bundle, deadline).await {
            Ok(Outcome::Passthrough(reason)) => {
                info!(
                    "containix: {container_id} runs untouched ({})",
                    reason.describe()
                );
                Ok(StepOutcome::Passthrough)
            }
            Ok(Outcome::Prepared(prepared)) => {
                // containix-core logged what was prepared and how long each stage took.
                self.exec_env
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(container_id.to_owned(), prepared.plan.env.clone());
                Ok(StepOutcome::Prepared)
            }
            Err(err) => Err(StepError::new(err.to_string())),
        }
    }

    async fn cleanup(&self, container_id: &str) -> Result<(), StepError> {
        self.exec_env
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(container_id);
        match &self.step {
            Ok(step) => step
                .cleanup(container_id)
                .await
                .map_err(|err| StepError::new(err.to_string())),
            Err(_) => Ok(()),
        }
    }

    async fn sweep(&self) {
        let Ok(step) = &self.step else {
            return;
        };
        match step.sweep_containers().await {
            Ok(removed) if !removed.is_empty() => {
                info!("containix: cleaned up after containers of an earlier boot {removed:?}")
            }
            Ok(_) => {}
            Err(err) => warn!("containix: sweeping containers of an earlier boot: {err}"),
        }
        match step.board().sweep() {
            Ok(removed) if !removed.is_empty() => {
                info!("containix: removed abandoned in-flight resolutions {removed:?}")
            }
            Ok(_) => {}
            Err(err) => warn!("containix: sweeping in-flight resolutions: {err}"),
        }
        match step.views().sweep().await {
            Ok(report) if !report.removed.is_empty() => {
                info!("containix: removed unused store views {:?}", report.removed)
            }
            Ok(_) => {}
            Err(err) => warn!("containix: sweeping store views: {err}"),
        }
    }

    fn exec_env(&self, container_id: &str, env: &mut Vec<String>) {
        if let Some(edits) = self
            .exec_env
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(container_id)
        {
            apply_env(edits, env);
        }
    }
}
