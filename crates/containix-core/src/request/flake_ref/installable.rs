//! Installables: a flake reference with an optional attribute path (`<flake-ref>#<attr-path>`).

use std::fmt;
use std::str::FromStr;

use super::attr_path::AttrPath;
use super::error::InstallableError;
use super::reference::FlakeRef;

/// `<flake-ref>[#<attr-path>]`, as `nix build` takes it. Without an attribute path, `nix`
/// picks the flake's default package (`packages.<system>.default`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlakeInstallable {
    pub flake: FlakeRef,
    pub attr: Option<AttrPath>,
}

impl FlakeInstallable {
    /// Parses `ref` or `ref#attr`; an empty fragment (`ref#`) is refused.
    pub fn parse(input: &str) -> Result<Self, InstallableError> {
        let (flake, fragment) = match input.split_once('#') {
            Some((flake, fragment)) => (flake, Some(fragment)),
            None => (input, None),
        };
        let flake = FlakeRef::parse(flake)?;
        let attr =
            match fragment {
                None => None,
                Some("") => return Err(InstallableError::EmptyFragment(input.to_owned())),
                Some(fragment) => Some(AttrPath::parse(fragment).map_err(|source| {
                    InstallableError::AttrPath {
                        input: input.to_owned(),
                        source,
                    }
                })?),
            };
        Ok(FlakeInstallable { flake, attr })
    }

    /// The canonical form as one `nix` command-line argument; never starts with `-`.
    pub fn to_nix_arg(&self) -> String {
        let arg = self.to_string();
        debug_assert!(!arg.starts_with('-'));
        arg
    }
}

impl fmt::Display for FlakeInstallable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.flake)?;
        if let Some(attr) = &self.attr {
            write!(f, "#{attr}")?;
        }
        Ok(())
    }
}

impl FromStr for FlakeInstallable {
    type Err = InstallableError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
