//! Environment edits: the package's `bin` directories first on `PATH`, CA bundle variables when
//! the closure ships certificates and the pod did not choose its own.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::assemble::program::within_closure;
use crate::assemble::store_facts::{Entry, Outcome, StoreFacts, resolve_within};
use crate::store::members::Members;
use crate::store::store_path::StorePath;

/// One change to the process environment, applied without I/O and idempotently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvEdit {
    /// Put these directories first on `PATH`, ahead of the entries already there (which keep
    /// their order, minus duplicates of these).
    PrependPath(Vec<String>),
    /// Set `name` to `value` unless the environment already has `name`.
    SetDefault {
        /// Variable name.
        name: String,
        /// Value to set.
        value: String,
    },
}

/// Variables pointing TLS libraries at a CA bundle (OpenSSL and Nix's own convention).
pub const CA_BUNDLE_VARIABLES: [&str; 2] = ["SSL_CERT_FILE", "NIX_SSL_CERT_FILE"];

/// Where CA bundles live inside store paths, in order of preference.
pub const CA_BUNDLE_LOCATIONS: [&str; 2] = [
    "etc/ssl/certs/ca-bundle.crt",
    "etc/ssl/certs/ca-certificates.crt",
];

/// The value of `name` in a `NAME=value` list (the first entry wins, as with `getenv`).
pub fn lookup<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    env.iter().find_map(|entry| {
        entry
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

/// The first CA bundle in the closure: roots first (in order), then the other members in store
/// order. Only regular files reached through closure members count.
pub fn find_ca_bundle(
    view: &dyn StoreFacts,
    closure: &dyn Members,
    roots: &[StorePath],
) -> std::io::Result<Option<PathBuf>> {
    let first_in = |members: &mut dyn Iterator<Item = &StorePath>| {
        for member in members {
            for location in CA_BUNDLE_LOCATIONS {
                let candidate = member.as_path().join(location);
                if is_bundle(view, closure, &candidate)? {
                    return Ok(Some(candidate));
                }
            }
        }
        Ok(None)
    };
    if let Some(bundle) = first_in(&mut roots.iter())? {
        return Ok(Some(bundle));
    }
    // Listing the members reads a view's whole directory: only when no root has a bundle.
    let members = closure.list()?;
    first_in(&mut members.iter().filter(|path| !roots.contains(path)))
}

/// Every CA bundle in the closure, in store order (and, within a member, in the order of
/// [`CA_BUNDLE_LOCATIONS`]): what [`find_ca_bundle`] chooses from, computed once for a closure
/// so that choosing ([`choose_ca_bundle`]) costs nothing per container. A store view records
/// it when it is made: store paths never change.
pub fn ca_bundles(view: &dyn StoreFacts, closure: &dyn Members) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for member in closure.list()? {
        for location in CA_BUNDLE_LOCATIONS {
            let candidate = member.as_path().join(location);
            if is_bundle(view, closure, &candidate)? {
                found.push(candidate);
            }
        }
    }
    Ok(found)
}

/// The bundle [`find_ca_bundle`] finds, chosen from the closure's [`ca_bundles`]: the first of
/// a root's (roots in order), else the first.
pub fn choose_ca_bundle(bundles: &[PathBuf], roots: &[StorePath]) -> Option<PathBuf> {
    roots
        .iter()
        .find_map(|root| {
            bundles
                .iter()
                .find(|bundle| bundle.starts_with(root.as_path()))
        })
        .or_else(|| bundles.first())
        .cloned()
}

fn is_bundle(
    view: &dyn StoreFacts,
    closure: &dyn Members,
    candidate: &Path,
) -> std::io::Result<bool> {
    let outcome = resolve_within(view, candidate, &within_closure(closure))?;
    Ok(matches!(outcome, Outcome::Found(found) if matches!(found.entry, Entry::File { .. })))
}

/// Applies `edits` to a `NAME=value` list.
pub fn apply_env(edits: &[EnvEdit], env: &mut Vec<String>) {
    for edit in edits {
        match edit {
            EnvEdit::PrependPath(dirs) => prepend_path(dirs, env),
            EnvEdit::SetDefault { name, value } => {
                if lookup(env, name).is_none() {
                    env.push(format!("{name}={value}"));
                }
            }
        }
    }
}

fn prepend_path(dirs: &[String], env: &mut Vec<String>) {
    if dirs.is_empty() {
        return;
    }
    let position = env.iter().position(|entry| entry.starts_with("PATH="));
    let mut entries: Vec<&str> = dirs.iter().map(String::as_str).collect();
    if let Some(position) = position {
        let old = &env[position]["PATH=".len()..];
        entries.extend(old.split(':').filter(|dir| !dirs.iter().any(|d| d == dir)));
    }
    let value = format!("PATH={}", entries.join(":"));
    match position {
        Some(position) => env[position] = value,
        None => env.push(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn path_is_prepended_once() {
        let edits = [EnvEdit::PrependPath(vec![
            "/s/a/bin".into(),
            "/s/b/bin".into(),
        ])];
        let mut vars = env(&["HOME=/", "PATH=/usr/bin:/s/b/bin:/bin", "X=1"]);
        apply_env(&edits, &mut vars);
        assert_eq!(
            vars,
            env(&["HOME=/", "PATH=/s/a/bin:/s/b/bin:/usr/bin:/bin", "X=1"])
        );
        let once = vars.clone();
        apply_env(&edits, &mut vars);
        assert_eq!(vars, once);

        let mut vars = env(&["X=1"]);
        apply_env(&edits, &mut vars);
        assert_eq!(vars, env(&["X=1", "PATH=/s/a/bin:/s/b/bin"]));
    }

    #[test]
    fn defaults_do_not_override_the_pod() {
        let edits = [EnvEdit::SetDefault {
            name: "SSL_CERT_FILE".into(),
            value: "/s/ca".into(),
        }];
        let mut vars = env(&["SSL_CERT_FILE=/mine", "SSL_CERT_FILEX=1"]);
        apply_env(&edits, &mut vars);
        assert_eq!(vars, env(&["SSL_CERT_FILE=/mine", "SSL_CERT_FILEX=1"]));
        let mut vars = env(&["SSL_CERT_FILEX=1"]);
        apply_env(&edits, &mut vars);
        apply_env(&edits, &mut vars);
        assert_eq!(vars, env(&["SSL_CERT_FILEX=1", "SSL_CERT_FILE=/s/ca"]));
    }
}
