//! The seam where containix prepares a bundle before runc sees it.
//!
//! The shim calls [`ContainixStep::prepare`] in Task.Create after the rootfs is mounted and
//! before `runc create`, and [`ContainixStep::cleanup`] when the container is deleted (or
//! its creation failed after the step ran). Everything containix-specific (resolving the
//! flake, rooting the closure, rewriting `config.json`) lives behind this trait, in
//! containix-core; the shim itself stays a plain runc shim.

use std::{collections::HashMap, path::Path};

use async_trait::async_trait;

/// What the step did with a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// The bundle is left exactly as containerd wrote it (pause containers, containers
    /// without a containix source, containers listed in `containix.dev/passthrough`).
    Passthrough,
    /// The step rewrote the bundle (rootfs and `config.json`) for runc.
    #[allow(
        dead_code,
        reason = "returned by the containix-core step, not by the passthrough"
    )]
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
    async fn prepare(
        &self,
        bundle: &Path,
        container_id: &str,
        annotations: &HashMap<String, String>,
    ) -> Result<StepOutcome, StepError>;

    /// Releases what `prepare` set up for `container_id`. Idempotent: it is also called for
    /// containers the step passed through, and after a failed `prepare`.
    async fn cleanup(&self, container_id: &str) -> Result<(), StepError>;
}

/// The step used until containix-core's prepare lands: every container passes through.
#[derive(Debug, Default, Clone, Copy)]
pub struct Passthrough;

#[async_trait]
impl ContainixStep for Passthrough {
    async fn prepare(
        &self,
        _bundle: &Path,
        _container_id: &str,
        _annotations: &HashMap<String, String>,
    ) -> Result<StepOutcome, StepError> {
        Ok(StepOutcome::Passthrough)
    }

    async fn cleanup(&self, _container_id: &str) -> Result<(), StepError> {
        Ok(())
    }
}
