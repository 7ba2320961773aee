//! Errors for flake references, attribute paths and installables.

use std::fmt;

/// A flake reference that was refused, with the offending input and the precise problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("flake ref `{}`: {kind}", Shown(.input))]
pub struct FlakeRefError {
    input: String,
    kind: FlakeRefErrorKind,
}

impl FlakeRefError {
    pub(crate) fn new(input: &str, kind: FlakeRefErrorKind) -> Self {
        Self {
            input: input.to_owned(),
            kind,
        }
    }

    /// The text that was parsed.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What is wrong with it.
    pub fn kind(&self) -> &FlakeRefErrorKind {
        &self.kind
    }
}

/// What is wrong with a flake reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlakeRefErrorKind {
    #[error("empty flake reference")]
    Empty,
    #[error("starts with `-` and could be read as a command-line option")]
    LeadingDash,
    #[error(
        "character {found:?} at byte {position} is not allowed \
         (whitespace, control and non-ASCII characters are refused)"
    )]
    BadCharacter { position: usize, found: char },
    #[error(
        "contains `#`: an attribute path belongs to an installable \
         (`<flake-ref>#<attr-path>`), not to a flake reference"
    )]
    Fragment,
    #[error(
        "unknown scheme `{}:` (supported: github, gitlab, sourcehut, git+https, git+http, \
         git+ssh, git+file, path, tarball+https, tarball+http, tarball+file, file+https, \
         file+http, file+file, https, http, file, flake)"
    , Shown(.0))]
    UnknownScheme(String),
    #[error("expected `{0}`")]
    Expected(&'static str),
    #[error("invalid {what} `{}`: expected {expected}", Shown(.value))]
    InvalidName {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("invalid rev `{}`: expected 40 hexadecimal digits (a full Git commit hash)", Shown(.0))]
    InvalidRev(String),
    #[error(
        "invalid ref `{}`: expected a Git branch or tag name \
         (letters, digits, `_`, `.`, `/`, `@`, `+`, `-`; no `..` or `//`)"
    , Shown(.0))]
    InvalidRef(String),
    #[error("invalid dir `{}`: expected a relative path without empty, `.` or `..` segments", Shown(.0))]
    InvalidDir(String),
    #[error("invalid host `{}`: expected a host name with an optional `:<port>`", Shown(.0))]
    InvalidHost(String),
    #[error(
        "invalid narHash `{}`: expected an SRI hash (`sha256-<44 base64 chars>`, \
         `sha512-…` or `sha1-…`)"
    , Shown(.0))]
    InvalidNarHash(String),
    #[error("invalid `{}` value `{}`: expected {expected}", Shown(.key), Shown(.value))]
    InvalidAttrValue {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("bad percent-encoding in `{}`: expected `%` followed by two hexadecimal digits", Shown(.0))]
    BadPercentEncoding(String),
    #[error(
        "percent-encoded text `{}` decodes to invalid UTF-8, whitespace or a control character"
    , Shown(.0))]
    BadDecodedText(String),
    #[error("query parameter `{}` appears more than once", Shown(.0))]
    DuplicateQueryKey(String),
    #[error("empty query parameter (stray `&` or `?`)")]
    EmptyQueryParameter,
    #[error("query parameter `{}` has no value: expected `{}=<value>`", Shown(.0), Shown(.0))]
    MissingQueryValue(String),
    #[error(
        "unsupported attribute `{}` for `{scheme}:` flake refs (supported: {})",
        Shown(.key),
        .supported.join(", ")
    )]
    UnsupportedAttribute {
        key: String,
        scheme: &'static str,
        supported: &'static [&'static str],
    },
    #[error("`{0}` is given twice (in the path and in the query)")]
    DuplicateRefOrRev(&'static str),
    #[error("has both a ref and a rev; `{0}:` flake refs take one or the other")]
    RefAndRev(&'static str),
    #[error("{0}")]
    BadUrl(&'static str),
    #[error(
        "`{0}:` URLs must end in an archive extension (.tar, .tar.gz, .tgz, .tar.xz, .tar.bz2, \
         .tar.zst, .zip); use `tarball+{0}:` or `file+{0}:` to say what it is"
    )]
    NotAnArchive(&'static str),
    #[error("relative paths must start with `./` or `../` (a bare name is a registry id)")]
    BadRelativePath,
}

/// An attribute path that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("attribute path `{}`: {kind}", Shown(.input))]
pub struct AttrPathError {
    input: String,
    kind: AttrPathErrorKind,
}

impl AttrPathError {
    pub(crate) fn new(input: &str, kind: AttrPathErrorKind) -> Self {
        Self {
            input: input.to_owned(),
            kind,
        }
    }

    /// The text that was parsed.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What is wrong with it.
    pub fn kind(&self) -> &AttrPathErrorKind {
        &self.kind
    }
}

/// What is wrong with an attribute path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttrPathErrorKind {
    #[error("empty attribute path")]
    Empty,
    #[error("empty segment at position {0} (stray `.`)")]
    EmptySegment(usize),
    #[error("unterminated `\"` in segment {0}")]
    UnterminatedQuote(usize),
    #[error("expected `.` after the quoted segment {0}")]
    ExpectedDot(usize),
    #[error(
        "character {found:?} at byte {position} is not allowed \
         (whitespace, control and non-ASCII characters are refused)"
    )]
    BadCharacter { position: usize, found: char },
    #[error(
        "character {found:?} in segment {segment} must be inside a quoted segment \
         (`\"…\"`); `\\`, `%`, `#`, `^` and `\"` are never allowed"
    )]
    NeedsQuotes { segment: usize, found: char },
    #[error("segment {0} starts with `-` (could be read as a command-line option)")]
    LeadingDash(usize),
}

/// An installable (`<flake-ref>[#<attr-path>]`) that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstallableError {
    #[error(transparent)]
    FlakeRef(#[from] FlakeRefError),
    #[error("installable `{}`: {source}", Shown(.input))]
    AttrPath {
        input: String,
        source: AttrPathError,
    },
    #[error("installable `{}`: empty attribute path after `#`", Shown(.0))]
    EmptyFragment(String),
}

/// Shows user input in an error safely: control characters escaped, long input cut short.
pub(crate) struct Shown<'a>(pub(crate) &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const LIMIT: usize = 120;
        for (count, c) in self.0.chars().enumerate() {
            if count == LIMIT {
                return f.write_str("…");
            }
            if c.is_control() || (c.is_whitespace() && c != ' ') {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}
