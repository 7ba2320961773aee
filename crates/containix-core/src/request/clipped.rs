//! Untrusted text in an error message: control characters escaped and long text cut, so an
//! error about a hostile value stays one short line in a pod's events.

use std::fmt;

/// The most characters of one clipped part of a message.
pub const MAX_SHOWN_CHARS: usize = 500;

/// Displays `T` with control characters escaped, cut after [`MAX_SHOWN_CHARS`] characters.
pub struct Clipped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Clipped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        for (count, c) in text.chars().enumerate() {
            if count == MAX_SHOWN_CHARS {
                return f.write_str("…");
            }
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_fmt(format_args!("{c}"))?;
            }
        }
        Ok(())
    }
}

/// Displays a string quoted as `{:?}` does, cut after [`MAX_SHOWN_CHARS`] characters.
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Clipped(format!("{:?}", self.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_control_text_is_escaped_and_cut() {
        assert_eq!(Clipped("a\nb\u{0}").to_string(), "a\\nb\\u{0}");
        let long = Clipped("x".repeat(1 << 20)).to_string();
        assert_eq!(long.chars().count(), MAX_SHOWN_CHARS + 1);
        assert!(long.ends_with('…'));
        assert_eq!(Quoted("a\"b").to_string(), "\"a\\\"b\"");
    }
}
