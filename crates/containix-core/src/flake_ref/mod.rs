//! Flake references: a typed, strictly parsed form of what `nix` accepts as a flake location.
//!
//! The syntax follows the Nix manual's "Flake references" section:
//!
//! | form | example |
//! |---|---|
//! | forge | `github:NixOS/nixpkgs/nixos-24.05?dir=lib`, `gitlab:group%2Fsub/repo`, `sourcehut:~user/repo` |
//! | Git | `git+https://host/repo?ref=main&rev=<40 hex>`, `git+ssh://git@host/repo`, `git+file:///src/repo` |
//! | path | `path:/abs`, `path:./rel`, or bare `./rel`, `../rel`, `/abs` |
//! | tarball | `https://host/x.tar.gz`, `tarball+https://host/x`, `file:///x.zip` |
//! | file | `file+https://host/x`, `file:///x` |
//! | indirect | `nixpkgs`, `nixpkgs/nixos-24.05`, `nixpkgs/<40 hex>`, `flake:nixpkgs` |
//!
//! Parsing is strict: whitespace, control and non-ASCII characters, a leading `-`, unknown
//! schemes and attributes, duplicate query keys, malformed names, revs and percent-encoding
//! are refused. [`FlakeRef`]'s `Display` prints a canonical form that parses back to an equal
//! value; query attributes are printed in sorted order. Only the URL-like syntax of the manual
//! is accepted (no `git://`, `hg+*` or scp-like `host:path`), and tarball/file URLs cannot
//! carry query parameters of their own.

mod attr_path;
mod encoding;
mod error;
mod installable;
mod parse;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

pub use attr_path::AttrPath;
pub use error::{
    AttrPathError, AttrPathErrorKind, FlakeRefError, FlakeRefErrorKind, InstallableError,
};
pub use installable::FlakeInstallable;

/// A code forge with a dedicated, tarball-based flake type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Forge {
    GitHub,
    GitLab,
    SourceHut,
}

impl Forge {
    /// The scheme (and Nix input type) of this forge: `github`, `gitlab` or `sourcehut`.
    pub fn scheme(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::GitLab => "gitlab",
            Forge::SourceHut => "sourcehut",
        }
    }
}

/// How a Git repository is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GitTransport {
    Https,
    Http,
    Ssh,
    File,
}

/// How a tarball or file is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FetchTransport {
    Https,
    Http,
    File,
}

/// Where a flake comes from. Built only by the parser, so every value prints and re-parses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlakeSource {
    /// `github:`, `gitlab:`, `sourcehut:`. A GitLab owner may contain `/` (subgroups).
    Forge {
        forge: Forge,
        owner: String,
        repo: String,
    },
    /// `git+<transport>:`; `url` is the repository URL without `git+` and without the query,
    /// e.g. `https://example.org/repo` or `file:///src/repo` (escapes kept, upper-case hex).
    Git {
        transport: GitTransport,
        url: String,
    },
    /// `path:<path>` (`bare == false`) or a bare `./x`, `../x`, `/abs` (`bare == true`).
    /// Nix treats a bare path inside a Git work tree as that Git repository, so the two forms
    /// are kept apart. `path` is percent-decoded.
    Path { path: String, bare: bool },
    /// An archive fetched and unpacked; `url` is the full URL without the query.
    Tarball {
        transport: FetchTransport,
        url: String,
    },
    /// A single file fetched as is; `url` is the full URL without the query.
    File {
        transport: FetchTransport,
        url: String,
    },
    /// A flake registry id such as `nixpkgs`.
    Indirect { id: String },
}

/// A parsed flake reference. See the [module documentation](self) for the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlakeRef {
    source: FlakeSource,
    git_ref: Option<String>,
    rev: Option<String>,
    dir: Option<String>,
    host: Option<String>,
    nar_hash: Option<String>,
    /// Other attributes the type allows (`lastModified`, `revCount`, `submodules`, ...).
    attrs: BTreeMap<String, String>,
}

impl FlakeRef {
    /// Parses a flake reference (without `#fragment`; see [`FlakeInstallable`] for that).
    pub fn parse(input: &str) -> Result<Self, FlakeRefError> {
        parse::parse(input).map_err(|kind| FlakeRefError::new(input, kind))
    }

    /// Where the flake comes from.
    pub fn source(&self) -> &FlakeSource {
        &self.source
    }

    /// The Git branch or tag name (`ref`), if given.
    pub fn git_ref(&self) -> Option<&str> {
        self.git_ref.as_deref()
    }

    /// The commit hash (`rev`, 40 lower-case hex digits), if given.
    pub fn rev(&self) -> Option<&str> {
        self.rev.as_deref()
    }

    /// The subdirectory holding `flake.nix` (`dir`), if given.
    pub fn dir(&self) -> Option<&str> {
        self.dir.as_deref()
    }

    /// The forge host (`host`, e.g. a self-hosted GitLab), if given.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The SRI hash of the NAR serialisation of the source (`narHash`), if given.
    pub fn nar_hash(&self) -> Option<&str> {
        self.nar_hash.as_deref()
    }

    /// The remaining attributes the type allows, e.g. `lastModified`, `submodules`, `shallow`.
    pub fn attrs(&self) -> &BTreeMap<String, String> {
        &self.attrs
    }

    /// Whether the reference pins its content: a `rev` or a `narHash` is present.
    ///
    /// Indirect references are never locked, since the registry decides what they point to.
    pub fn is_locked(&self) -> bool {
        !matches!(self.source, FlakeSource::Indirect { .. })
            && (self.rev.is_some() || self.nar_hash.is_some())
    }

    /// Whether the reference reads data from the local host (paths, `git+file:`, `file:`).
    pub fn is_local(&self) -> bool {
        match &self.source {
            FlakeSource::Path { .. } => true,
            FlakeSource::Git { transport, .. } => *transport == GitTransport::File,
            FlakeSource::Tarball { transport, .. } | FlakeSource::File { transport, .. } => {
                *transport == FetchTransport::File
            }
            FlakeSource::Forge { .. } | FlakeSource::Indirect { .. } => false,
        }
    }

    /// The explicit scheme, used for node policy matching: `github`, `gitlab`, `sourcehut`,
    /// `git+https`, `git+http`, `git+ssh`, `git+file`, `path`, `tarball+https`,
    /// `tarball+http`, `tarball+file`, `file+https`, `file+http`, `file+file` or `flake`.
    /// Bare paths report `path`; `https://…/x.tar.gz` reports `tarball+https`.
    pub fn scheme(&self) -> &'static str {
        match &self.source {
            FlakeSource::Forge { forge, .. } => forge.scheme(),
            FlakeSource::Git { transport, .. } => match transport {
                GitTransport::Https => "git+https",
                GitTransport::Http => "git+http",
                GitTransport::Ssh => "git+ssh",
                GitTransport::File => "git+file",
            },
            FlakeSource::Path { .. } => "path",
            FlakeSource::Tarball { transport, .. } => match transport {
                FetchTransport::Https => "tarball+https",
                FetchTransport::Http => "tarball+http",
                FetchTransport::File => "tarball+file",
            },
            FlakeSource::File { transport, .. } => match transport {
                FetchTransport::Https => "file+https",
                FetchTransport::Http => "file+http",
                FetchTransport::File => "file+file",
            },
            FlakeSource::Indirect { .. } => "flake",
        }
    }

    /// The Nix input type: `github`, `gitlab`, `sourcehut`, `git`, `path`, `tarball`, `file`
    /// or `indirect`.
    pub fn type_name(&self) -> &'static str {
        match &self.source {
            FlakeSource::Forge { forge, .. } => forge.scheme(),
            FlakeSource::Git { .. } => "git",
            FlakeSource::Path { .. } => "path",
            FlakeSource::Tarball { .. } => "tarball",
            FlakeSource::File { .. } => "file",
            FlakeSource::Indirect { .. } => "indirect",
        }
    }

    /// The canonical form as one `nix` command-line argument. It starts with a scheme letter,
    /// `.` or `/`, so `nix` can never read it as an option.
    pub fn to_nix_arg(&self) -> String {
        let arg = self.to_string();
        debug_assert!(!arg.starts_with('-'));
        arg
    }

    /// The query attributes in canonical (sorted) order, with the ref or rev left out when
    /// the path already carries it.
    fn query_pairs(&self, ref_in_path: bool, rev_in_path: bool) -> Vec<(&str, &str)> {
        let mut pairs: Vec<(&str, &str)> = self
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let named = [
            ("ref", self.git_ref.as_deref().filter(|_| !ref_in_path)),
            ("rev", self.rev.as_deref().filter(|_| !rev_in_path)),
            ("dir", self.dir.as_deref()),
            ("host", self.host.as_deref()),
            ("narHash", self.nar_hash.as_deref()),
        ];
        pairs.extend(named.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        pairs.sort_unstable();
        pairs
    }
}

/// Whether a ref can be written as a path segment (`github:o/r/<ref>`, `nixpkgs/<ref>`)
/// without being read as a rev or split at `/`.
fn ref_fits_path(git_ref: &str) -> bool {
    !git_ref.contains('/') && !parse::is_rev(git_ref)
}

impl fmt::Display for FlakeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ref_in_path = false;
        let mut rev_in_path = false;
        match &self.source {
            FlakeSource::Forge { forge, owner, repo } => {
                write!(
                    f,
                    "{}:{}/{}",
                    forge.scheme(),
                    encoding::encode(owner, b"~"),
                    repo
                )?;
                if let Some(rev) = &self.rev {
                    write!(f, "/{rev}")?;
                    rev_in_path = true;
                } else if let Some(git_ref) = self.git_ref.as_deref().filter(|r| ref_fits_path(r)) {
                    write!(f, "/{git_ref}")?;
                    ref_in_path = true;
                }
            }
            FlakeSource::Git { url, .. } => write!(f, "git+{url}")?,
            FlakeSource::Path { path, bare } => {
                let prefix = if *bare { "" } else { "path:" };
                write!(f, "{prefix}{}", encoding::encode(path, b"/"))?;
            }
            FlakeSource::Tarball { url, .. } => {
                if !parse::has_archive_extension(url) {
                    f.write_str("tarball+")?;
                }
                f.write_str(url)?;
            }
            FlakeSource::File { transport, url } => {
                if *transport != FetchTransport::File || parse::has_archive_extension(url) {
                    f.write_str("file+")?;
                }
                f.write_str(url)?;
            }
            FlakeSource::Indirect { id } => {
                write!(f, "flake:{id}")?;
                if let Some(git_ref) = &self.git_ref {
                    write!(f, "/{git_ref}")?;
                    ref_in_path = true;
                }
                if let Some(rev) = &self.rev {
                    write!(f, "/{rev}")?;
                    rev_in_path = true;
                }
            }
        }
        for (i, (key, value)) in self
            .query_pairs(ref_in_path, rev_in_path)
            .into_iter()
            .enumerate()
        {
            let sep = if i == 0 { '?' } else { '&' };
            write!(f, "{sep}{key}={}", encoding::encode(value, b"/="))?;
        }
        Ok(())
    }
}

impl FromStr for FlakeRef {
    type Err = FlakeRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
