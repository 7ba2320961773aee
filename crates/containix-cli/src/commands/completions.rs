//! `containix completions`: shell completion scripts.

use std::process::ExitCode;

use anyhow::Result;
use clap_complete::Shell;

/// Print a completion script for a shell.
#[derive(clap::Args)]
#[command(after_help = format!(
    "Examples:\n  containix completions bash > /etc/bash_completion.d/containix\n  containix completions zsh > \"${{fpath[1]}}/_containix\"\n  containix completions fish > ~/.config/fish/completions/containix.fish\n\n{}",
    crate::exit_status::EXIT_CODES
))]
pub struct Args {
    /// The shell: bash, zsh or fish.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// The shells completions are generated for.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// Prints the script for `command`, the whole `containix` command tree.
pub fn run(args: Args, mut command: clap::Command) -> Result<ExitCode> {
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    clap_complete::generate(shell, &mut command, "containix", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
