//! One running resolution: the container it is for, its deadline and its progress channel,
//! shared by the resolver and the realise steps.

use tokio::sync::watch;

use super::error::ResolveError;
use super::progress::ResolveProgress;
use super::step::{self, Deadline, Step};
use crate::store::daemon::error::DaemonError;

/// One running resolution: its container, deadline and progress channel.
pub(crate) struct Run<'a> {
    pub(crate) container: &'a str,
    pub(crate) deadline: Deadline,
    pub(crate) progress: Option<&'a watch::Sender<ResolveProgress>>,
}

/// An error inside a step: a daemon error the caller maps, or a finished resolve error.
pub(crate) enum StepError {
    Daemon(DaemonError),
    Resolve(ResolveError),
}

impl From<DaemonError> for StepError {
    fn from(err: DaemonError) -> Self {
        Self::Daemon(err)
    }
}

impl From<ResolveError> for StepError {
    fn from(err: ResolveError) -> Self {
        Self::Resolve(err)
    }
}

impl Run<'_> {
    pub(crate) fn set_step(&self, step: &Step) {
        if let Some(progress) = self.progress {
            progress.send_modify(|p| p.step = Some(step.clone()));
        }
    }

    pub(crate) fn timeout(&self, step: Step) -> ResolveError {
        ResolveError::Timeout {
            container: self.container.to_owned(),
            step,
            after: self.deadline.total(),
        }
    }

    /// Runs one step under the deadline.
    pub(crate) async fn step<T, E>(
        &self,
        step: Step,
        future: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E>
    where
        E: From<ResolveError>,
    {
        self.set_step(&step);
        match self.deadline.run(future).await {
            Ok(result) => result,
            Err(step::Expired) => Err(self.timeout(step).into()),
        }
    }
}
