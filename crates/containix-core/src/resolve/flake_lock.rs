//! Locking a flake ref: from a ref that may move (`github:org/app`, a branch; `path:/srv/app`,
//! a folder that may be edited) to the locked ref Nix fetches for it now (a `rev` and a
//! `narHash`), with `nix flake metadata`. A locked ref always evaluates to the same result, so
//! evaluations are cached per locked ref ([`crate::resolve::cache`]) and a changed source gets
//! a new lock and a new evaluation.
//!
//! The command is an argument vector with the ref after `--`, no lock file is written and a
//! flake's `nixConfig` is never accepted, as for evaluation.

use std::ffi::OsString;
use std::time::Duration;

use serde::Deserialize;

use crate::request::flake_ref::FlakeRef;
use crate::request::policy::node_policy::NodePolicy;
use crate::resolve::flake_eval::{EvalError, MAX_OUTPUT, NixRunError, run_nix};
use crate::resolve::process_runner::ProcessRunner;

/// A flake ref, locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedFlake {
    /// The locked ref: the same source with the `rev` and `narHash` Nix fetched.
    pub locked: FlakeRef,
}

/// The argument vector that locks `flake`, without the program name.
pub fn lock_args(flake: &FlakeRef) -> Vec<OsString> {
    [
        "flake",
        "metadata",
        "--json",
        "--no-write-lock-file",
        "--extra-experimental-features",
        "nix-command flakes",
        "--option",
        "accept-flake-config",
        "false",
        "--",
    ]
    .into_iter()
    .map(OsString::from)
    .chain([OsString::from(flake.to_nix_arg())])
    .collect()
}

/// Locks `flake` under `deadline` with `runner`.
pub async fn lock(
    flake: &FlakeRef,
    policy: &NodePolicy,
    deadline: Duration,
    runner: &dyn ProcessRunner,
) -> Result<LockedFlake, EvalError> {
    let shown = flake.to_string();
    let stdout = match run_nix(lock_args(flake), policy, deadline, runner).await {
        Ok(stdout) => stdout,
        Err(NixRunError::Failed(message)) => {
            return Err(EvalError::Lock {
                flake: shown,
                message,
            });
        }
        Err(other) => return Err(other.into_eval_error(shown, policy, deadline)),
    };
    parse_metadata(&stdout).map_err(|message| EvalError::Lock {
        flake: shown,
        message,
    })
}

#[derive(Deserialize)]
struct Metadata {
    url: String,
}

/// The locked ref in `nix flake metadata --json` output.
fn parse_metadata(stdout: &[u8]) -> Result<LockedFlake, String> {
    if stdout.len() > MAX_OUTPUT {
        return Err(format!(
            "{} bytes of output from nix, more than the {MAX_OUTPUT} accepted",
            stdout.len()
        ));
    }
    let metadata: Metadata = serde_json::from_slice(stdout)
        .map_err(|err| format!("unexpected output from nix: {err}"))?;
    let locked = FlakeRef::parse(&metadata.url)
        .map_err(|err| format!("nix locked it to a ref containix cannot read: {err}"))?;
    if !locked.is_locked() {
        return Err(format!(
            "nix locked it to `{locked}`, which pins no revision or content hash"
        ));
    }
    Ok(LockedFlake { locked })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_nix_2_8_prints_for_a_path_flake() {
        let out = br#"{"lastModified":1796366753,"locked":{"lastModified":1796366753,"narHash":"sha256-XYSU8ZjNpcasPc+VY8vXBYxXBs5/Pxga7xq07eZoWbo=","path":"/tmp/evt-f6Jp","type":"path"},"locks":{"nodes":{"root":{}},"root":"root","version":7},"original":{"path":"/tmp/evt-f6Jp","type":"path"},"originalUrl":"path:/tmp/evt-f6Jp","path":"/nix/store/r73l8rzdnwii9n94cwlcpvsvnb4by3i7-source","resolved":{"path":"/tmp/evt-f6Jp","type":"path"},"resolvedUrl":"path:/tmp/evt-f6Jp","url":"path:/tmp/evt-f6Jp?lastModified=1796366753&narHash=sha256-XYSU8ZjNpcasPc+VY8vXBYxXBs5%2fPxga7xq07eZoWbo="}"#;
        let locked = parse_metadata(out).unwrap().locked;
        assert!(locked.is_locked());
        assert_eq!(
            locked.nar_hash(),
            Some("sha256-XYSU8ZjNpcasPc+VY8vXBYxXBs5/Pxga7xq07eZoWbo=")
        );
        // It prints and parses back to itself, so it can key a cache.
        assert_eq!(FlakeRef::parse(&locked.to_string()).unwrap(), locked);
    }

    #[test]
    fn reads_a_forge_lock_and_refuses_unlocked_or_odd_answers() {
        let rev = "0123456789abcdef0123456789abcdef01234567";
        let out = format!(
            r#"{{"url":"github:org/app/{rev}?lastModified=1&narHash=sha256-XYSU8ZjNpcasPc%2bVY8vXBYxXBs5%2fPxga7xq07eZoWbo%3d"}}"#
        );
        let locked = parse_metadata(out.as_bytes()).unwrap().locked;
        assert_eq!(locked.rev(), Some(rev));
        for (out, expected) in [
            (&br#"{"url":"github:org/app"}"#[..], "pins no revision"),
            (br#"{"url":"--impure"}"#, "cannot read"),
            (b"nope", "unexpected output"),
        ] {
            let err = parse_metadata(out).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn the_ref_comes_last_after_a_double_dash() {
        let flake = FlakeRef::parse("github:org/app").unwrap();
        let args = lock_args(&flake);
        let n = args.len();
        assert_eq!(args[n - 2], "--");
        assert_eq!(args[n - 1], "github:org/app");
        assert!(args.iter().any(|a| a == "--no-write-lock-file"));
    }
}
