//! `containix resolve`: the closure a flake, store paths, packages or annotations resolve to.

use std::process::ExitCode;

use anyhow::Result;
use containix_core::request::container_request::Request;
use serde_json::json;

use crate::cli_policy::{PolicyArgs, cli_policy};
use crate::progress::{Reporter, human_bytes};
use crate::resolution::{Resolution, resolve};
use crate::source::SourceArgs;

/// Print the closure a flake ref, store paths, packages or pod annotations resolve to.
///
/// Each closure member is printed with its NAR size, then the total. Progress of long work
/// (substituting, building) goes to stderr when it is a terminal or with --progress.
#[derive(clap::Args)]
#[command(after_help = format!(
    "Examples:\n  containix resolve path:./examples/hello\n  containix resolve --json github:org/app#default\n  containix resolve --store-paths /nix/store/<hash>-hello-1.0\n  containix resolve --annotations pod.env --container app\n\n{}",
    crate::exit_status::EXIT_CODES
))]
pub struct Args {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Print JSON: roots, main program, every member's path, NAR size, hash and references.
    #[arg(long)]
    pub json: bool,
    /// Show progress on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
}

/// Resolves the request the arguments describe, on a fresh runtime.
pub fn resolve_args(source: &SourceArgs, progress: bool) -> Result<Resolution> {
    source.require()?;
    resolve_request(&source.request(None)?, &source.policy, progress)
}

/// Resolves `request` under the CLI's policy on a fresh runtime.
pub fn resolve_request(
    request: &Request,
    policy: &PolicyArgs,
    progress: bool,
) -> Result<Resolution> {
    let policy = cli_policy(policy)?;
    let reporter: &'static Reporter = Box::leak(Box::new(Reporter::new(progress)));
    crate::runtime::runtime()?.block_on(resolve(request, &policy, reporter))
}

pub fn run(args: Args) -> Result<ExitCode> {
    let resolution = resolve_args(&args.source, args.progress)?;
    let resolved = resolution.resolved();
    let closure = &resolved.closure;
    if args.json {
        let paths: Vec<_> = closure
            .infos()
            .map(|info| {
                json!({
                    "path": info.path,
                    "narSize": info.nar_size,
                    "narHash": info.nar_hash_sri(),
                    "references": info.references,
                })
            })
            .collect();
        let value = json!({
            "roots": resolved.roots,
            "mainProgram": resolved.main_program,
            "packageName": resolved.package_name,
            "packageVersion": resolved.package_version,
            "paths": paths,
            "count": closure.len(),
            "narSize": closure.nar_size(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for info in closure.infos() {
            println!("{:>10}  {}", human_bytes(info.nar_size), info.path);
        }
        println!(
            "{:>10}  total, {} paths ({} bytes)",
            human_bytes(closure.nar_size()),
            closure.len(),
            closure.nar_size()
        );
    }
    Ok(ExitCode::SUCCESS)
}
