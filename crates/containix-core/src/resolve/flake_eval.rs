//! Evaluating a flake installable with the `nix` CLI: from `github:org/app#default` to the
//! derivation, its output paths and the facts the container needs (main program, name, version).
//!
//! This is the only step that runs `nix` as a process. The command is an argument vector (never a
//! shell), the installable is passed in canonical form after `--` so it cannot become an option,
//! the lock file is never written, a flake's `nixConfig` is never accepted and evaluation stays
//! pure. The process runs in its own process group, which is killed when the deadline passes.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::request::flake_ref::FlakeInstallable;
use crate::request::policy::node_policy::NodePolicy;
use crate::resolve::process_runner::ProcessRunner;
use crate::store::daemon::ansi::strip_ansi;
use crate::store::store_path::{StorePath, StorePathError};

/// Longest stderr tail kept in an error, in bytes.
const STDERR_TAIL: usize = 4000;

/// Largest evaluation result accepted on stdout, in bytes.
pub(crate) const MAX_OUTPUT: usize = 1 << 20;

/// The Nix expression applied to the evaluated package: plain data only, so the JSON is small and
/// nothing else of the flake is forced.
const APPLY_EXPR: &str = r#"drv: {
  drvPath = drv.drvPath;
  outputs = builtins.listToAttrs (map (name: { inherit name; value = drv.${name}.outPath; })
    (drv.meta.outputsToInstall or [ (drv.outputName or "out") ]));
  name = drv.name or null;
  pname = drv.pname or null;
  version = drv.version or null;
  mainProgram = drv.meta.mainProgram or null;
}"#;

/// What evaluating an installable tells containix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlakeEvaluation {
    /// The derivation that builds the package.
    pub drv_path: StorePath,
    /// The outputs to install (`meta.outputsToInstall`, else the default output), by name.
    pub outputs: BTreeMap<String, StorePath>,
    /// The derivation name, e.g. `hello-2.12.1`.
    pub name: Option<String>,
    /// `pname`, when the package sets it.
    pub pname: Option<String>,
    /// `version`, when the package sets it.
    pub version: Option<String>,
    /// `meta.mainProgram`, when the package sets it.
    pub main_program: Option<String>,
}

impl FlakeEvaluation {
    /// The program a container runs by default: `meta.mainProgram`, else `pname`, else the name
    /// without its version.
    pub fn default_program(&self) -> Option<String> {
        self.main_program.clone().or_else(|| self.package_name())
    }

    /// `pname`, else the derivation name without its version.
    pub fn package_name(&self) -> Option<String> {
        self.pname.clone().or_else(|| {
            self.name
                .as_deref()
                .map(|name| crate::store::drv_name::parse_drv_name(name).0.to_owned())
        })
    }
}

/// Why an evaluation failed.
#[derive(Debug, Error)]
pub enum EvalError {
    /// `nix` could not be started.
    #[error("evaluating {installable}: cannot run {}: {source}", program.display())]
    Spawn {
        /// The installable.
        installable: String,
        /// The command.
        program: PathBuf,
        /// Why it did not start.
        source: std::io::Error,
    },
    /// `nix` ran and failed; `message` holds its error output.
    #[error("evaluating {installable} failed: {message}")]
    Failed {
        /// The installable.
        installable: String,
        /// The tail of nix's stderr, without colour codes.
        message: String,
    },
    /// The deadline passed; the evaluation was killed.
    #[error("evaluating {installable} did not finish within {}s", after.as_secs())]
    Timeout {
        /// The installable.
        installable: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// `nix` printed something that is not the expected JSON.
    #[error("evaluating {installable}: unexpected output from nix: {message}")]
    Output {
        /// The installable.
        installable: String,
        /// What was wrong.
        message: String,
    },
    /// Locking the flake ref (`nix flake metadata`) failed, or gave a locked ref containix
    /// cannot read.
    #[error("locking {flake} failed: {message}")]
    Lock {
        /// The flake ref.
        flake: String,
        /// What went wrong: nix's error output, or what was wrong with its answer.
        message: String,
    },
    /// The evaluation named a path that is not a valid store path.
    #[error("evaluating {installable}: {source}")]
    StorePath {
        /// The installable.
        installable: String,
        /// The invalid path.
        source: StorePathError,
    },
}

/// The canonical installable nix is asked to evaluate: the pod's fragment, or the default
/// package for the node's system (`packages.<system>.default`) when it has none.
pub fn installable_argument(installable: &FlakeInstallable, policy: &NodePolicy) -> String {
    match &installable.attr {
        Some(_) => installable.to_nix_arg(),
        None => format!(
            "{}#packages.{}.default",
            installable.flake.to_nix_arg(),
            policy.system
        ),
    }
}

/// The argument vector for evaluating `installable`, without the program name.
pub fn eval_args(installable: &FlakeInstallable, policy: &NodePolicy) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "eval",
        "--json",
        "--no-write-lock-file",
        "--extra-experimental-features",
        "nix-command flakes",
        "--option",
        "accept-flake-config",
        "false",
        "--option",
        "pure-eval",
        "true",
        "--option",
        "system",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.push(policy.system.clone().into());
    args.push("--apply".into());
    args.push(APPLY_EXPR.into());
    args.push("--".into());
    args.push(installable_argument(installable, policy).into());
    args
}

/// Runs the evaluation under `deadline` with `runner`, killing nix (and anything it started)
/// when it passes.
pub async fn evaluate(
    installable: &FlakeInstallable,
    policy: &NodePolicy,
    deadline: Duration,
    runner: &dyn ProcessRunner,
) -> Result<FlakeEvaluation, EvalError> {
    let shown = installable_argument(installable, policy);
    let stdout = match run_nix(eval_args(installable, policy), policy, deadline, runner).await {
        Ok(stdout) => stdout,
        Err(err) => return Err(err.into_eval_error(shown, policy, deadline)),
    };
    parse_output(&stdout).map_err(|err| match err {
        OutputError::Json(message) => EvalError::Output {
            installable: shown,
            message,
        },
        OutputError::StorePath(source) => EvalError::StorePath {
            installable: shown,
            source,
        },
    })
}

/// Why a `nix` process gave no output.
pub(crate) enum NixRunError {
    /// It did not start.
    Spawn(std::io::Error),
    /// It exited with an error; the cleaned-up tail of its stderr.
    Failed(String),
    /// The deadline passed; it was killed.
    Timeout,
}

impl NixRunError {
    /// The evaluation error of `shown` this run error is.
    pub(crate) fn into_eval_error(
        self,
        shown: String,
        policy: &NodePolicy,
        deadline: Duration,
    ) -> EvalError {
        match self {
            NixRunError::Spawn(source) => EvalError::Spawn {
                installable: shown,
                program: policy.nix_command.clone(),
                source,
            },
            NixRunError::Failed(message) => EvalError::Failed {
                installable: shown,
                message,
            },
            NixRunError::Timeout => EvalError::Timeout {
                installable: shown,
                after: deadline,
            },
        }
    }
}

/// Runs `policy.nix_command` with `args` (an argument vector, never a shell) in a clean
/// environment and a process group of its own, under `deadline`; its stdout when it succeeds.
pub(crate) async fn run_nix(
    args: Vec<OsString>,
    policy: &NodePolicy,
    deadline: Duration,
    runner: &dyn ProcessRunner,
) -> Result<Vec<u8>, NixRunError> {
    let mut command = tokio::process::Command::new(&policy.nix_command);
    command
        .args(args)
        .env_clear()
        .envs(eval_env(policy))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let pid = Arc::new(AtomicU32::new(0));
    let output = match tokio::time::timeout(deadline, runner.output(command, pid.clone())).await {
        Ok(result) => result.map_err(NixRunError::Spawn)?,
        Err(_) => {
            if let Ok(pid) = i32::try_from(pid.load(Ordering::SeqCst))
                && pid > 0
            {
                // The child was started as the leader of its own group; kill the whole group so
                // fetchers it spawned go too. The child itself is reaped by kill_on_drop.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return Err(NixRunError::Timeout);
        }
    };
    if !output.status.success() {
        return Err(NixRunError::Failed(error_message(&output.stderr)));
    }
    Ok(output.stdout)
}

/// The environment nix runs with: nothing inherited but what it needs.
fn eval_env(policy: &NodePolicy) -> Vec<(OsString, OsString)> {
    let cache = policy.state_dir.join("nix-cache");
    let mut env = vec![
        ("NIX_REMOTE".into(), "daemon".into()),
        (
            "NIX_DAEMON_SOCKET_PATH".into(),
            policy.daemon_socket.clone().into(),
        ),
        ("XDG_CACHE_HOME".into(), cache.into()),
        ("HOME".into(), policy.state_dir.clone().into()),
        ("NO_COLOR".into(), "1".into()),
    ];
    for inherited in ["PATH", "NIX_SSL_CERT_FILE", "SSL_CERT_FILE", "TMPDIR"] {
        if let Some(value) = std::env::var_os(inherited) {
            env.push((inherited.into(), value));
        }
    }
    env
}

enum OutputError {
    Json(String),
    StorePath(StorePathError),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEvaluation {
    drv_path: String,
    outputs: BTreeMap<String, String>,
    name: Option<String>,
    pname: Option<String>,
    version: Option<String>,
    main_program: Option<String>,
}

fn parse_output(stdout: &[u8]) -> Result<FlakeEvaluation, OutputError> {
    if stdout.len() > MAX_OUTPUT {
        return Err(OutputError::Json(format!(
            "{} bytes of output, more than the {MAX_OUTPUT} accepted",
            stdout.len()
        )));
    }
    let raw: RawEvaluation =
        serde_json::from_slice(stdout).map_err(|err| OutputError::Json(err.to_string()))?;
    if raw.outputs.is_empty() {
        return Err(OutputError::Json("the package has no outputs".into()));
    }
    let outputs = raw
        .outputs
        .into_iter()
        .map(|(name, path)| Ok((name, StorePath::parse(&path)?)))
        .collect::<Result<_, StorePathError>>()
        .map_err(OutputError::StorePath)?;
    Ok(FlakeEvaluation {
        drv_path: StorePath::parse(&raw.drv_path).map_err(OutputError::StorePath)?,
        outputs,
        name: raw.name,
        pname: raw.pname,
        version: raw.version,
        main_program: raw.main_program,
    })
}

/// The useful part of nix's stderr: colour codes stripped, the tail kept, `error:` lines first.
fn error_message(stderr: &[u8]) -> String {
    let text = strip_ansi(&String::from_utf8_lossy(stderr));
    let text = text.trim();
    let text = text
        .find("error:")
        .map_or(text, |start| &text[start..])
        .trim();
    if text.len() <= STDERR_TAIL {
        return text.to_owned();
    }
    let mut start = text.len() - STDERR_TAIL;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> NodePolicy {
        NodePolicy {
            system: "x86_64-linux".into(),
            ..NodePolicy::default()
        }
    }

    #[test]
    fn default_attribute_follows_nix_build() {
        let bare = FlakeInstallable::parse("github:org/app").unwrap();
        assert_eq!(
            installable_argument(&bare, &policy()),
            "github:org/app#packages.x86_64-linux.default"
        );
        let explicit = FlakeInstallable::parse("github:org/app#server").unwrap();
        assert_eq!(
            installable_argument(&explicit, &policy()),
            "github:org/app#server"
        );
    }

    #[test]
    fn command_is_safe_by_construction() {
        let installable = FlakeInstallable::parse("github:org/app/v1.2#default").unwrap();
        let args = eval_args(&installable, &policy());
        let args: Vec<&str> = args.iter().map(|a| a.to_str().unwrap()).collect();
        let dash_dash = args.iter().position(|a| *a == "--").unwrap();
        assert_eq!(&args[dash_dash + 1..], ["github:org/app/v1.2#default"]);
        assert!(args.contains(&"--no-write-lock-file"));
        assert!(!args.contains(&"--impure"));
        let accept = args
            .iter()
            .position(|a| *a == "accept-flake-config")
            .unwrap();
        assert_eq!(args[accept + 1], "false");
        assert_eq!(args[0], "eval");
    }

    #[test]
    fn parses_evaluations() {
        let out = br#"{"drvPath":"/nix/store/ar25pqwqc1pfzvpw69sln376hqy1bn07-hello-1.0.drv",
            "outputs":{"out":"/nix/store/0c1h5b3ldrb1d8jq6ln5ai3k06h3ipm8-hello-1.0"},
            "name":"hello-1.0","pname":"hello","version":"1.0","mainProgram":null}"#;
        let Ok(eval) = parse_output(out) else {
            panic!("valid output refused")
        };
        assert_eq!(eval.outputs["out"].name(), "hello-1.0");
        assert_eq!(eval.default_program().as_deref(), Some("hello"));
        let unnamed = FlakeEvaluation {
            pname: None,
            ..eval.clone()
        };
        assert_eq!(unnamed.default_program().as_deref(), Some("hello"));
        let with_main = FlakeEvaluation {
            main_program: Some("hi".into()),
            ..eval
        };
        assert_eq!(with_main.default_program().as_deref(), Some("hi"));
    }

    #[test]
    fn refuses_bad_output() {
        for (out, expected) in [
            (&b"not json"[..], "expected ident"),
            (
                br#"{"drvPath":"/tmp/x","outputs":{"out":"/tmp/y"}}"#,
                "not under /nix/store",
            ),
            (
                br#"{"drvPath":"/nix/store/ar25pqwqc1pfzvpw69sln376hqy1bn07-h.drv","outputs":{}}"#,
                "no outputs",
            ),
            (
                br#"{"drvPath":"x","outputs":{},"extra":1}"#,
                "unknown field",
            ),
        ] {
            let message = match parse_output(out) {
                Err(OutputError::Json(message)) => message,
                Err(OutputError::StorePath(err)) => err.to_string(),
                Ok(_) => panic!("accepted {}", String::from_utf8_lossy(out)),
            };
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn error_messages_are_clean() {
        let stderr = b"warning: Git tree is dirty\n\x1b[31;1merror:\x1b[0m flake 'path:/x' does not provide attribute 'packages.x86_64-linux.nope'\n";
        assert_eq!(
            error_message(stderr),
            "error: flake 'path:/x' does not provide attribute 'packages.x86_64-linux.nope'"
        );
        let long = format!("error: {}", "x".repeat(10_000));
        assert!(error_message(long.as_bytes()).len() <= STDERR_TAIL + 3);
    }
}
