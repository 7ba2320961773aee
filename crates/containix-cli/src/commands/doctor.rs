//! `containix doctor`: check that this node can run containix pods.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use crate::doctor::check::{CheckResult, blocks_pods};
use crate::doctor::probe::{ContainerdTarget, gather};
use crate::doctor::verdict::evaluate;
use containix_core::node::containerd_config::DEFAULT_CONFIG_PATH;

/// Check that this node can run containix pods, and say how to fix what is missing.
///
/// Checks the nix-daemon (handshake, protocol and Nix version, trust), Nix's substituters and
/// keys, containerd (version, the `containix` runtime handler in its config, its socket), runc,
/// the shim on the running containerd's PATH, cgroups, the node policy, free space of the store
/// and state dir, and whether CRI must restrict oom_score_adj on this host. Each failing check
/// prints a fix.
#[derive(clap::Args)]
#[command(after_help = format!(
    "Examples:\n  containix doctor\n  containix doctor --json --containerd-config /etc/containerd/config.toml\n\n\
     Exit status:\n  0  nothing keeps pods from running (warnings allowed)\n  1  a check failed, or the doctor itself failed\n  2  usage error (bad or missing arguments)"
))]
pub struct Args {
    /// Print JSON: every check's name, status (pass, warn, fail), detail and fix.
    #[arg(long)]
    pub json: bool,
    /// containerd's config file.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH)]
    pub containerd_config: PathBuf,
    /// containerd's gRPC socket (default: the config's grpc.address, else
    /// /run/containerd/containerd.sock).
    #[arg(long, value_name = "PATH")]
    pub containerd_address: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let facts = gather(&ContainerdTarget {
        config: args.containerd_config,
        address: args.containerd_address,
    });
    let results = evaluate(&facts);
    let blocked = blocks_pods(&results);
    if args.json {
        let value = json!({ "ok": !blocked, "checks": results });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", table(&results));
    }
    Ok(if blocked {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The human table: status, check, detail, and the fix under each check that did not pass;
/// then a summary line.
fn table(results: &[CheckResult]) -> String {
    let width = results.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for result in results {
        out.push_str(&format!(
            "{:<4}  {:<width$}  {}\n",
            result.status.label(),
            result.name,
            result.detail
        ));
        if let Some(fix) = &result.fix {
            out.push_str(&format!("{:<4}  {:<width$}  fix: {fix}\n", "", ""));
        }
    }
    let count = |status| results.iter().filter(|r| r.status == status).count();
    use crate::doctor::check::Status;
    out.push_str(&format!(
        "\n{} passed, {} warnings, {} failed: {}\n",
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail),
        if blocks_pods(results) {
            "this node cannot run containix pods yet"
        } else {
            "this node can run containix pods"
        }
    ));
    out
}
