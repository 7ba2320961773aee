//! Store paths: `/nix/store/<32 nix32 chars>-<name>`, validated with Nix's own rules.
//!
//! Every path containix sends to the Nix daemon or mounts into a container goes through
//! [`StorePath::parse`] first: the daemon drops the connection on a malformed path, and a path
//! outside the store must never become a bind-mount source.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use thiserror::Error;

use crate::store::nix32;

/// The store directory containix works with.
pub const STORE_DIR: &str = "/nix/store";

/// Number of characters in a store path's hash part (a 160-bit digest in nix32).
pub const HASH_PART_LEN: usize = 32;

/// Longest name Nix accepts after the hash part.
pub const MAX_NAME_LEN: usize = 211;

/// Why a string is not a valid store path.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StorePathError {
    /// The path does not start with `/nix/store/`.
    #[error("store path {path:?} is not under {STORE_DIR}/")]
    NotInStore {
        /// The rejected input.
        path: String,
    },
    /// Something follows the store path's base name.
    #[error(
        "store path {path:?} names a file inside a store path; expected {STORE_DIR}/<hash>-<name>"
    )]
    Nested {
        /// The rejected input.
        path: String,
    },
    /// The hash part is too short or not followed by `-`.
    #[error(
        "store path {path:?} must have {HASH_PART_LEN} hash characters followed by '-' and a name"
    )]
    Shape {
        /// The rejected input.
        path: String,
    },
    /// The hash part holds a character outside the nix32 alphabet.
    #[error(
        "store path {path:?} has {character:?} in its hash part; expected only 0-9 and a-z without e, o, t, u"
    )]
    HashCharacter {
        /// The rejected input.
        path: String,
        /// The offending character.
        character: char,
    },
    /// The name after the hash is empty.
    #[error("store path {path:?} has an empty name")]
    EmptyName {
        /// The rejected input.
        path: String,
    },
    /// The name is longer than Nix allows.
    #[error("store path {path:?} has a {len}-character name; at most {MAX_NAME_LEN} are allowed")]
    NameTooLong {
        /// The rejected input.
        path: String,
        /// Length of the name.
        len: usize,
    },
    /// The name holds a character Nix does not allow.
    #[error(
        "store path {path:?} has {character:?} in its name; allowed are A-Z a-z 0-9 and + - . _ ? ="
    )]
    NameCharacter {
        /// The rejected input.
        path: String,
        /// The offending character.
        character: char,
    },
    /// The name starts with a period.
    #[error("store path {path:?} has a name starting with '.'")]
    LeadingPeriod {
        /// The rejected input.
        path: String,
    },
}

/// A validated store path such as `/nix/store/ns2pf32zq4bhsf4ijv4jzid6rjfd8a5l-echoserver-0.1.0`.
///
/// Ordering is by the full path, which is the order Nix itself lists closures in.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorePath {
    full: Box<str>,
}

impl StorePath {
    /// Parses an absolute store path. Trailing slashes and nested paths are rejected.
    pub fn parse(path: &str) -> Result<Self, StorePathError> {
        let base = path
            .strip_prefix(STORE_DIR)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| StorePathError::NotInStore { path: path.into() })?;
        if base.contains('/') {
            return Err(StorePathError::Nested { path: path.into() });
        }
        validate_base_name(base, path)?;
        Ok(Self { full: path.into() })
    }

    /// Builds a store path from its base name, `<hash>-<name>`, as the daemon's narinfo
    /// `References` and the binary cache list them.
    pub fn from_base_name(base: &str) -> Result<Self, StorePathError> {
        let full = format!("{STORE_DIR}/{base}");
        if base.contains('/') {
            return Err(StorePathError::Nested { path: full });
        }
        validate_base_name(base, &full)?;
        Ok(Self { full: full.into() })
    }

    /// Splits a path such as `/nix/store/<hash>-hello/bin/hello` into its store path and the
    /// remainder (`/bin/hello`, or `""` for the store path itself).
    pub fn parse_prefix(path: &str) -> Result<(Self, &str), StorePathError> {
        let base_start = STORE_DIR.len() + 1;
        let end = path
            .get(base_start..)
            .and_then(|rest| rest.find('/'))
            .map_or(path.len(), |slash| base_start + slash);
        let store_path = Self::parse(&path[..end])?;
        Ok((store_path, &path[end..]))
    }

    /// The full path as a string.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The full path as a filesystem path.
    pub fn as_path(&self) -> &Path {
        Path::new(&*self.full)
    }

    /// `<hash>-<name>`, the last component of the path.
    pub fn base_name(&self) -> &str {
        &self.full[STORE_DIR.len() + 1..]
    }

    /// The 32-character nix32 hash part.
    pub fn hash_part(&self) -> &str {
        &self.base_name()[..HASH_PART_LEN]
    }

    /// The name after the hash part, e.g. `echoserver-0.1.0`.
    pub fn name(&self) -> &str {
        &self.base_name()[HASH_PART_LEN + 1..]
    }

    /// The 20-byte digest the hash part encodes.
    pub fn digest(&self) -> [u8; 20] {
        let bytes = nix32::decode(self.hash_part(), 20)
            .expect("a validated hash part always decodes to 20 bytes");
        bytes.try_into().expect("decode returns the requested size")
    }
}

fn validate_base_name(base: &str, path: &str) -> Result<(), StorePathError> {
    let bytes = base.as_bytes();
    if bytes.len() < HASH_PART_LEN + 1 || !base.is_char_boundary(HASH_PART_LEN) {
        return Err(StorePathError::Shape { path: path.into() });
    }
    if let Some(character) = base[..HASH_PART_LEN]
        .chars()
        .find(|c| !u8::try_from(*c).is_ok_and(nix32::is_nix32_char))
    {
        return Err(StorePathError::HashCharacter {
            path: path.into(),
            character,
        });
    }
    if bytes[HASH_PART_LEN] != b'-' {
        return Err(StorePathError::Shape { path: path.into() });
    }
    validate_name(&base[HASH_PART_LEN + 1..], path)
}

/// Checks a store path name with Nix's rules: 1 to 211 characters of `[A-Za-z0-9+-._?=]`,
/// not starting with a period.
fn validate_name(name: &str, path: &str) -> Result<(), StorePathError> {
    if name.is_empty() {
        return Err(StorePathError::EmptyName { path: path.into() });
    }
    if let Some(character) = name.chars().find(|&c| !is_name_char(c)) {
        return Err(StorePathError::NameCharacter {
            path: path.into(),
            character,
        });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(StorePathError::NameTooLong {
            path: path.into(),
            len: name.len(),
        });
    }
    if name.starts_with('.') {
        return Err(StorePathError::LeadingPeriod { path: path.into() });
    }
    Ok(())
}

/// Whether Nix allows `c` in a store path name.
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_' | '?' | '=')
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({:?})", &*self.full)
    }
}

impl FromStr for StorePath {
    type Err = StorePathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<Path> for StorePath {
    fn as_ref(&self) -> &Path {
        self.as_path()
    }
}

impl AsRef<str> for StorePath {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl serde::Serialize for StorePath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.full)
    }
}

impl<'de> serde::Deserialize<'de> for StorePath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HASH: &str = "ns2pf32zq4bhsf4ijv4jzid6rjfd8a5l";

    #[test]
    fn parses_real_paths() {
        let path = StorePath::parse(&format!("/nix/store/{HASH}-echoserver-0.1.0")).unwrap();
        assert_eq!(path.hash_part(), HASH);
        assert_eq!(path.name(), "echoserver-0.1.0");
        assert_eq!(path.base_name(), format!("{HASH}-echoserver-0.1.0"));
        assert_eq!(
            path.to_string(),
            format!("/nix/store/{HASH}-echoserver-0.1.0")
        );
        for name in [
            "glibc-2.39-52",
            "hello-2.12.1.drv",
            "source",
            "python3.12-requests-2.31.0",
            "foo+bar_baz?x=1",
            "a",
            "-leading-dash",
            "x..y",
        ] {
            let text = format!("/nix/store/{HASH}-{name}");
            assert_eq!(StorePath::parse(&text).unwrap().name(), name, "{text}");
        }
        let longest = "n".repeat(MAX_NAME_LEN);
        assert!(StorePath::parse(&format!("/nix/store/{HASH}-{longest}")).is_ok());
    }

    #[test]
    fn rejects_with_reasons() {
        let cases: &[(String, &str)] = &[
            ("/tmp/foo".into(), "is not under /nix/store/"),
            ("nix/store/x".into(), "is not under /nix/store/"),
            ("/nix/storex/abc".into(), "is not under /nix/store/"),
            (format!("/nix/store/{HASH}-a/bin"), "names a file inside"),
            (format!("/nix/store/{HASH}-a/"), "names a file inside"),
            ("/nix/store/abc-short".into(), "32 hash characters"),
            (format!("/nix/store/{HASH}"), "32 hash characters"),
            (format!("/nix/store/{HASH}_name"), "32 hash characters"),
            (
                "/nix/store/ens2pf32zq4bhsf4ijv4jzid6rjfd8a5-x".into(),
                "'e' in its hash part",
            ),
            (
                "/nix/store/NS2PF32ZQ4BHSF4IJV4JZID6RJFD8A5L-x".into(),
                "'N' in its hash part",
            ),
            (format!("/nix/store/{HASH}-"), "empty name"),
            (format!("/nix/store/{HASH}-a b"), "' ' in its name"),
            (
                format!("/nix/store/{HASH}-caf\u{e9}"),
                "'\u{e9}' in its name",
            ),
            (format!("/nix/store/{HASH}-a\nb"), "'\\n' in its name"),
            (format!("/nix/store/{HASH}-.hidden"), "starting with '.'"),
            (format!("/nix/store/{HASH}-.."), "starting with '.'"),
            (
                format!("/nix/store/{HASH}-{}", "n".repeat(MAX_NAME_LEN + 1)),
                "212-character name",
            ),
            ("/nix/store/\u{e9}\u{e9}\u{e9}".into(), "32 hash characters"),
        ];
        for (input, expected) in cases {
            let err = StorePath::parse(input).unwrap_err().to_string();
            assert!(err.contains(expected), "{input:?}: {err}");
        }
    }

    #[test]
    fn splits_paths_inside_store_paths() {
        let root = format!("/nix/store/{HASH}-hello");
        let inner = format!("{root}/bin/hello");
        let (path, rest) = StorePath::parse_prefix(&inner).unwrap();
        assert_eq!((path.as_str(), rest), (root.as_str(), "/bin/hello"));
        let (path, rest) = StorePath::parse_prefix(&root).unwrap();
        assert_eq!((path.as_str(), rest), (root.as_str(), ""));
        assert!(StorePath::parse_prefix("/usr/bin/env").is_err());
        assert!(StorePath::parse_prefix("/nix/store").is_err());
    }

    #[test]
    fn base_names_and_serde() {
        let path = StorePath::from_base_name(&format!("{HASH}-hello")).unwrap();
        assert_eq!(path.as_str(), format!("/nix/store/{HASH}-hello"));
        assert!(StorePath::from_base_name("x/y").is_err());
        let json = serde_json::to_string(&path).unwrap();
        assert_eq!(serde_json::from_str::<StorePath>(&json).unwrap(), path);
        assert!(serde_json::from_str::<StorePath>("\"/tmp/x\"").is_err());
        assert_eq!(crate::store::nix32::encode(&path.digest()), HASH);
    }

    fn arb_store_path() -> impl Strategy<Value = String> {
        (
            "[0-9a-df-np-sv-z]{32}",
            "[A-Za-z0-9+\\-_?=][A-Za-z0-9+\\-._?=]{0,210}",
        )
            .prop_map(|(hash, name)| format!("/nix/store/{hash}-{name}"))
    }

    proptest! {
        #[test]
        fn parse_print_round_trips(text in arb_store_path()) {
            let path = StorePath::parse(&text).unwrap();
            let printed = path.to_string();
            prop_assert_eq!(&printed, &text);
            prop_assert_eq!(StorePath::parse(&printed).unwrap(), path.clone());
            prop_assert_eq!(StorePath::from_base_name(path.base_name()).unwrap(), path);
        }

        #[test]
        fn arbitrary_strings_never_panic(text in "\\PC{0,300}") {
            if let Ok(path) = StorePath::parse(&text) {
                prop_assert_eq!(path.to_string(), text);
            }
        }
    }
}
