//! One entry of `allowed-flake-prefixes`, parsed into a typed rule about where a flake may be
//! fetched from.
//!
//! | rule | allows |
//! |---|---|
//! | `github:` | any repository on github.com (a `?host=` elsewhere is refused) |
//! | `github:my-org/` (or `github:my-org`) | the repositories of owner `my-org` on github.com |
//! | `github:my-org/app` | that one repository |
//! | `github:my-org/?host=ghe.example.com` | owner `my-org` on that GitHub Enterprise host |
//! | `gitlab:group/sub/` | projects in that group and subgroup (`gitlab:group%2Fsub/...`) |
//! | `git+https:` | Git over HTTPS from any host |
//! | `git+https://git.example.com/team/` | Git over HTTPS from that host, paths under `/team/` |
//! | `git+ssh://git@host/team/` | Git over SSH as user `git` (any user when none is given) |
//! | `https:`, `tarball+https:` (`http:`, `tarball+http:`) | tarballs over HTTPS (HTTP) from any host; `https://host/dir/` narrows it |
//! | `file+https:` (`file+http:`) | single files over HTTPS (HTTP) |
//! | `path:/srv/flakes` | anything on the node inside that folder: `path:`, bare paths, `git+file:` repositories and `file:` archives |
//! | `git+file:///srv/repos` | Git repositories inside that folder |
//! | `file:///srv/archives` | archives and files inside that folder (`tarball+file:`, `file+file:` narrow it) |
//! | `flake:nixpkgs` (`flake:`) | that registry id (any); the node's registry decides the source |
//!
//! Owners, repositories, URL paths and folders are compared as whole segments, so
//! `github:my-org/` does not allow `github:my-org-evil/x` and `path:/srv/flakes` does not allow
//! `/srv/flakesX`. A rule may add `?submodules=1` (Git and `path:` rules) to allow refs that
//! fetch Git submodules, whose URLs the policy cannot see. Whitespace, control characters, a
//! leading `-`, upper-case schemes and `.`/`..` segments are refused.

use std::fmt;
use std::path::PathBuf;

use crate::request::flake_ref::location::{forge_segments, url_segments};
use crate::request::flake_ref::syntax::{is_valid_host, is_valid_name};
use crate::request::flake_ref::{Forge, LocationError};

/// The longest rule accepted (a path or URL is at most this long on Linux).
pub const MAX_RULE_LEN: usize = 4096;

/// A parsed `allowed-flake-prefixes` entry. Prints as it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlakeRule {
    text: String,
    kind: RuleKind,
    submodules: bool,
}

/// What a rule allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RuleKind {
    /// A forge at one host; `path` is a prefix of owner segments and repository.
    Forge {
        forge: Forge,
        host: String,
        path: Vec<String>,
    },
    /// URLs of the given ref schemes; any host when `authority` is `None`.
    Remote {
        schemes: &'static [&'static str],
        authority: Option<Authority>,
        path: Vec<String>,
    },
    /// Files and folders on the node of the given ref schemes, inside `folder` (anywhere when
    /// `None`).
    Local {
        schemes: &'static [&'static str],
        folder: Option<PathBuf>,
    },
    /// A registry id (any when `None`).
    Indirect { id: Option<String> },
}

/// A URL rule's `[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Authority {
    pub(super) user: Option<String>,
    /// Lower case.
    pub(super) host: String,
    /// `None` for the protocol's default port.
    pub(super) port: Option<u16>,
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// Why an `allowed-flake-prefixes` entry is not a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("empty; expected a scheme such as \"github:\" or a prefix such as \"github:my-org/\"")]
    Empty,
    #[error(
        "has whitespace, a control or a non-ASCII character; write the prefix exactly, without \
         surrounding spaces"
    )]
    BadCharacter,
    #[error("starts with `-`")]
    LeadingDash,
    #[error("has a `#`; a rule names where flakes come from, not an attribute")]
    Fragment,
    #[error(
        "has no scheme; write bare paths as \"path:/dir\" and registry names as \"flake:<id>\""
    )]
    NoScheme,
    #[error(
        "unknown scheme `{0}:` (schemes are lower case: github, gitlab, sourcehut, git+https, \
         git+http, git+ssh, git+file, path, https, http, file, tarball+https, tarball+http, \
         tarball+file, file+https, file+http, file+file, flake)"
    )]
    UnknownScheme(String),
    #[error("longer than {MAX_RULE_LEN} bytes")]
    TooLong,
    #[error("{0}")]
    Invalid(String),
    #[error(
        "query parameter `{0}` is not allowed here (rules take `host=` on forges and `submodules=1` on Git and path rules)"
    )]
    UnsupportedQuery(String),
}

impl FlakeRule {
    /// Parses one `allowed-flake-prefixes` entry.
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        if text.is_empty() {
            return Err(RuleError::Empty);
        }
        if text.len() > MAX_RULE_LEN {
            return Err(RuleError::TooLong);
        }
        if !text.chars().all(|c| c.is_ascii_graphic()) {
            return Err(RuleError::BadCharacter);
        }
        if text.starts_with('-') {
            return Err(RuleError::LeadingDash);
        }
        if text.contains('#') {
            return Err(RuleError::Fragment);
        }
        let (body, query) = match text.split_once('?') {
            Some((body, query)) => (body, Some(query)),
            None => (text, None),
        };
        let (scheme, rest) = body.split_once(':').ok_or(RuleError::NoScheme)?;
        let mut host = None;
        let mut submodules = false;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("host", value)) if host.is_none() => host = Some(value),
                Some(("submodules", "1")) if !submodules => submodules = true,
                _ => return Err(RuleError::UnsupportedQuery(pair.to_owned())),
            }
        }
        let kind = match scheme {
            "github" => forge_rule(Forge::GitHub, rest, host)?,
            "gitlab" => forge_rule(Forge::GitLab, rest, host)?,
            "sourcehut" => forge_rule(Forge::SourceHut, rest, host)?,
            "git+https" => remote_rule(&["git+https"], "https", rest)?,
            "git+http" => remote_rule(&["git+http"], "http", rest)?,
            "git+ssh" => remote_rule(&["git+ssh"], "ssh", rest)?,
            // `https://host/x.tar.gz` is a tarball: the plain scheme names what its refs name.
            "https" => remote_rule(&["tarball+https"], "https", rest)?,
            "http" => remote_rule(&["tarball+http"], "http", rest)?,
            "tarball+https" => remote_rule(&["tarball+https"], "https", rest)?,
            "tarball+http" => remote_rule(&["tarball+http"], "http", rest)?,
            "file+https" => remote_rule(&["file+https"], "https", rest)?,
            "file+http" => remote_rule(&["file+http"], "http", rest)?,
            "path" => local_rule(
                &["path", "git+file", "tarball+file", "file+file"],
                rest,
                false,
            )?,
            "git+file" => local_rule(&["git+file"], rest, true)?,
            "file" => local_rule(&["tarball+file", "file+file"], rest, true)?,
            "tarball+file" => local_rule(&["tarball+file"], rest, true)?,
            "file+file" => local_rule(&["file+file"], rest, true)?,
            "flake" => indirect_rule(rest)?,
            other => return Err(RuleError::UnknownScheme(other.to_owned())),
        };
        if host.is_some() && !matches!(kind, RuleKind::Forge { .. }) {
            return Err(RuleError::UnsupportedQuery("host".to_owned()));
        }
        let git_capable = matches!(
            &kind,
            RuleKind::Remote { schemes, .. } | RuleKind::Local { schemes, .. }
                if schemes.iter().any(|s| s.starts_with("git+"))
        );
        if submodules && !git_capable {
            return Err(RuleError::UnsupportedQuery("submodules".to_owned()));
        }
        Ok(FlakeRule {
            text: text.to_owned(),
            kind,
            submodules,
        })
    }

    /// The rule as written in the policy.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the rule is about files and folders on the node.
    pub fn is_local(&self) -> bool {
        matches!(self.kind, RuleKind::Local { .. })
    }

    pub(super) fn kind(&self) -> &RuleKind {
        &self.kind
    }

    pub(super) fn allows_submodules(&self) -> bool {
        self.submodules
    }
}

impl fmt::Display for FlakeRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for FlakeRule {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn invalid(message: impl Into<String>) -> RuleError {
    RuleError::Invalid(message.into())
}

fn location_error(err: LocationError) -> RuleError {
    invalid(err.to_string())
}

fn forge_rule(forge: Forge, rest: &str, host: Option<&str>) -> Result<RuleKind, RuleError> {
    let host = match host {
        Some(host) if is_valid_host(host) => host.to_ascii_lowercase(),
        Some(host) => {
            return Err(invalid(format!(
                "`host={host}` is not a host name with an optional `:<port>`"
            )));
        }
        None => forge.default_host().to_owned(),
    };
    // GitLab subgroups may be written `group%2Fsub`; they are segments all the same.
    let path = forge_segments(rest).map_err(location_error)?;
    let max = if forge == Forge::GitLab {
        usize::MAX
    } else {
        2
    };
    if path.len() > max {
        return Err(invalid(format!(
            "`{}:` rules name at most an owner and a repository",
            forge.scheme()
        )));
    }
    for (index, segment) in path.iter().enumerate() {
        let name = match (forge, index) {
            (Forge::SourceHut, 0) => segment.strip_prefix('~').unwrap_or(""),
            _ => segment.as_str(),
        };
        if !is_valid_name(name) {
            return Err(invalid(format!(
                "`{segment}` is not an owner or repository name (letters, digits, `.`, `_`, `-`{})",
                if forge == Forge::SourceHut && index == 0 {
                    ", after a `~`"
                } else {
                    ""
                }
            )));
        }
    }
    Ok(RuleKind::Forge { forge, host, path })
}

fn remote_rule(
    schemes: &'static [&'static str],
    proto: &str,
    rest: &str,
) -> Result<RuleKind, RuleError> {
    if rest.is_empty() {
        return Ok(RuleKind::Remote {
            schemes,
            authority: None,
            path: Vec::new(),
        });
    }
    let after = rest
        .strip_prefix("//")
        .ok_or_else(|| invalid("expected `//<host>[/<path>]` after the scheme"))?;
    let (authority, path) = match after.find('/') {
        Some(at) => after.split_at(at),
        None => (after, ""),
    };
    let (user, host_port) = match authority.split_once('@') {
        Some((user, host_port)) if proto == "ssh" && is_valid_name(user) => {
            (Some(user.to_owned()), host_port)
        }
        Some(_) if proto == "ssh" => return Err(invalid("invalid user name before `@`")),
        Some(_) => {
            return Err(invalid(
                "user names and passwords do not belong in an http(s) rule",
            ));
        }
        None => (None, authority),
    };
    if !is_valid_host(host_port) {
        return Err(invalid(format!(
            "`{host_port}` is not a host name with an optional `:<port>`"
        )));
    }
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse::<u16>().ok()),
        _ => (host_port, None),
    };
    let default_port = match proto {
        "https" => 443,
        "http" => 80,
        _ => 22,
    };
    Ok(RuleKind::Remote {
        schemes,
        authority: Some(Authority {
            user,
            host: host.to_ascii_lowercase(),
            port: port.filter(|p| *p != default_port),
        }),
        path: url_segments(path).map_err(location_error)?,
    })
}

fn local_rule(
    schemes: &'static [&'static str],
    rest: &str,
    url: bool,
) -> Result<RuleKind, RuleError> {
    if rest.is_empty() {
        return Ok(RuleKind::Local {
            schemes,
            folder: None,
        });
    }
    let path = if url {
        match rest.strip_prefix("//") {
            Some(after) if after.starts_with('/') => after,
            Some(_) => return Err(invalid("`file:` URLs take no host: expected `///<folder>`")),
            None => rest,
        }
    } else {
        rest
    };
    if !path.starts_with('/') {
        return Err(invalid(format!(
            "`{path}` is not an absolute folder such as `/srv/flakes`"
        )));
    }
    let segments = url_segments(path).map_err(|err| match err {
        LocationError::DotSegment(_) | LocationError::EmptySegment => {
            invalid("write the folder without `.`, `..` or empty segments")
        }
        other => location_error(other),
    })?;
    let folder = segments
        .iter()
        .fold(PathBuf::from("/"), |folder, segment| folder.join(segment));
    Ok(RuleKind::Local {
        schemes,
        folder: Some(folder),
    })
}

fn indirect_rule(rest: &str) -> Result<RuleKind, RuleError> {
    if rest.is_empty() {
        return Ok(RuleKind::Indirect { id: None });
    }
    let mut chars = rest.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(invalid(format!(
            "`{rest}` is not a registry id (a letter followed by letters, digits, `_` or `-`)"
        )));
    }
    Ok(RuleKind::Indirect {
        id: Some(rest.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_into_what_they_allow() {
        let kind = |text: &str| FlakeRule::parse(text).unwrap().kind;
        assert_eq!(
            kind("github:my-org/"),
            RuleKind::Forge {
                forge: Forge::GitHub,
                host: "github.com".into(),
                path: vec!["my-org".into()],
            }
        );
        assert_eq!(kind("github:my-org"), kind("github:my-org/"));
        assert_eq!(
            kind("gitlab:group%2Fsub/?host=GitLab.Example.org"),
            RuleKind::Forge {
                forge: Forge::GitLab,
                host: "gitlab.example.org".into(),
                path: vec!["group".into(), "sub".into()],
            }
        );
        assert_eq!(
            kind("git+ssh://git@Host.example:22/team/"),
            RuleKind::Remote {
                schemes: &["git+ssh"],
                authority: Some(Authority {
                    user: Some("git".into()),
                    host: "host.example".into(),
                    port: None,
                }),
                path: vec!["team".into()],
            }
        );
        assert_eq!(
            kind("https:"),
            RuleKind::Remote {
                schemes: &["tarball+https"],
                authority: None,
                path: vec![],
            }
        );
        assert_eq!(
            kind("path:/srv/flakes/"),
            RuleKind::Local {
                schemes: &["path", "git+file", "tarball+file", "file+file"],
                folder: Some("/srv/flakes".into()),
            }
        );
        assert_eq!(kind("path:/srv/flakes"), kind("path:/srv/flakes/"));
        assert_eq!(
            kind("git+file:///srv/repos"),
            RuleKind::Local {
                schemes: &["git+file"],
                folder: Some("/srv/repos".into()),
            }
        );
        assert_eq!(
            kind("flake:nixpkgs"),
            RuleKind::Indirect {
                id: Some("nixpkgs".into())
            }
        );
        let rule = FlakeRule::parse("git+https://h.example/?submodules=1").unwrap();
        assert!(rule.allows_submodules());
        assert_eq!(rule.to_string(), "git+https://h.example/?submodules=1");
    }

    #[test]
    fn hostile_and_malformed_rules_are_refused_with_the_reason() {
        for (text, expected) in [
            ("", "empty"),
            (" github:my-org/", "whitespace"),
            ("github:my-org/ ", "whitespace"),
            ("github:my\u{0}org/", "control"),
            ("github:my-örg/", "non-ASCII"),
            ("--impure", "starts with `-`"),
            ("-github:", "starts with `-`"),
            ("github:org#x", "`#`"),
            ("/srv/flakes", "no scheme"),
            ("nixpkgs", "no scheme"),
            ("GitHub:my-org/", "unknown scheme `GitHub:`"),
            ("svn:", "unknown scheme"),
            ("github:../x", "`..` segment"),
            ("github:a/b/c", "at most an owner and a repository"),
            ("github:a?host=-evil", "`host=-evil`"),
            ("github:a?dir=x", "query parameter `dir=x`"),
            ("github:?submodules=1", "`submodules`"),
            ("git+https:?host=x.org", "`host`"),
            ("git+https:x.org", "expected `//<host>"),
            ("https://user:pw@x.org/", "user names and passwords"),
            ("git+https://x.org/a/../b/", "`..` segment"),
            ("git+https://x.org/a%2Fb/", "decodes to a `/`"),
            ("path:srv/flakes", "not an absolute folder"),
            ("path:/srv/flakes/../other", "without `.`, `..`"),
            ("path:/srv//flakes", "without `.`, `..`"),
            ("file://host/x", "take no host"),
            ("flake:1x", "not a registry id"),
        ] {
            let err = FlakeRule::parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }
}
