//! Resolving a request to a closure for the CLI.
//!
//! Interim: until `containix_core::resolver::Resolver` lands, this evaluates flakes with
//! `flake_eval`, realises outputs through the daemon and walks the closure with
//! `closure_query`. [`resolve`] is the only entry point; swap its body for the resolver.

use anyhow::{Context, Result, anyhow, bail};
use containix_core::closure_query::query_closure;
use containix_core::daemon::{BuildMode, DaemonClient, DerivedPath};
use containix_core::flake_eval::{FlakeEvaluation, evaluate};
use containix_core::flake_ref::FlakeInstallable;
use containix_core::policy::NodePolicy;
use containix_core::request::{Request, Source};
use containix_core::resolved::Resolved;
use containix_core::sbom::parse_drv_name;
use containix_core::store_path::StorePath;

use crate::progress::Reporter;
use crate::source::{check_policy, deadline};

/// A resolved request and the daemon connection whose temporary GC roots keep its closure in
/// the store; keep it alive while the closure is in use.
pub struct Resolution {
    /// The roots, their closure and the program to run.
    pub resolved: Resolved,
    /// The connection holding the temporary roots.
    pub client: DaemonClient,
}

/// Resolves `request` under the policy's deadline, reporting daemon progress to `reporter`.
pub async fn resolve(
    request: &Request,
    policy: &NodePolicy,
    reporter: &'static Reporter,
) -> Result<Resolution> {
    let limit = deadline(request, policy);
    tokio::time::timeout(limit, resolve_inner(request, policy, reporter))
        .await
        .map_err(|_| {
            anyhow!(
                "resolving did not finish within {}s (raise it with --timeout, up to the \
                 policy's max-timeout)",
                limit.as_secs()
            )
        })?
}

async fn resolve_inner(
    request: &Request,
    policy: &NodePolicy,
    reporter: &'static Reporter,
) -> Result<Resolution> {
    let mut client = DaemonClient::connect(&policy.daemon_socket)
        .await
        .context("connecting to the Nix daemon")?;
    let watcher = reporter.watch_daemon(client.progress());
    let limit = deadline(request, policy);
    let (roots, facts) = match &request.source {
        Source::StorePaths(paths) => {
            for path in paths {
                client.ensure_path(path).await.with_context(|| {
                    format!(
                        "--store-paths: {path} is not in the store and could not be substituted"
                    )
                })?;
            }
            let name = paths
                .first()
                .map(|root| parse_drv_name(root.name()).0.to_owned());
            (paths.clone(), (name.clone(), name, None))
        }
        Source::Flake(installable) => {
            check_policy(installable, policy)?;
            let evaluation = evaluate(installable, policy, limit).await?;
            let roots = realise(&mut client, &evaluation).await?;
            (roots, facts_of(&evaluation))
        }
        Source::Packages(packages) => {
            let Some(set) = &policy.package_set else {
                bail!(
                    "--packages: the node policy sets no `package-set`, so package names cannot \
                     be resolved; add it to the policy file or use a flake ref"
                );
            };
            let mut roots = Vec::new();
            let mut first = None;
            for package in packages {
                let installable = FlakeInstallable::parse(&format!("{set}#{package}"))
                    .map_err(|err| anyhow!("package-set {set:?}: {err}"))?;
                check_policy(&installable, policy)?;
                let evaluation = evaluate(&installable, policy, limit).await?;
                for root in realise(&mut client, &evaluation).await? {
                    if !roots.contains(&root) {
                        roots.push(root);
                    }
                }
                first.get_or_insert_with(|| facts_of(&evaluation));
            }
            (roots, first.unwrap_or((None, None, None)))
        }
    };
    for root in &roots {
        client.add_temp_root(root).await?;
    }
    let closure = query_closure(&mut client, &roots).await?;
    drop(watcher);
    reporter.finish();
    let (main_program, package_name, package_version) = facts;
    Ok(Resolution {
        resolved: Resolved {
            roots,
            closure,
            main_program,
            package_name,
            package_version,
        },
        client,
    })
}

type Facts = (Option<String>, Option<String>, Option<String>);

fn facts_of(evaluation: &FlakeEvaluation) -> Facts {
    (
        evaluation.default_program(),
        evaluation.package_name(),
        evaluation.version.clone(),
    )
}

/// Makes the evaluated outputs valid (substituting or building as the daemon allows) and
/// returns them, `out` first.
async fn realise(
    client: &mut DaemonClient,
    evaluation: &FlakeEvaluation,
) -> Result<Vec<StorePath>> {
    let mut roots: Vec<StorePath> = Vec::new();
    if let Some(out) = evaluation.outputs.get("out") {
        roots.push(out.clone());
    }
    for path in evaluation.outputs.values() {
        if !roots.contains(path) {
            roots.push(path.clone());
        }
    }
    let valid = client.query_valid_paths(&roots, true).await?;
    if roots.iter().all(|root| valid.contains(root)) {
        return Ok(roots);
    }
    let wanted = DerivedPath::built(
        evaluation.drv_path.clone(),
        evaluation.outputs.keys().cloned(),
    )?;
    client
        .build_paths(&[wanted], BuildMode::Normal)
        .await
        .with_context(|| format!("realising {}", evaluation.drv_path))?;
    Ok(roots)
}
