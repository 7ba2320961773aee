//! Attribute paths: the `#packages.x86_64-linux.default` part of an installable.

use std::fmt;
use std::str::FromStr;

use super::error::{AttrPathError, AttrPathErrorKind as Kind};

/// A validated, dot-separated attribute path. Segments holding characters other than letters,
/// digits, `_`, `'`, `+` and `-` are written in double quotes: `packages.x86_64-linux."a.b"`.
///
/// Never allowed: whitespace, control and non-ASCII characters, `"` inside a segment, `\`,
/// `%` (Nix would percent-decode it), `#`, `^` (output selection), and a leading `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttrPath {
    segments: Vec<String>,
}

fn is_bare_segment_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"_'+-".contains(&byte)
}

fn is_quoted_segment_byte(byte: u8) -> bool {
    byte.is_ascii_graphic() && !b"\"\\%#^".contains(&byte)
}

impl AttrPath {
    /// Parses `a.b."c.d"`.
    pub fn parse(input: &str) -> Result<Self, AttrPathError> {
        parse_segments(input)
            .map(|segments| AttrPath { segments })
            .map_err(|kind| AttrPathError::new(input, kind))
    }

    /// Builds a path from unquoted segment values, validating each one.
    pub fn from_segments<I, S>(segments: I) -> Result<Self, AttrPathError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let segments: Vec<String> = segments.into_iter().map(Into::into).collect();
        let path = AttrPath { segments };
        // Printing quotes whatever needs it, so a valid path re-parses to itself.
        Self::parse(&path.to_string())
    }

    /// The segment values, without quotes.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }
}

fn parse_segments(input: &str) -> Result<Vec<String>, Kind> {
    if input.is_empty() {
        return Err(Kind::Empty);
    }
    if let Some((position, found)) = input.char_indices().find(|(_, c)| !c.is_ascii_graphic()) {
        return Err(Kind::BadCharacter { position, found });
    }
    let mut segments = Vec::new();
    let mut rest = input;
    loop {
        let index = segments.len();
        let (segment, after) = if let Some(quoted) = rest.strip_prefix('"') {
            let (segment, after) = quoted
                .split_once('"')
                .ok_or(Kind::UnterminatedQuote(index))?;
            if let Some(found) = segment.chars().find(|c| !is_quoted_segment_byte(*c as u8)) {
                return Err(Kind::NeedsQuotes {
                    segment: index,
                    found,
                });
            }
            if !after.is_empty() && !after.starts_with('.') {
                return Err(Kind::ExpectedDot(index));
            }
            (segment, after)
        } else {
            let end = rest.find('.').unwrap_or(rest.len());
            let (segment, after) = rest.split_at(end);
            if let Some(found) = segment.chars().find(|c| !is_bare_segment_byte(*c as u8)) {
                return Err(Kind::NeedsQuotes {
                    segment: index,
                    found,
                });
            }
            (segment, after)
        };
        if segment.is_empty() {
            return Err(Kind::EmptySegment(index));
        }
        if segment.starts_with('-') {
            return Err(Kind::LeadingDash(index));
        }
        segments.push(segment.to_owned());
        match after.strip_prefix('.') {
            Some(next) => rest = next,
            None => return Ok(segments),
        }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            if segment.bytes().all(is_bare_segment_byte) {
                f.write_str(segment)?;
            } else {
                write!(f, "\"{segment}\"")?;
            }
        }
        Ok(())
    }
}

impl FromStr for AttrPath {
    type Err = AttrPathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
