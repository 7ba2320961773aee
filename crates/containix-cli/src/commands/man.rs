//! `containix man`: manual pages, one per command, generated from the same definitions as
//! `--help` (clap_mangen).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

/// Write a manual page (roff, section 1) for containix and each of its commands.
///
/// The pages are `containix.1`, `containix-resolve.1`, `containix-node-install.1`, ...: what
/// `--help` says, as man pages. The Nix package installs them.
#[derive(clap::Args)]
#[command(after_help = format!(
    "Examples:\n  containix man --out-dir man/\n  man -l man/containix-resolve.1\n\n{}",
    crate::exit_status::EXIT_CODES
))]
pub struct Args {
    /// The directory to write the pages into (created if missing); pages of the same names
    /// are replaced.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
}

/// Writes the pages of `command`, the whole `containix` command tree.
pub fn run(args: Args, command: clap::Command) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("--out-dir {}: creating it", args.out_dir.display()))?;
    clap_mangen::generate_to(command, &args.out_dir)
        .with_context(|| format!("writing manual pages into {}", args.out_dir.display()))?;
    Ok(ExitCode::SUCCESS)
}
