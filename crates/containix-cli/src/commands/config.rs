//! `containix config show`: the effective policy and where each value came from.

use std::process::ExitCode;

use anyhow::Result;
use containix_core::request::policy::PolicyReport;
use serde_json::{Value, json};

use crate::cli_policy::{PolicyArgs, cli_report, node_policy};

/// Show containix's configuration.
#[derive(clap::Args)]
#[command(after_help = format!(
    "Example:\n  containix config show --namespace team-a\n\n{}",
    crate::exit_status::EXIT_CODES
))]
pub struct Args {
    #[command(subcommand)]
    pub config: Config,
}

#[derive(clap::Subcommand)]
pub enum Config {
    /// Print the effective policy, each value with where it came from.
    ///
    /// Without --node: the policy containix's own commands (resolve, run, ...) use, after
    /// --realise, the policy file (--policy, else $CONTAINIX_CONFIG, else
    /// /etc/containix/policy.toml) and the CLI's built-in values. With --node, or --namespace:
    /// the policy the shim and the CSI plugin apply to pods (of namespace NS).
    #[command(after_help = format!(
        "Examples:\n  containix config show\n  containix config show --node --namespace team-a\n  containix config show --json --policy ./policy.toml\n\n{}",
        crate::exit_status::EXIT_CODES
    ))]
    Show(ShowArgs),
}

#[derive(clap::Args)]
pub struct ShowArgs {
    /// Show the settings for pods of this Kubernetes namespace (implies --node).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Show the policy the shim and the CSI plugin use, not the CLI's.
    #[arg(long)]
    pub node: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Print JSON: the policy file, every key's value and origin.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let Config::Show(args) = args.config;
    let node = args.node || args.namespace.is_some();
    let report = if node {
        node_policy(&args.policy)?.report(args.namespace.as_deref())
    } else {
        cli_report(&args.policy)?
    };
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["view"] = json!(if node { "node" } else { "cli" });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", render(&report, node));
    }
    Ok(ExitCode::SUCCESS)
}

/// The report as a policy file whose comments say where each value came from.
fn render(report: &PolicyReport, node: bool) -> String {
    let mut out = String::new();
    let whose = match (&report.namespace, report.namespace_listed) {
        _ if !node => "containix's own commands (resolve, run, ...)".to_owned(),
        (Some(ns), true) => format!("pods of namespace {ns} ([namespaces.{ns}] in the file)"),
        (Some(ns), false) => format!("pods of namespace {ns} (not listed: node-wide settings)"),
        (None, _) => "pods (node-wide settings)".to_owned(),
    };
    out.push_str(&format!("# The effective containix policy for {whose}.\n"));
    match (&report.file, report.file_origin) {
        (Some(file), Some(origin)) => out.push_str(&format!(
            "# Policy file: {} ({}).\n",
            file.display(),
            origin.describe()
        )),
        _ => out.push_str("# Policy file: none (built-in values).\n"),
    }
    if !report.namespaces.is_empty() {
        out.push_str(&format!(
            "# Namespaces with settings of their own: {}.\n",
            report.namespaces.join(", ")
        ));
    }
    for warning in &report.warnings {
        out.push_str(&format!("# Warning: {warning}\n"));
    }
    let lines: Vec<(String, String)> = report
        .values
        .iter()
        .map(|v| {
            let line = match &v.value {
                Value::Null => format!("# {} is unset", v.key),
                value => format!("{} = {value}", v.key),
            };
            let mut comment = format!("# {}", v.origin);
            if let Some(note) = &v.note {
                comment.push_str(&format!("; {note}"));
            }
            (line, comment)
        })
        .collect();
    let width = lines
        .iter()
        .map(|(l, _)| l.len())
        .max()
        .unwrap_or(0)
        .min(60);
    for (line, comment) in lines {
        out.push_str(&format!("{line:<width$}  {comment}\n"));
    }
    out
}
