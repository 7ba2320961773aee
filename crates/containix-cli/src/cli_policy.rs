//! The policy the CLI resolves with, and the node's as the shim and the CSI plugin see it.
//!
//! Precedence, for every value: a flag (`--realise`), then the file named by `--policy`, else by
//! `CONTAINIX_CONFIG`, else `/etc/containix/policy.toml` (the old `/etc/containix/config.toml`
//! with a warning), then the built-in value. The CLI's built-in policy builds what no binary
//! cache has (`realise = "build"`, as `nix build` does); the shim and the CSI plugin keep the
//! node's, which only substitutes.
//!
//! On top of the file, the CLI allows local flake refs (the rule `path:`, which covers `path:`,
//! bare paths, `git+file:` and `file:`): it evaluates as the invoking user, so reading local
//! paths is that user's own business. Pods never get this exception. The CLI keeps its
//! evaluation cache and locks in the invoking user's cache directory, not the node's state
//! directory.

use std::path::PathBuf;

use anyhow::{Context, Result};
use containix_core::request::policy::{
    FlakeRule, LoadedPolicy, NodePolicy, PolicyReport, Realise, ValueOrigin,
};
use serde_json::json;

/// The rule the CLI adds to the policy's allowed prefixes: every local source.
pub const LOCAL_RULE: &str = "path:";

/// How the policy is chosen and overridden on the command line.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PolicyArgs {
    /// The policy file to read instead of $CONTAINIX_CONFIG or /etc/containix/policy.toml.
    #[arg(long = "policy", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Override the policy's `realise`: `build` builds what no binary cache has,
    /// `substitute` only fetches [default: the policy's, else build].
    #[arg(long, value_enum, value_name = "MODE")]
    pub realise: Option<RealiseArg>,
}

/// `--realise`'s values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RealiseArg {
    Substitute,
    Build,
}

impl From<RealiseArg> for Realise {
    fn from(value: RealiseArg) -> Self {
        match value {
            RealiseArg::Substitute => Realise::Substitute,
            RealiseArg::Build => Realise::Build,
        }
    }
}

/// The policy file as the shim and the CSI plugin would read it (the node's built-in values
/// for absent keys), from `--policy` or the environment.
pub fn node_policy(args: &PolicyArgs) -> Result<LoadedPolicy> {
    Ok(NodePolicy::load_with(
        args.file.as_deref(),
        &NodePolicy::default(),
    )?)
}

/// The policy the CLI's own commands use, as loaded (before the CLI's additions).
fn cli_loaded(args: &PolicyArgs) -> Result<LoadedPolicy> {
    Ok(NodePolicy::load_with(
        args.file.as_deref(),
        &NodePolicy::workstation(),
    )?)
}

/// The policy the CLI resolves with (see the module documentation). Prints the loader's
/// warnings to stderr.
pub fn cli_policy(args: &PolicyArgs) -> Result<NodePolicy> {
    let loaded = cli_loaded(args)?;
    for warning in &loaded.warnings {
        eprintln!("containix: warning: {warning}");
    }
    let mut policy = with_local_refs(loaded.policy);
    if let Some(realise) = args.realise {
        policy.realise = realise.into();
    }
    policy.state_dir = user_state_dir()?;
    Ok(policy)
}

/// The CLI's effective policy with each value's origin, for `containix config show`.
pub fn cli_report(args: &PolicyArgs) -> Result<PolicyReport> {
    let loaded = cli_loaded(args)?;
    let mut report = loaded.report(None);
    let policy = cli_policy(&PolicyArgs {
        file: args.file.clone(),
        realise: args.realise,
    })?;
    if let Some(value) = report.value_mut("allowed-flake-prefixes") {
        value.value = json!(policy.allowed_prefix_texts());
        value.note = Some(format!(
            "the CLI adds `{LOCAL_RULE}`: it reads local flakes as the user who runs it"
        ));
    }
    if let Some(value) = report.value_mut("realise") {
        value.value = json!(policy.realise.as_str());
        if args.realise.is_some() {
            value.origin = ValueOrigin::Flag {
                flag: "--realise".to_owned(),
            };
        } else if value.origin == ValueOrigin::BuiltIn {
            value.note = Some(
                "the CLI's; the shim's and the CSI plugin's built-in value is substitute"
                    .to_owned(),
            );
        }
    }
    if let Some(value) = report.value_mut("state-dir") {
        value.value = json!(policy.state_dir);
        value.note =
            Some("the CLI keeps its evaluation cache in the user's cache directory".to_owned());
    }
    Ok(report)
}

/// `policy` with [`LOCAL_RULE`] added to the allowed prefixes (see the module documentation
/// for why the CLI, and only the CLI, allows local refs).
pub fn with_local_refs(mut policy: NodePolicy) -> NodePolicy {
    let local = FlakeRule::parse(LOCAL_RULE).expect("the local rule parses");
    if !policy.allowed_flake_prefixes.contains(&local) {
        policy.allowed_flake_prefixes.push(local);
    }
    policy
}

/// `$XDG_CACHE_HOME/containix`, else `$HOME/.cache/containix`, else a directory under /tmp.
fn user_state_dir() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })
        .filter(|dir| dir.is_absolute())
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("containix-{}", nix::unistd::getuid()))
        });
    let dir = base.join("containix");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use containix_core::request::flake_ref::FlakeRef;

    use super::*;

    #[test]
    fn the_cli_policy_allows_exactly_local_refs_beyond_the_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("app")).unwrap();
        std::fs::write(root.join("app.tar.gz"), b"").unwrap();
        std::fs::write(root.join("flake.nix"), b"").unwrap();
        let node = NodePolicy::default();
        let cli = with_local_refs(node.clone());
        let allowed = |policy: &NodePolicy, text: &str| {
            policy
                .check_flake_ref(&FlakeRef::parse(text).unwrap())
                .is_ok()
        };
        let root = root.display();
        for local in [
            format!("path:{root}/app"),
            format!("{root}/app"),
            format!("git+file://{root}/app?ref=main"),
            format!("file://{root}/app.tar.gz"),
            format!("tarball+file://{root}/app.tar.gz"),
            format!("file://{root}/flake.nix"),
        ] {
            assert!(allowed(&cli, &local), "{local}");
            assert!(!allowed(&node, &local), "{local}");
        }
        for remote in ["github:org/app", "https://example.org/app.tar.gz"] {
            assert!(allowed(&cli, remote) && allowed(&node, remote), "{remote}");
        }
        for refused in [
            "git+ssh://git@host/repo",
            "flake:nixpkgs",
            "git+http://host/r",
            "github:org/app?host=evil.example",
            // A relative path is made absolute before resolution; as written it is refused.
            "path:app",
        ] {
            assert!(!allowed(&cli, refused), "{refused}");
        }
        assert_eq!(
            with_local_refs(cli.clone()).allowed_flake_prefixes,
            cli.allowed_flake_prefixes
        );
    }
}
