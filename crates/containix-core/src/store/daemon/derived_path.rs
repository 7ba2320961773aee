//! Derived paths: what to realise. An opaque store path (`/nix/store/x`), or outputs of a
//! derivation (`/nix/store/x.drv!out,dev`, `/nix/store/x.drv!*`).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::store::store_path::{StorePath, StorePathError, is_name_char};

/// Which outputs of a derivation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutputsSpec {
    /// All outputs (`*`).
    All,
    /// The named outputs (never empty).
    Names(BTreeSet<String>),
}

/// A path to realise.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DerivedPath {
    /// A store path that must be valid (substituted if missing).
    Opaque(StorePath),
    /// Outputs of a derivation (built or substituted).
    Built {
        /// The `.drv` store path.
        drv: StorePath,
        /// Which outputs.
        outputs: OutputsSpec,
    },
}

/// Why a string is not a derived path.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DerivedPathError {
    /// The store path part is invalid.
    #[error(transparent)]
    StorePath(#[from] StorePathError),
    /// Outputs were given for a path that is not a derivation.
    #[error("{path} is not a derivation (.drv); only derivations have outputs")]
    NotADerivation {
        /// The path.
        path: StorePath,
    },
    /// An output name is empty or has characters Nix does not allow.
    #[error(
        "output name {name:?} of {drv} is invalid; expected 1 or more of A-Z a-z 0-9 + - . _ ? ="
    )]
    OutputName {
        /// The derivation.
        drv: StorePath,
        /// The rejected name.
        name: String,
    },
}

impl DerivedPath {
    /// Outputs of a derivation, checking that `drv` is one and the names are valid.
    pub fn built<I, S>(drv: StorePath, outputs: I) -> Result<Self, DerivedPathError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: BTreeSet<String> = outputs.into_iter().map(Into::into).collect();
        let outputs = if names.is_empty() {
            OutputsSpec::All
        } else {
            OutputsSpec::Names(names)
        };
        Self::checked(drv, outputs)
    }

    /// All outputs of a derivation.
    pub fn all_outputs(drv: StorePath) -> Result<Self, DerivedPathError> {
        Self::checked(drv, OutputsSpec::All)
    }

    fn checked(drv: StorePath, outputs: OutputsSpec) -> Result<Self, DerivedPathError> {
        if !drv.name().ends_with(".drv") {
            return Err(DerivedPathError::NotADerivation { path: drv });
        }
        if let OutputsSpec::Names(names) = &outputs
            && let Some(bad) = names
                .iter()
                .find(|name| name.is_empty() || !name.chars().all(is_name_char))
        {
            return Err(DerivedPathError::OutputName {
                name: bad.clone(),
                drv,
            });
        }
        Ok(Self::Built { drv, outputs })
    }

    /// The store path named: the path itself or the derivation.
    pub fn store_path(&self) -> &StorePath {
        match self {
            Self::Opaque(path) | Self::Built { drv: path, .. } => path,
        }
    }
}

impl fmt::Display for DerivedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Opaque(path) => write!(f, "{path}"),
            Self::Built {
                drv,
                outputs: OutputsSpec::All,
            } => write!(f, "{drv}!*"),
            Self::Built {
                drv,
                outputs: OutputsSpec::Names(names),
            } => {
                write!(f, "{drv}!")?;
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(name)?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for DerivedPath {
    type Err = DerivedPathError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('!') {
            None => Ok(Self::Opaque(StorePath::parse(text)?)),
            Some((path, "*")) => Self::all_outputs(StorePath::parse(path)?),
            Some((path, names)) => {
                let drv = StorePath::parse(path)?;
                let names: BTreeSet<String> = names.split(',').map(str::to_owned).collect();
                if names.iter().any(String::is_empty) {
                    return Err(DerivedPathError::OutputName {
                        drv,
                        name: String::new(),
                    });
                }
                Self::checked(drv, OutputsSpec::Names(names))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DRV: &str = "/nix/store/ns2pf32zq4bhsf4ijv4jzid6rjfd8a5l-hello.drv";

    #[test]
    fn parses_and_prints() {
        for text in [
            DRV,
            &format!("{DRV}!out"),
            &format!("{DRV}!dev,out"),
            &format!("{DRV}!*"),
        ] {
            let path: DerivedPath = text.parse().unwrap();
            assert_eq!(path.to_string(), text);
        }
        let sorted: DerivedPath = format!("{DRV}!out,dev").parse().unwrap();
        assert_eq!(sorted.to_string(), format!("{DRV}!dev,out"));
    }

    #[test]
    fn rejects_bad_input() {
        let not_drv = "/nix/store/ns2pf32zq4bhsf4ijv4jzid6rjfd8a5l-hello!out";
        assert!(matches!(
            not_drv.parse::<DerivedPath>(),
            Err(DerivedPathError::NotADerivation { .. })
        ));
        for bad in [
            format!("{DRV}!"),
            format!("{DRV}!out,"),
            format!("{DRV}!o u t"),
        ] {
            assert!(bad.parse::<DerivedPath>().is_err(), "{bad}");
        }
        assert!("/tmp/x!out".parse::<DerivedPath>().is_err());
    }

    proptest! {
        #[test]
        fn round_trips(names in prop::collection::btree_set("[a-z][a-z0-9]{0,8}", 0..4)) {
            let drv = StorePath::parse(DRV).unwrap();
            let path = DerivedPath::built(drv, names).unwrap();
            prop_assert_eq!(path.to_string().parse::<DerivedPath>().unwrap(), path);
        }
    }
}
