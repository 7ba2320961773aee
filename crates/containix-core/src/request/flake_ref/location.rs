//! Where a flake reference's source is fetched from, normalised so that the node policy can
//! compare it part by part: a forge and its host, a URL's host and path segments, a file or
//! folder on the node, or a registry id.
//!
//! Everything that changes where Nix fetches from is folded in: a forge's `?host=` (Nix asks
//! that host's API instead of the forge's own), a URL's user, host and port. Parameters that
//! only pick content inside the source (`ref`, `rev`, `dir`, `narHash`, ...) do not change the
//! location; `submodules=1` (Git fetches whatever `.gitmodules` names) is reported separately
//! by [`FlakeRef::fetches_submodules`].

use super::encoding::decode;
use super::reference::FlakeRef;
use super::source::{FetchTransport, FlakeSource, Forge, GitTransport};

/// The place a flake's source comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FetchLocation {
    /// A forge. `host` is the `?host=` given (with its port, if any), else the forge's default
    /// host, in lower case; `path` is the owner's segments (GitLab subgroups split at `/`) and
    /// then the repository.
    Forge {
        forge: Forge,
        host: String,
        path: Vec<String>,
    },
    /// A URL fetched over the network. `scheme` is [`FlakeRef::scheme`] (`git+https`,
    /// `tarball+https`, `file+http`, ...); `host` is lower case; `port` is `None` for the
    /// protocol's default port; `path` holds the decoded segments.
    Remote {
        scheme: &'static str,
        user: Option<String>,
        host: String,
        port: Option<u16>,
        path: Vec<String>,
    },
    /// A file or folder on this machine (`path:`, a bare path, `git+file:`, `tarball+file:`,
    /// `file+file:`): the decoded path as written, neither made absolute nor canonicalised.
    Local {
        scheme: &'static str,
        path: String,
        bare: bool,
    },
    /// A flake registry id: the registry decides where it comes from.
    Indirect { id: String },
}

/// Why a URL cannot be compared segment by segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("the URL path has a `{0}` segment, which the server would resolve to another path")]
    DotSegment(String),
    #[error("the URL path segment `{0}` decodes to a `/` or `\\`, which a server may split at")]
    EncodedSeparator(String),
    #[error("the URL path has an empty segment (`//`)")]
    EmptySegment,
    #[error("the URL path segment `{0}` is not valid percent-encoded text")]
    BadEncoding(String),
}

impl FlakeRef {
    /// Where the source is fetched from. Fails only for a URL whose path a server could read
    /// as another path (`.`/`..` segments, encoded `/`, `//`).
    pub fn fetch_location(&self) -> Result<FetchLocation, LocationError> {
        Ok(match &self.source {
            FlakeSource::Forge { forge, owner, repo } => {
                let host = self.host.as_deref().unwrap_or(forge.default_host());
                let mut path: Vec<String> = owner.split('/').map(str::to_owned).collect();
                path.push(repo.clone());
                FetchLocation::Forge {
                    forge: *forge,
                    host: host.to_ascii_lowercase(),
                    path,
                }
            }
            FlakeSource::Git { transport, url } => match transport {
                GitTransport::File => local(self.scheme(), url),
                _ => remote(self.scheme(), url)?,
            },
            FlakeSource::Tarball { transport, url } | FlakeSource::File { transport, url } => {
                match transport {
                    FetchTransport::File => local(self.scheme(), url),
                    _ => remote(self.scheme(), url)?,
                }
            }
            FlakeSource::Path { path, bare } => FetchLocation::Local {
                scheme: "path",
                path: path.clone(),
                bare: *bare,
            },
            FlakeSource::Indirect { id } => FetchLocation::Indirect { id: id.clone() },
        })
    }

    /// Whether the ref asks Git to fetch submodules (`submodules=1`): their URLs come from the
    /// repository's `.gitmodules`, not from the ref.
    pub fn fetches_submodules(&self) -> bool {
        self.attrs.get("submodules").is_some_and(|v| v == "1")
    }
}

/// A `file://` URL (as the parser keeps it: escapes normalised) as a local location.
fn local(scheme: &'static str, url: &str) -> FetchLocation {
    let encoded = url.strip_prefix("file://").unwrap_or(url);
    FetchLocation::Local {
        scheme,
        // The parser validated the escapes; decoding cannot fail.
        path: decode(encoded).unwrap_or_else(|_| encoded.to_owned()),
        bare: false,
    }
}

/// `<proto>://[user@]host[:port]/path` (validated by the parser) as a remote location.
fn remote(scheme: &'static str, url: &str) -> Result<FetchLocation, LocationError> {
    let (proto, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, host_port)) => (Some(user.to_owned()), host_port),
        None => (None, authority),
    };
    let (host, port) = split_port(host_port);
    let default_port = match proto {
        "https" => 443,
        "http" => 80,
        _ => 22,
    };
    Ok(FetchLocation::Remote {
        scheme,
        user,
        host: host.to_ascii_lowercase(),
        port: port.filter(|p| *p != default_port),
        path: url_segments(path)?,
    })
}

/// `host[:port]` or `[v6][:port]`.
fn split_port(text: &str) -> (&str, Option<u16>) {
    let port_at = if text.starts_with('[') {
        text.find("]:").map(|at| at + 1)
    } else {
        text.rfind(':')
    };
    match port_at {
        Some(at) => (&text[..at], text[at + 1..].parse().ok()),
        None => (text, None),
    }
}

/// The decoded segments of an encoded URL path (`/a/b%2Dc/`); a trailing `/` adds nothing.
pub(crate) fn url_segments(path: &str) -> Result<Vec<String>, LocationError> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    trimmed
        .split('/')
        .map(|segment| {
            let decoded =
                decode(segment).map_err(|_| LocationError::BadEncoding(segment.to_owned()))?;
            match decoded.as_str() {
                "" => Err(LocationError::EmptySegment),
                "." | ".." => Err(LocationError::DotSegment(decoded)),
                _ if decoded.contains(['/', '\\']) => {
                    Err(LocationError::EncodedSeparator(segment.to_owned()))
                }
                _ => Ok(decoded),
            }
        })
        .collect()
}

/// The decoded segments of a forge owner/repository path as a rule writes it (`org/`,
/// `group%2Fsub/repo`): split at `/` before and after decoding.
pub(crate) fn forge_segments(path: &str) -> Result<Vec<String>, LocationError> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for segment in trimmed.split('/') {
        let decoded =
            decode(segment).map_err(|_| LocationError::BadEncoding(segment.to_owned()))?;
        for part in decoded.split('/') {
            match part {
                "" => return Err(LocationError::EmptySegment),
                "." | ".." => return Err(LocationError::DotSegment(part.to_owned())),
                _ => out.push(part.to_owned()),
            }
        }
    }
    Ok(out)
}
