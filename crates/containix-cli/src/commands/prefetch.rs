//! `containix prefetch`: resolve closures on this node before their pods land, and keep their
//! store views for a while, so the pods start with no build and no substitution.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use containix_core::node::prefetch::Prefetcher;
use containix_core::request::container_request::{Request, Source};
use containix_core::request::duration::parse_duration;
use containix_core::request::flake_ref::FlakeInstallable;
use containix_core::resolve::Resolver;
use containix_core::resolve::progress::ResolveProgress;
use containix_core::store::store_path::StorePath;
use serde_json::json;
use tokio::sync::watch;

use crate::cli_policy::{PolicyArgs, node_policy};
use crate::progress::{Reporter, human_bytes};

/// The container name a prefetch's errors name.
const PREFETCH_CONTAINER: &str = "prefetch";

/// Resolve closures on this node ahead of their pods and keep them for a while.
///
/// Each flake ref (or store path) is resolved under the node policy, as the shim would for a
/// pod (substituted, or built where the policy allows), and its store view is kept until --keep
/// has passed, across reboots; prefetching again renews the hold. A pod of a prefetched closure
/// then starts with no build or substitution. Run as root on the node.
#[derive(clap::Args)]
#[command(after_help = format!(
    "Examples:\n  containix prefetch --keep 24h github:org/app/<rev>#default\n  containix prefetch --store-paths /nix/store/<hash>-app-1.0\n  containix prefetch --from-file /etc/containix-prefetch/refs --every 1h --keep 2h\n  containix prefetch --release github:org/app/<rev>#default\n\n{}",
    crate::exit_status::EXIT_CODES
))]
pub struct Args {
    /// Flake refs to prefetch, each with an optional #attr.
    #[arg(value_name = "FLAKE-REF")]
    pub refs: Vec<String>,
    /// Store paths to prefetch, each with its closure.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub store_paths: Vec<String>,
    /// Also read flake refs and store paths from FILE, one per line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// How long to keep each closure, e.g. `24h`, `90m`.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub keep: String,
    /// Let go of earlier prefetches of these closures instead.
    #[arg(long, conflicts_with = "every")]
    pub release: bool,
    /// Keep running, prefetching again (and renewing the holds) every DURATION: what the warming
    /// DaemonSet runs.
    #[arg(long, value_name = "DURATION")]
    pub every: Option<String>,
    /// Apply the policy of pods of this Kubernetes namespace.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Print JSON: one object per closure.
    #[arg(long)]
    pub json: bool,
    /// Show progress on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let keep = duration("--keep", &args.keep)?;
    let every = args
        .every
        .as_deref()
        .map(|text| duration("--every", text))
        .transpose()?;
    let loaded = node_policy(&args.policy)?;
    for warning in &loaded.warnings {
        eprintln!("containix: warning: {warning}");
    }
    let prefetcher = Prefetcher::new(Resolver::new(loaded.policy));
    let reporter: &'static Reporter = Box::leak(Box::new(Reporter::new(args.progress)));
    crate::runtime::runtime()?.block_on(async {
        loop {
            let requests = requests(&args)?;
            if requests.is_empty() {
                return Err(crate::exit_status::UsageError(
                    "nothing to prefetch; expected FLAKE-REFs, --store-paths or --from-file".into(),
                )
                .into());
            }
            let failed = round(&args, &prefetcher, &requests, keep, reporter).await;
            let Some(every) = every else {
                return Ok(if failed {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                });
            };
            if let Err(err) = prefetcher.sweep().await {
                eprintln!("containix: sweeping store views: {err}");
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// Prefetches (or releases) every request once; whether any failed.
async fn round(
    args: &Args,
    prefetcher: &Prefetcher,
    requests: &[(String, Request)],
    keep: Duration,
    reporter: &'static Reporter,
) -> bool {
    let mut failed = false;
    let mut records = Vec::new();
    for (shown, request) in requests {
        if args.release {
            match prefetcher.release(request).await {
                Ok(held) => {
                    records.push(json!({ "request": shown, "released": held }));
                    if !args.json {
                        let what = if held {
                            "released"
                        } else {
                            "was not prefetched"
                        };
                        println!("{shown}: {what}");
                    }
                }
                Err(err) => {
                    failed = true;
                    eprintln!("containix: {shown}: {err}");
                }
            }
            continue;
        }
        let (progress, watched) = watch::channel(ResolveProgress::default());
        let watch = reporter.watch_resolution(watched);
        let result = prefetcher.prefetch(request, keep, &progress).await;
        drop(watch);
        reporter.finish();
        match result {
            Ok(hold) => {
                let closure = &hold.resolved.closure;
                records.push(json!({
                    "request": shown,
                    "view": hold.view.id,
                    "mechanism": hold.view.mechanism.as_str(),
                    "paths": closure.len(),
                    "narSize": closure.nar_size(),
                    "keptUntilMs": hold.until.saturating_mul(1000),
                }));
                if !args.json {
                    println!(
                        "{shown}: {} paths, {}, kept for {} (view {})",
                        closure.len(),
                        human_bytes(closure.nar_size()),
                        args.keep,
                        hold.view.id
                    );
                }
            }
            Err(err) => {
                failed = true;
                eprintln!("containix: {shown}: {err}");
            }
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&records).expect("JSON values serialise")
        );
    }
    failed
}

/// The requests the arguments (and the file, read afresh each round) name, each with how it
/// was written.
fn requests(args: &Args) -> Result<Vec<(String, Request)>> {
    let mut refs = args.refs.clone();
    let mut paths = args.store_paths.clone();
    if let Some(file) = &args.from_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading --from-file {}", file.display()))?;
        for line in text.lines() {
            let line = without_comment(line).trim();
            if line.starts_with("/nix/store/") {
                paths.push(line.to_owned());
            } else if !line.is_empty() {
                refs.push(line.to_owned());
            }
        }
    }
    let request = |source| Request {
        container: PREFETCH_CONTAINER.to_owned(),
        source,
        namespace: args.namespace.clone(),
        entrypoint: None,
        timeout: None,
    };
    let mut requests = Vec::new();
    for text in refs {
        let installable =
            FlakeInstallable::parse(&text).map_err(|err| anyhow!("FLAKE-REF {text:?}: {err}"))?;
        requests.push((text, request(Source::Flake(installable))));
    }
    for text in paths {
        let path = StorePath::parse(&text).map_err(|err| anyhow!("--store-paths: {err}"))?;
        requests.push((text, request(Source::StorePaths(vec![path]))));
    }
    Ok(requests)
}

/// `line` up to a comment: a `#` at the start of the line or after whitespace (a `#` inside a
/// word is a flake ref's attribute).
fn without_comment(line: &str) -> &str {
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        if c == '#' && previous.is_whitespace() {
            return &line[..at];
        }
        previous = c;
    }
    line
}

fn duration(flag: &str, text: &str) -> Result<Duration> {
    parse_duration(text).map_err(|err| anyhow!("{flag}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::without_comment;

    #[test]
    fn comments_start_at_a_hash_that_begins_a_word() {
        assert_eq!(
            without_comment("github:org/app#server"),
            "github:org/app#server"
        );
        assert_eq!(
            without_comment("github:org/app#server # the API"),
            "github:org/app#server "
        );
        assert_eq!(without_comment("# all of it"), "");
        assert_eq!(without_comment("  # indented"), "  ");
        assert_eq!(
            without_comment("/nix/store/x-app\t#tab"),
            "/nix/store/x-app\t"
        );
    }
}
