//! `containix completions`: shell completion scripts.

use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

/// Print a completion script for a shell.
#[derive(clap::Args)]
#[command(after_help = format!(
    "Examples:\n  containix completions bash > /etc/bash_completion.d/containix\n  containix completions zsh > \"${{fpath[1]}}/_containix\"\n  containix completions fish > ~/.config/fish/completions/containix.fish\n\n{}",
    crate::EXIT_CODES
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

pub fn run(args: Args) -> Result<ExitCode> {
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut command = crate::Cli::command();
    clap_complete::generate(shell, &mut command, "containix", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
