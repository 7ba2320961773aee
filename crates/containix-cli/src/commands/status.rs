//! `containix status`: what the node is doing for pods: resolutions in flight and store views.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Result;
use containix_core::assemble::view::UserLease;
use containix_core::node::node_status::{NodeStatus, node_status};
use serde_json::{Value, json};

use crate::cli_policy::{PolicyArgs, node_policy};
use crate::progress::human_bytes;

/// Show the resolutions this node runs for pods and the store views it holds.
///
/// For each resolution in flight: what it resolves, its step, paths and bytes done of those
/// expected, how long it has run, and the pods waiting for it. For each store view: its
/// mechanism, size and users (containers, CSI volumes, prefetches with their expiry). Run on
/// the node; reads the node policy's state directory.
#[derive(clap::Args)]
#[command(after_help = format!(
    "Examples:\n  containix status\n  containix status --json\n\n{}",
    crate::exit_status::EXIT_CODES
))]
pub struct Args {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Print JSON: `resolutions` and `views`.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let loaded = node_policy(&args.policy)?;
    let status = node_status(&loaded.policy)?;
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&status, now_ms))?
        );
    } else {
        print!("{}", render(&status, now_ms));
    }
    Ok(ExitCode::SUCCESS)
}

fn to_json(status: &NodeStatus, now_ms: u64) -> Value {
    let resolutions: Vec<Value> = status
        .resolutions
        .iter()
        .map(|entry| {
            let s = entry.status.as_ref();
            json!({
                "key": entry.key,
                "request": s.map(|s| s.request.clone()),
                "state": s.map(|s| s.state),
                "step": s.and_then(|s| s.step.clone()),
                "pathsDone": s.map(|s| s.paths_done),
                "pathsExpected": s.map(|s| s.paths_expected),
                "bytesDone": s.map(|s| s.bytes_done),
                "bytesExpected": s.map(|s| s.bytes_expected),
                "elapsedMs": s.map(|s| s.elapsed(now_ms).as_millis() as u64),
                "waitingPods": entry.waiters,
                "workerRunning": entry.worker_running,
                "error": s.and_then(|s| s.error.clone()),
            })
        })
        .collect();
    let views: Vec<Value> = status
        .views
        .iter()
        .map(|view| {
            let record = view.record.as_ref();
            json!({
                "id": view.id,
                "ready": record.is_some(),
                "mechanism": record.map(|r| r.mechanism.as_str()),
                "roots": record.map(|r| r.roots.clone()),
                "paths": record.map(|r| r.members),
                "narSize": record.map(|r| r.nar_size),
                "users": view.users.iter().map(|user| json!({
                    "name": user.name,
                    "untilMs": match user.lease {
                        UserLease::Until(seconds) => Some(seconds.saturating_mul(1000)),
                        UserLease::Boot(_) => None,
                    },
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "resolutions": resolutions, "views": views })
}

fn render(status: &NodeStatus, now_ms: u64) -> String {
    let mut out = String::new();
    if status.resolutions.is_empty() {
        out.push_str("No resolutions in flight.\n");
    } else {
        out.push_str("Resolutions in flight:\n");
        for entry in &status.resolutions {
            let (request, progress) = match &entry.status {
                Some(s) => (s.request.clone(), s.summary(now_ms)),
                None => ("(starting)".to_owned(), "waiting for its worker".to_owned()),
            };
            out.push_str(&format!(
                "  {request}\n    {progress}\n    waiting pods: {}\n",
                if entry.waiters.is_empty() {
                    "none".to_owned()
                } else {
                    entry.waiters.join(", ")
                }
            ));
        }
    }
    if status.views.is_empty() {
        out.push_str("No store views.\n");
    } else {
        out.push_str("Store views:\n");
        for view in &status.views {
            let summary = match &view.record {
                Some(r) => format!(
                    "{}, {} paths, {}",
                    r.mechanism,
                    r.members,
                    human_bytes(r.nar_size)
                ),
                None => "unfinished".to_owned(),
            };
            let users: Vec<String> = view
                .users
                .iter()
                .map(|user| match user.lease {
                    UserLease::Until(seconds) => {
                        let left = seconds.saturating_sub(now_ms / 1000);
                        format!("{} (for {} more s)", user.name, left)
                    }
                    UserLease::Boot(_) => user.name.clone(),
                })
                .collect();
            out.push_str(&format!(
                "  {} ({summary})\n    users: {}\n",
                view.id,
                if users.is_empty() {
                    "none".to_owned()
                } else {
                    users.join(", ")
                }
            ));
        }
    }
    out
}
