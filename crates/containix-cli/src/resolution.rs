//! Resolving a request to a closure for the CLI: the node's resolver
//! ([`containix_core::resolve::Resolver`]) under the CLI's policy ([`crate::cli_policy`]:
//! local flake refs allowed, evaluation cache in the user's cache directory), with its progress
//! on stderr and its errors worded for a command line.

use anyhow::{Result, anyhow};
use containix_core::request::container_request::Request;
use containix_core::request::policy::NodePolicy;
use containix_core::resolve::{ResolveError, ResolveProgress, Resolver};
use tokio::sync::watch;

pub use containix_core::resolve::Resolution;

use crate::progress::Reporter;
use crate::source::CLI_CONTAINER;

/// Resolves `request` under `policy` (and the policy's deadline, or `--timeout`), reporting the
/// running step and the daemon's progress to `reporter`. The returned resolution's connection
/// keeps the closure in the store until it is dropped or held.
pub async fn resolve(
    request: &Request,
    policy: &NodePolicy,
    reporter: &'static Reporter,
) -> Result<Resolution> {
    let resolver = Resolver::new(policy.clone());
    let (progress, watched) = watch::channel(ResolveProgress::default());
    let watch = reporter.watch_resolution(watched);
    let result = resolver.resolve_with_progress(request, &progress).await;
    drop(watch);
    reporter.finish();
    result.map_err(|err| anyhow!(describe(&err)))
}

/// The error's message for the command line: without the `container cli: ` prefix when the
/// request came from arguments rather than annotations, and with a hint when the deadline passed.
fn describe(err: &ResolveError) -> String {
    let text = err.to_string();
    let prefix = format!("container {CLI_CONTAINER}: ");
    let text = match text.strip_prefix(&prefix) {
        Some(rest) if err.container() == CLI_CONTAINER => rest.to_owned(),
        _ => text,
    };
    if err.is_timeout() {
        format!("{text} (allow more time with --timeout, up to the node policy's max-timeout)")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use containix_core::resolve::Step;

    use super::*;

    fn timeout(container: &str) -> ResolveError {
        ResolveError::Timeout {
            container: container.into(),
            step: Step::Evaluating("github:o/r#x".into()),
            after: Duration::from_secs(5),
        }
    }

    #[test]
    fn cli_errors_drop_the_default_container_and_hint_at_timeout() {
        assert_eq!(
            describe(&timeout(CLI_CONTAINER)),
            "resolution did not finish within 5s; it was evaluating github:o/r#x (allow more \
             time with --timeout, up to the node policy's max-timeout)"
        );
        let named = describe(&timeout("app"));
        assert!(named.starts_with("container app: resolution"), "{named}");
        let empty = describe(&ResolveError::Empty {
            container: CLI_CONTAINER.into(),
        });
        assert_eq!(empty, "the request names no store path or package");
    }
}
