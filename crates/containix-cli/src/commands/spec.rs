//! `containix spec`: the OCI spec a bundle for a ref gets, or only the plan's edits.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use containix_core::assemble::rootfs::LinkMode;

use crate::assembly::{absolute_dir, bundle_plan, resulting_spec};
use crate::commands::assemble::Link;

/// Print the OCI runtime spec (config.json) `containix assemble` would write, as JSON.
///
/// With --diff, print only the plan's edits to the base spec: mounts added, the process's
/// args, environment edits, state files and closure members left unmounted. Nothing is written.
#[derive(clap::Args)]
#[command(after_help = format!(
    "Examples:\n  containix spec path:./examples/hello\n  containix spec --diff --entrypoint hello path:./examples/hello -- --verbose\n\n{}",
    crate::exit_status::EXIT_CODES
))]
pub struct Args {
    #[command(flatten)]
    pub source: crate::source::SourceArgs,
    /// The bundle directory the spec is planned for (state files live in DIR/.containix).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub bundle: PathBuf,
    /// The link mode the bundle would use (decides how /nix/store is mounted).
    #[arg(long, value_enum, default_value_t = Link::Auto)]
    pub link: Link,
    /// The program to run: an absolute path in the root output (`/bin/app`) or a name on PATH.
    #[arg(long, value_name = "PROGRAM")]
    pub entrypoint: Option<String>,
    /// Print only the plan (the edits), not the whole spec.
    #[arg(long)]
    pub diff: bool,
    /// Show progress on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// Arguments for the program.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    args.source.require()?;
    let bundle = absolute_dir(&args.bundle, "--bundle")?;
    let request = args.source.request(args.entrypoint.as_deref())?;
    let resolution = super::resolve::resolve_request(&request, &args.source.policy, args.progress)?;
    let link = match args.link {
        Link::Auto => LinkMode::for_target(&bundle),
        Link::Hardlink => LinkMode::Hardlink,
        Link::Copy => LinkMode::Copy,
        Link::Bind => LinkMode::Bind,
    };
    let (base, spec_plan) = bundle_plan(
        resolution.resolved(),
        &bundle,
        link,
        request.entrypoint.as_ref(),
        &args.args,
    )?;
    let text = if args.diff {
        serde_json::to_string_pretty(&spec_plan)?
    } else {
        serde_json::to_string_pretty(&resulting_spec(base, &spec_plan))?
    };
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}
