//! `containix`: resolve, inspect, assemble and run Nix closures as OCI containers.

mod assembly;
mod base_spec;
mod cli_policy;
mod commands;
mod doctor;
mod error_chain;
mod exit_status;
mod host;
mod line_diff;
mod logging;
mod progress;
mod resolution;
mod runtime;
mod source;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use exit_status::{EXIT_CODES, UsageError};

/// Run Nix closures as containers, without container images.
#[derive(Parser)]
#[command(
    name = "containix",
    version = containix_core::VERSION,
    after_help = format!("Example:\n  containix run path:./examples/hello\n\n{EXIT_CODES}"),
)]
pub struct Cli {
    /// Log more on stderr: -v what the Nix daemon builds and fetches, with every build output
    /// line; -vv debug; -vvv trace. Default: warnings and errors (or $RUST_LOG).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Resolve(commands::resolve::Args),
    Sbom(commands::sbom::Args),
    Assemble(commands::assemble::Args),
    Run(commands::run::Args),
    Spec(commands::spec::Args),
    Image(commands::image::Args),
    Doctor(commands::doctor::Args),
    Node(commands::node::Args),
    Policy(commands::policy::Args),
    Prefetch(commands::prefetch::Args),
    Status(commands::status::Args),
    Config(commands::config::Args),
    Completions(commands::completions::Args),
    Man(commands::man::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::install(cli.verbose);
    let result = match cli.command {
        Command::Resolve(args) => commands::resolve::run(args),
        Command::Sbom(args) => commands::sbom::run(args),
        Command::Assemble(args) => commands::assemble::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Spec(args) => commands::spec::run(args),
        Command::Image(args) => commands::image::run(args),
        Command::Doctor(args) => commands::doctor::run(args),
        Command::Node(args) => commands::node::run(args),
        Command::Policy(args) => commands::policy::run(args),
        Command::Prefetch(args) => commands::prefetch::run(args),
        Command::Status(args) => commands::status::run(args),
        Command::Config(args) => commands::config::run(args),
        Command::Completions(args) => commands::completions::run(args, Cli::command()),
        Command::Man(args) => commands::man::run(args, Cli::command()),
    };
    match result {
        Ok(code) => code,
        Err(err) if err.is::<UsageError>() => Cli::command()
            .error(clap::error::ErrorKind::MissingRequiredArgument, err)
            .exit(),
        Err(err) => {
            eprintln!("containix: {}", error_chain::said_once(&err));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every runnable command, as its words after `containix`.
    fn leaves(
        command: &clap::Command,
        words: Vec<String>,
        out: &mut Vec<(Vec<String>, clap::Command)>,
    ) {
        let subcommands: Vec<_> = command
            .get_subcommands()
            .filter(|sub| sub.get_name() != "help")
            .collect();
        if subcommands.is_empty() {
            out.push((words.clone(), command.clone()));
        }
        for sub in subcommands {
            let mut next = words.clone();
            next.push(sub.get_name().to_owned());
            leaves(sub, next, out);
        }
    }

    #[test]
    fn every_command_has_an_example_and_exit_status_in_its_help() {
        let mut all = Vec::new();
        leaves(&Cli::command(), Vec::new(), &mut all);
        assert_eq!(
            all.len(),
            16,
            "resolve, sbom, assemble, run, spec, image empty|build, doctor, node install|uninstall, \
             policy check, prefetch, status, config show, completions, man"
        );
        for (words, command) in &all {
            let help = command
                .get_after_help()
                .map(|text| text.to_string())
                .unwrap_or_default();
            assert!(help.contains("Example"), "containix {words:?}: no example");
            assert!(
                help.contains("Exit status"),
                "containix {words:?}: no exit status"
            );
        }
    }

    #[test]
    fn every_command_that_prints_data_can_print_json() {
        // These print JSON always (an SBOM, an OCI spec) or print no data of their own (the
        // program's output, a shell script).
        let json_always_or_no_data = [["sbom"], ["spec"], ["run"], ["completions"], ["man"]];
        let mut all = Vec::new();
        leaves(&Cli::command(), Vec::new(), &mut all);
        for (words, command) in &all {
            if json_always_or_no_data.iter().any(|w| words[..] == w[..]) {
                continue;
            }
            assert!(
                command
                    .get_arguments()
                    .any(|arg| arg.get_long() == Some("json")),
                "containix {words:?} has no --json"
            );
        }
    }

    /// `containix man` writes a page for the program and each command (the test lives here,
    /// where `Cli` is, so commands/man.rs need not import main.rs).
    #[test]
    fn every_command_gets_a_manual_page() {
        use std::process::ExitCode;

        use crate::commands::man::{Args, run};

        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("man");
        let args = Args {
            out_dir: out_dir.clone(),
        };
        assert_eq!(run(args, Cli::command()).unwrap(), ExitCode::SUCCESS);
        for page in [
            "containix.1",
            "containix-resolve.1",
            "containix-node-install.1",
            "containix-completions.1",
            "containix-man.1",
        ] {
            let text = std::fs::read_to_string(out_dir.join(page)).unwrap();
            assert!(
                text.starts_with(".ie \\n(.g .ds Aq") || text.contains(".TH"),
                "{page}"
            );
        }
        assert!(!out_dir.join("containix-help.1").exists());
    }
}
