//! Matching a flake ref against `allowed-flake-prefixes`: where its source really is (local
//! paths resolved on the node), which rule allows it, and why each other rule does not.
//!
//! A local ref is resolved with every symlink and `..` followed; the ref Nix is then given
//! names the resolved path explicitly ([`RuleMatch::evaluated`]), so Nix reads the folder the
//! policy checked. A bare path inside a Git work tree is what Nix reads as that work tree
//! (`git+file://<root>?dir=<sub>`), so it is checked and evaluated as one. Local paths are only
//! looked at when a local rule could apply, and a path that cannot be resolved outside every
//! allowed folder is reported like one that resolves outside them, so a refused ref does not
//! tell a pod author what exists on the node.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::request::flake_ref::{FetchLocation, FlakeRef};

use super::flake_rule::{FlakeRule, RuleKind};
use super::host_paths::{HostPaths, lexically_normal};

/// Where a flake's source comes from, as the policy compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A forge, a URL or a registry id (never [`FetchLocation::Local`]).
    Fetched(FetchLocation),
    /// A file or folder on the node, resolved. `scheme` is `path`, `git+file`, `tarball+file`
    /// or `file+file` (a bare path is `path`, or `git+file` inside a Git work tree).
    Local { scheme: &'static str, path: PathBuf },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Fetched(FetchLocation::Forge { forge, host, path }) => {
                write!(
                    f,
                    "{} repository {} on {host}",
                    forge.scheme(),
                    path.join("/")
                )
            }
            Origin::Fetched(FetchLocation::Remote {
                scheme,
                user,
                host,
                port,
                path,
            }) => {
                write!(f, "{scheme} from {host}")?;
                if let Some(port) = port {
                    write!(f, ":{port}")?;
                }
                if let Some(user) = user {
                    write!(f, " as user {user}")?;
                }
                write!(f, ", path /{}", path.join("/"))
            }
            Origin::Fetched(FetchLocation::Indirect { id }) => write!(
                f,
                "flake registry id {id} (the node's registry decides the source)"
            ),
            Origin::Fetched(FetchLocation::Local { path, .. }) => write!(f, "{path}"),
            Origin::Local { scheme, path } => {
                let what = match *scheme {
                    "git+file" => "Git work tree",
                    "tarball+file" => "archive",
                    "file+file" => "file",
                    _ => "folder",
                };
                write!(f, "{what} {} on this node", path.display())
            }
        }
    }
}

/// What one rule says about a ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// The rule allows it.
    Allows,
    /// The rule is about this kind of source and does not allow this one.
    Refuses,
    /// The rule is about another kind of source.
    DoesNotApply,
}

/// One rule's verdict and the reason, for errors and `containix policy check`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleVerdict {
    /// The rule as written.
    pub rule: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// Why, in a phrase.
    pub reason: String,
}

/// The outcome of matching one ref against a list of rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    /// Where the source comes from, when that could be established.
    pub origin: Option<Origin>,
    /// What Nix is given to evaluate: the ref with local paths resolved and written explicitly.
    /// Set when some rule allows the ref.
    pub evaluated: Option<FlakeRef>,
    /// Why the ref is refused before any rule is consulted (a URL with `..` segments, a local
    /// path that does not exist inside an allowed folder, a relative path).
    pub problem: Option<String>,
    /// Every rule's verdict, in policy order.
    pub rules: Vec<RuleVerdict>,
}

impl RuleMatch {
    /// The first rule that allows the ref.
    pub fn allowed_by(&self) -> Option<&RuleVerdict> {
        self.rules.iter().find(|r| r.verdict == Verdict::Allows)
    }
}

/// Matches `flake` against `rules`, resolving local paths through `host`.
pub fn match_rules(rules: &[FlakeRule], flake: &FlakeRef, host: &dyn HostPaths) -> RuleMatch {
    let mut result = RuleMatch {
        origin: None,
        evaluated: None,
        problem: None,
        rules: Vec::new(),
    };
    let location = match flake.fetch_location() {
        Ok(location) => location,
        Err(err) => {
            result.problem = Some(err.to_string());
            return result;
        }
    };
    let (origin, evaluated) = match location {
        FetchLocation::Local { scheme, path, bare } => {
            let folders = local_folders(rules);
            if folders.is_empty() {
                // No local rule: nothing on the node is looked at.
                result.rules = rules
                    .iter()
                    .map(|rule| does_not_apply(rule, scheme))
                    .collect();
                return result;
            }
            match resolve_local(flake, scheme, &path, bare, host, &folders).and_then(nameable) {
                Ok(resolved) => resolved,
                Err(Unresolved::Problem(problem)) => {
                    result.problem = Some(problem);
                    return result;
                }
                Err(Unresolved::Outside(scheme)) => {
                    result.rules = rules
                        .iter()
                        .map(|rule| match rule.kind() {
                            RuleKind::Local {
                                schemes,
                                folder: Some(folder),
                            } if schemes.contains(&scheme) => {
                                refuses(rule, format!("resolves outside {}", folder.display()))
                            }
                            _ => does_not_apply(rule, scheme),
                        })
                        .collect();
                    return result;
                }
            }
        }
        other => (Origin::Fetched(other), flake.clone()),
    };
    let submodules = flake.fetches_submodules();
    result.rules = rules
        .iter()
        .map(|rule| judge(rule, &origin, submodules, host))
        .collect();
    if result.allowed_by().is_some() {
        result.evaluated = Some(evaluated);
    }
    result.origin = Some(origin);
    result
}

/// The folders of local rules (`None`: anywhere), with the schemes each covers.
fn local_folders(rules: &[FlakeRule]) -> Vec<(&'static [&'static str], Option<&Path>)> {
    rules
        .iter()
        .filter_map(|rule| match rule.kind() {
            RuleKind::Local { schemes, folder } => Some((*schemes, folder.as_deref())),
            _ => None,
        })
        .collect()
}

enum Unresolved {
    /// Refused with this reason, whatever the rules.
    Problem(String),
    /// The path cannot be resolved and is not inside any allowed folder: refused like a path
    /// that resolves outside them.
    Outside(&'static str),
}

/// Resolves a local ref on the node: its origin and the ref Nix is to be given.
fn resolve_local(
    flake: &FlakeRef,
    scheme: &'static str,
    path: &str,
    bare: bool,
    host: &dyn HostPaths,
    folders: &[(&'static [&'static str], Option<&Path>)],
) -> Result<(Origin, FlakeRef), Unresolved> {
    if !path.starts_with('/') {
        return Err(Unresolved::Problem(format!(
            "`{path}` is a relative path; the node resolves only absolute ones"
        )));
    }
    let canonical = match host.canonicalize(Path::new(path)) {
        Ok(canonical) => canonical,
        Err(err) => {
            let lexical = lexically_normal(Path::new(path));
            let inside_some = folders.iter().any(|(_, folder)| {
                folder.is_none_or(|folder| lexical.starts_with(canonical_folder(folder, host)))
            });
            return Err(if inside_some {
                Unresolved::Problem(format!("`{path}` cannot be resolved: {err}"))
            } else {
                Unresolved::Outside(scheme)
            });
        }
    };
    let Some(text) = canonical.to_str() else {
        return Err(Unresolved::Problem(format!(
            "`{path}` resolves to a path that is not UTF-8"
        )));
    };
    if bare {
        // What Nix does with a bare path: the nearest enclosing Git work tree (below `/`), if
        // any, is fetched as a Git repository with the rest as `dir`.
        let root = canonical
            .ancestors()
            .filter(|dir| dir.parent().is_some())
            .find(|dir| host.exists(&dir.join(".git")));
        if let Some(root) = root {
            let subdir = canonical
                .strip_prefix(root)
                .ok()
                .and_then(Path::to_str)
                .unwrap_or("");
            let root_text = root.to_str().unwrap_or(text);
            let shallow = host.exists(&root.join(".git/shallow"));
            let evaluated = flake
                .as_git_checkout(root_text, subdir, shallow)
                .ok_or_else(|| {
                    Unresolved::Problem(format!(
                        "`{path}` is inside the Git work tree {root_text} and has a `dir` of its \
                     own, which Nix refuses"
                    ))
                })?;
            return Ok((
                Origin::Local {
                    scheme: "git+file",
                    path: root.to_owned(),
                },
                evaluated,
            ));
        }
    }
    if scheme == "path"
        && let Some(dir) = flake.dir()
    {
        // The flake is read from `<folder>/<dir>` inside the copy of the folder: a symlink
        // there must not lead out of it.
        let inner = host.canonicalize(&canonical.join(dir)).map_err(|err| {
            Unresolved::Problem(format!("`dir={dir}` cannot be resolved in {text}: {err}"))
        })?;
        if !inner.starts_with(&canonical) {
            return Err(Unresolved::Problem(format!(
                "`dir={dir}` leads out of the flake's folder {text}"
            )));
        }
    }
    let evaluated = flake
        .with_local_path(text)
        .expect("a local ref takes an absolute path");
    Ok((
        Origin::Local {
            scheme,
            path: canonical,
        },
        evaluated,
    ))
}

/// A resolved ref must be one a flake ref can name (a resolved path may hold whitespace, which
/// flake refs refuse): it must parse back from its printed form.
fn nameable((origin, evaluated): (Origin, FlakeRef)) -> Result<(Origin, FlakeRef), Unresolved> {
    match FlakeRef::parse(&evaluated.to_string()) {
        Ok(reparsed) if reparsed == evaluated => Ok((origin, evaluated)),
        _ => Err(Unresolved::Problem(format!(
            "{origin} cannot be named by a flake ref (whitespace or control characters)"
        ))),
    }
}

/// A rule's folder as the node resolves it (as written when it does not exist).
fn canonical_folder(folder: &Path, host: &dyn HostPaths) -> PathBuf {
    host.canonicalize(folder)
        .unwrap_or_else(|_| folder.to_owned())
}

fn allows(rule: &FlakeRule, reason: String) -> RuleVerdict {
    RuleVerdict {
        rule: rule.to_string(),
        verdict: Verdict::Allows,
        reason,
    }
}

fn refuses(rule: &FlakeRule, reason: String) -> RuleVerdict {
    RuleVerdict {
        rule: rule.to_string(),
        verdict: Verdict::Refuses,
        reason,
    }
}

fn does_not_apply(rule: &FlakeRule, scheme: &str) -> RuleVerdict {
    RuleVerdict {
        rule: rule.to_string(),
        verdict: Verdict::DoesNotApply,
        reason: format!("not a rule for `{scheme}:` refs"),
    }
}

/// `[a, b]` as `a/b/`, the way a prefix of segments is written.
fn prefix(segments: &[String]) -> String {
    segments.iter().map(|s| format!("{s}/")).collect()
}

const SUBMODULES: &str = "does not allow `submodules=1` (Git would fetch whatever `.gitmodules` \
                          names; add `?submodules=1` to the rule to allow it)";

/// One rule's verdict on a resolved origin.
fn judge(rule: &FlakeRule, origin: &Origin, submodules: bool, host: &dyn HostPaths) -> RuleVerdict {
    match (rule.kind(), origin) {
        (
            RuleKind::Forge {
                forge: rule_forge,
                host: rule_host,
                path: rule_path,
            },
            Origin::Fetched(FetchLocation::Forge { forge, host, path }),
        ) if rule_forge == forge => {
            if rule_host != host {
                refuses(rule, format!("allows host {rule_host}, not {host}"))
            } else if !path.starts_with(rule_path) {
                refuses(
                    rule,
                    format!("allows {}…, not {}", prefix(rule_path), path.join("/")),
                )
            } else {
                allows(rule, format!("{} on {host}", path.join("/")))
            }
        }
        (
            RuleKind::Remote {
                schemes,
                authority,
                path: rule_path,
            },
            Origin::Fetched(FetchLocation::Remote {
                scheme,
                user,
                host,
                port,
                path,
            }),
        ) if schemes.contains(scheme) => {
            if let Some(authority) = authority {
                let same_user = authority.user.is_none() || authority.user == *user;
                if authority.host != *host || authority.port != *port || !same_user {
                    let mut given = String::new();
                    if let Some(user) = user {
                        given.push_str(&format!("{user}@"));
                    }
                    given.push_str(host);
                    if let Some(port) = port {
                        given.push_str(&format!(":{port}"));
                    }
                    return refuses(rule, format!("allows {authority}, not {given}"));
                }
            }
            if !path.starts_with(rule_path) {
                refuses(
                    rule,
                    format!(
                        "allows paths under /{}, not /{}",
                        prefix(rule_path),
                        path.join("/")
                    ),
                )
            } else if submodules && !rule.allows_submodules() {
                refuses(rule, SUBMODULES.to_owned())
            } else {
                allows(rule, format!("{scheme} from {host}"))
            }
        }
        (RuleKind::Local { schemes, folder }, Origin::Local { scheme, path })
            if schemes.contains(scheme) =>
        {
            if let Some(folder) = folder
                && !path.starts_with(canonical_folder(folder, host))
            {
                refuses(rule, format!("resolves outside {}", folder.display()))
            } else if submodules && !rule.allows_submodules() {
                refuses(rule, SUBMODULES.to_owned())
            } else {
                allows(rule, format!("{}", path.display()))
            }
        }
        (RuleKind::Indirect { id: rule_id }, Origin::Fetched(FetchLocation::Indirect { id })) => {
            match rule_id {
                Some(rule_id) if rule_id != id => {
                    refuses(rule, format!("allows registry id {rule_id}, not {id}"))
                }
                _ => allows(rule, format!("registry id {id}")),
            }
        }
        (_, origin) => does_not_apply(rule, origin_scheme(origin)),
    }
}

/// The scheme an origin is reported under.
fn origin_scheme(origin: &Origin) -> &'static str {
    match origin {
        Origin::Fetched(FetchLocation::Forge { forge, .. }) => forge.scheme(),
        Origin::Fetched(FetchLocation::Remote { scheme, .. })
        | Origin::Fetched(FetchLocation::Local { scheme, .. })
        | Origin::Local { scheme, .. } => scheme,
        Origin::Fetched(FetchLocation::Indirect { .. }) => "flake",
    }
}
