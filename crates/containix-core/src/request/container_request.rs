//! What one container asks containix to run: the typed result of reading pod annotations.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::request::flake_ref::FlakeInstallable;
use crate::store::store_path::StorePath;

/// The request for one container: where its closure comes from and how to start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The container's name in the pod spec.
    pub container: String,
    /// Where the closure comes from.
    pub source: Source,
    /// The program to run; `None` means the package's `meta.mainProgram`, else its name.
    pub entrypoint: Option<Entrypoint>,
    /// The resolution deadline asked for; the node policy caps it.
    pub timeout: Option<Duration>,
    /// The Kubernetes namespace of the pod, which picks the node policy's per-namespace
    /// settings. Set only from what the runtime or the kubelet reports (the CRI annotation
    /// `io.kubernetes.cri.sandbox-namespace`, the CSI pod info), never from `containix.dev/`
    /// annotations; `None` gets the node-wide settings.
    pub namespace: Option<String>,
}

/// Where a container's closure comes from. Exactly one per container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A flake installable, evaluated on the node. Without `#attr`, the default package
    /// (`packages.<system>.default`) is meant, as with `nix build`.
    Flake(FlakeInstallable),
    /// Pinned store paths, fetched or found as is with no evaluation; deduplicated, in order.
    StorePaths(Vec<StorePath>),
    /// Attribute names in the node's configured package set (Nixery style); deduplicated, in
    /// order.
    Packages(Vec<PackageName>),
}

/// The program a container runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Entrypoint {
    /// An absolute path inside the root output, such as `/bin/app`.
    Path(String),
    /// A program name looked up on the closure's `PATH`, such as `app`.
    Program(String),
}

/// Why an entry point was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntrypointError {
    #[error("empty entrypoint; expected an absolute path such as `/bin/app` or a program name")]
    Empty,
    #[error(
        "entrypoint {0:?} contains whitespace or a control character; expected a path or a \
         program name, without arguments"
    )]
    BadCharacter(String),
    #[error(
        "entrypoint {0:?} has an empty, `.` or `..` segment; expected a normalised absolute path \
         such as `/bin/app`"
    )]
    BadPath(String),
    #[error(
        "entrypoint {0:?} is neither an absolute path nor a bare program name (`/` only allowed \
         at the start of an absolute path)"
    )]
    RelativePath(String),
    #[error("entrypoint {0:?} starts with `-`; expected a program name or an absolute path")]
    LeadingDash(String),
    #[error("entrypoint is {0} bytes long; at most {MAX_ENTRYPOINT_BYTES} are accepted")]
    TooLong(usize),
}

/// The longest entry point accepted (`PATH_MAX` on Linux).
pub const MAX_ENTRYPOINT_BYTES: usize = 4096;

impl Entrypoint {
    /// Parses `/bin/app` (a path) or `app` (a program name).
    pub fn parse(text: &str) -> Result<Self, EntrypointError> {
        if text.is_empty() {
            return Err(EntrypointError::Empty);
        }
        if text.len() > MAX_ENTRYPOINT_BYTES {
            return Err(EntrypointError::TooLong(text.len()));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EntrypointError::BadCharacter(text.to_owned()));
        }
        if let Some(relative) = text.strip_prefix('/') {
            if relative
                .split('/')
                .any(|segment| matches!(segment, "" | "." | ".."))
            {
                return Err(EntrypointError::BadPath(text.to_owned()));
            }
            return Ok(Entrypoint::Path(text.to_owned()));
        }
        if text.contains('/') || text == "." || text == ".." {
            return Err(EntrypointError::RelativePath(text.to_owned()));
        }
        if text.starts_with('-') {
            return Err(EntrypointError::LeadingDash(text.to_owned()));
        }
        Ok(Entrypoint::Program(text.to_owned()))
    }

    /// The path or program name as written.
    pub fn as_str(&self) -> &str {
        match self {
            Entrypoint::Path(text) | Entrypoint::Program(text) => text,
        }
    }
}

impl fmt::Display for Entrypoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Entrypoint {
    type Err = EntrypointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A package attribute name in the node's package set: `curl`, `python3Packages.numpy`.
/// Each dot-separated segment is a Nix identifier (`[A-Za-z_][A-Za-z0-9_'-]*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageName(String);

/// Why a package name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid package name {0:?}: expected Nix attribute names separated by `.`, each a letter or \
     `_` followed by letters, digits, `_`, `'` or `-` (e.g. `curl`, `python3Packages.numpy`)"
)]
pub struct PackageNameError(String);

impl PackageName {
    /// Validates a package attribute name.
    pub fn parse(text: &str) -> Result<Self, PackageNameError> {
        let is_identifier = |segment: &str| {
            let mut chars = segment.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || "_'-".contains(c))
        };
        if text.split('.').all(is_identifier) {
            Ok(PackageName(text.to_owned()))
        } else {
            Err(PackageNameError(text.to_owned()))
        }
    }

    /// The attribute name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The dot-separated segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for PackageName {
    type Err = PackageNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entrypoints_are_absolute_paths_or_bare_program_names() {
        assert_eq!(
            Entrypoint::parse("/bin/app"),
            Ok(Entrypoint::Path("/bin/app".into()))
        );
        assert_eq!(
            Entrypoint::parse("app"),
            Ok(Entrypoint::Program("app".into()))
        );
        assert_eq!(
            Entrypoint::parse("nix-shell"),
            Ok(Entrypoint::Program("nix-shell".into()))
        );
        for bad in [
            "",
            "/",
            "/bin/../etc/passwd",
            "/bin//app",
            "/./app",
            "bin/app",
            "./app",
            "..",
            "a b",
            "/bin/app\0",
            "-rf",
            "app\n",
        ] {
            assert!(Entrypoint::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn package_names_are_nix_attribute_paths() {
        for good in [
            "curl",
            "jq",
            "python3Packages.numpy",
            "_7zz",
            "xorg.libX11",
            "gcc-unwrapped",
        ] {
            assert_eq!(PackageName::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "", "7zip", "a..b", ".a", "a.", "a b", "a/b", "a\"b", "-a", "pkgs#x",
        ] {
            assert!(PackageName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
