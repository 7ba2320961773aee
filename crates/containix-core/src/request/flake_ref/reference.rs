//! The parsed flake reference: its source, attributes, accessors and canonical `Display`.

use std::collections::BTreeMap;
use std::fmt;

use super::encoding;
use super::source::{FetchTransport, FlakeSource, GitTransport};
use super::syntax;

/// A parsed flake reference. See the [module documentation](crate::request::flake_ref) for the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlakeRef {
    pub(super) source: FlakeSource,
    pub(super) git_ref: Option<String>,
    pub(super) rev: Option<String>,
    pub(super) dir: Option<String>,
    pub(super) host: Option<String>,
    pub(super) nar_hash: Option<String>,
    /// Other attributes the type allows (`lastModified`, `revCount`, `submodules`, ...).
    pub(super) attrs: BTreeMap<String, String>,
}

impl FlakeRef {
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
    !git_ref.contains('/') && !syntax::is_rev(git_ref)
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
                if !syntax::has_archive_extension(url) {
                    f.write_str("tarball+")?;
                }
                f.write_str(url)?;
            }
            FlakeSource::File { transport, url } => {
                if *transport != FetchTransport::File || syntax::has_archive_extension(url) {
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
