//! `containix policy check`: which rule of the policy allows or refuses a flake ref, and why.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use containix_core::request::flake_ref::FlakeInstallable;
use containix_core::request::policy::{HostFilesystem, LoadedPolicy, RuleMatch, Verdict};
use serde_json::json;

use crate::cli_policy::{PolicyArgs, cli_policy, node_policy};
use crate::source::absolute_local_ref;

const CHECK_EXIT_STATUS: &str = "\
Exit status:
  0  the policy allows the ref
  1  the policy refuses it, or the ref or the policy cannot be read (the reason is printed)
  2  usage error (bad or missing arguments)";

/// Check flake refs against the node policy.
#[derive(clap::Args)]
#[command(after_help = format!(
    "Example:\n  containix policy check --namespace team-a github:team-a/app\n\n{CHECK_EXIT_STATUS}"
))]
pub struct Args {
    #[command(subcommand)]
    pub policy: Policy,
}

#[derive(clap::Subcommand)]
pub enum Policy {
    /// Say which rule of `allowed-flake-prefixes` allows or refuses a flake ref, and why.
    ///
    /// REF is checked as the shim and the CSI plugin check a pod's ref (in namespace NS with
    /// --namespace): parsed, its host and path compared segment by segment, local paths resolved
    /// on this machine (symlinks and `..` followed). Every rule gives its verdict; the ref Nix
    /// would then be given is printed. With --cli, REF is checked as containix's own commands
    /// check it (local refs allowed, relative paths taken from the current directory).
    #[command(after_help = format!(
        "Examples:\n  containix policy check github:my-org/app#default\n  containix policy check --namespace team-a --json path:/srv/flakes/app\n  containix policy check --policy ./new-policy.toml 'github:my-org/app?host=evil.example'\n\n{CHECK_EXIT_STATUS}"
    ))]
    Check(CheckArgs),
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// The flake ref, with or without `#attr`.
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Check with the settings of this Kubernetes namespace (`[namespaces.NS]`).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Check as containix's own commands do (local refs allowed) instead of as for a pod.
    #[arg(long, conflicts_with = "namespace")]
    pub cli: bool,
    /// The policy file to read instead of $CONTAINIX_CONFIG or /etc/containix/policy.toml.
    #[arg(long = "policy", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Print JSON: the ref, its source, every rule's verdict and reason, the ref to evaluate.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let Policy::Check(args) = args.policy;
    let policy_args = PolicyArgs {
        file: args.file.clone(),
        realise: None,
    };
    let loaded = node_policy(&policy_args)?;
    let installable =
        FlakeInstallable::parse(&args.reference).map_err(|err| anyhow!("REF: {err}"))?;
    let (policy, installable) = if args.cli {
        (cli_policy(&policy_args)?, absolute_local_ref(&installable)?)
    } else {
        (loaded.policy.clone(), installable)
    };
    let scope = policy.scope(args.namespace.as_deref());
    let flake = &installable.flake;
    let matched = scope.explain_with(flake, &HostFilesystem);
    let refusal = match (matched.allowed_by(), &matched.evaluated) {
        (Some(_), Some(_)) => None,
        _ => Some(scope.refusal(flake, &matched).to_string()),
    };
    let view = if args.cli { "cli" } else { "node" };
    if args.json {
        let value = json!({
            "flakeRef": installable.to_string(),
            "view": view,
            "namespace": args.namespace,
            "namespaceListed": scope.namespace().is_some(),
            "policyFile": loaded.file.as_ref().map(|(path, _)| path),
            "policyFileOrigin": loaded.file.as_ref().map(|(_, origin)| origin),
            "source": matched.origin.as_ref().map(ToString::to_string),
            "allowed": refusal.is_none(),
            "allowedBy": matched.allowed_by().map(|r| r.rule.clone()),
            "evaluated": evaluated(&matched, &installable),
            "problem": matched.problem,
            "rules": matched.rules,
            "error": refusal,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("flake ref:  {installable}");
        if let Some(origin) = &matched.origin {
            println!("source:     {origin}");
        }
        let file = policy_file(&loaded).unwrap_or_else(|| "built-in default policy".to_owned());
        let whose = match (args.cli, args.namespace.as_deref(), scope.namespace()) {
            (true, _, _) => "containix's own commands".to_owned(),
            (false, Some(ns), Some(_)) => format!("pods of namespace {ns} ([namespaces.{ns}])"),
            (false, Some(ns), None) => {
                format!("pods of namespace {ns} (not listed: the node-wide settings)")
            }
            (false, None, _) => "pods (the node-wide settings)".to_owned(),
        };
        println!("policy:     {file}, as for {whose}");
        match (matched.allowed_by(), evaluated(&matched, &installable)) {
            (Some(rule), Some(evaluated)) if refusal.is_none() => {
                println!("verdict:    allowed by `{}` ({})", rule.rule, rule.reason);
                println!("evaluated:  {evaluated}");
            }
            _ => {
                println!("verdict:    refused");
                if let Some(problem) = &matched.problem {
                    println!("problem:    {problem}");
                }
            }
        }
        if !matched.rules.is_empty() {
            println!();
            let width = matched
                .rules
                .iter()
                .map(|r| r.rule.len())
                .max()
                .unwrap_or(0);
            for rule in &matched.rules {
                let verdict = match rule.verdict {
                    Verdict::Allows => "allows",
                    Verdict::Refuses => "refuses",
                    Verdict::DoesNotApply => "n/a",
                };
                println!("  {verdict:<8} {:<width$}  {}", rule.rule, rule.reason);
            }
        }
    }
    if let Some(refusal) = refusal {
        if !args.json {
            eprintln!("containix: {refusal}");
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The policy file and how it was chosen, for people.
fn policy_file(loaded: &LoadedPolicy) -> Option<String> {
    loaded
        .file
        .as_ref()
        .map(|(path, origin)| format!("{} ({})", path.display(), origin.describe()))
}

/// The installable Nix would be given: the evaluated ref with the attribute path kept.
fn evaluated(matched: &RuleMatch, installable: &FlakeInstallable) -> Option<String> {
    matched.evaluated.as_ref().map(|flake| {
        FlakeInstallable {
            flake: flake.clone(),
            attr: installable.attr.clone(),
        }
        .to_string()
    })
}
