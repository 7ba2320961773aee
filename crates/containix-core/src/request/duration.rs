//! Human durations as operators write them: `90s`, `2m`, `1m30s`, `1h`; and as log lines give
//! them ([`millis`]).

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DurationError {
    /// The text is empty.
    #[error("empty duration; expected e.g. `90s`, `2m` or `1m30s`")]
    Empty,
    /// The text is not a sequence of `<integer><unit>` groups.
    #[error(
        "duration {text:?} is not of the form `<integer><unit>...` with units h, m, s (e.g. `1m30s`)"
    )]
    Syntax {
        /// The refused text.
        text: String,
    },
    /// A unit appears twice or out of order (h, then m, then s).
    #[error(
        "duration {text:?} repeats a unit or puts them out of order; expected h, then m, then s"
    )]
    UnitOrder {
        /// The refused text.
        text: String,
    },
    /// The duration is zero.
    #[error("duration {text:?} is zero; expected a positive duration")]
    Zero {
        /// The refused text.
        text: String,
    },
    /// The duration does not fit in a u64 number of seconds.
    #[error("duration {text:?} is too long")]
    Overflow {
        /// The refused text.
        text: String,
    },
}

/// Parses `1h`, `2m`, `90s`, `1m30s`, `1h2m3s`: positive whole seconds, units in order.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let syntax = || DurationError::Syntax { text: text.into() };
    let overflow = || DurationError::Overflow { text: text.into() };
    let mut seconds: u64 = 0;
    let mut last_rank = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(syntax());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| overflow())?;
        let (scale, rank) = match rest.as_bytes().get(digits) {
            Some(b'h') => (3600, 1),
            Some(b'm') => (60, 2),
            Some(b's') => (1, 3),
            _ => return Err(syntax()),
        };
        if rank <= last_rank {
            return Err(DurationError::UnitOrder { text: text.into() });
        }
        last_rank = rank;
        seconds = value
            .checked_mul(scale)
            .and_then(|part| seconds.checked_add(part))
            .ok_or_else(overflow)?;
        rest = &rest[digits + 1..];
    }
    if seconds == 0 {
        return Err(DurationError::Zero { text: text.into() });
    }
    Ok(Duration::from_secs(seconds))
}

/// Formats whole seconds the way [`parse_duration`] reads them (`1m30s`); sub-second parts are
/// dropped.
pub fn format_duration(duration: Duration) -> impl fmt::Display {
    HumanDuration(duration.as_secs())
}

struct HumanDuration(u64);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (self.0 / 3600, self.0 / 60 % 60, self.0 % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 || self.0 == 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

/// `duration` in milliseconds, to a tenth: how log fields such as `resolve_ms` give it.
pub fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10_000.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn log_fields_give_milliseconds_to_a_tenth() {
        assert_eq!(millis(Duration::ZERO), 0.0);
        assert_eq!(millis(Duration::from_micros(13_449)), 13.4);
        assert_eq!(millis(Duration::from_micros(13_450)), 13.5);
        assert_eq!(millis(Duration::from_secs(2)), 2000.0);
    }

    #[test]
    fn accepts_operator_forms() {
        for (text, secs) in [
            ("90s", 90),
            ("2m", 120),
            ("1m30s", 90),
            ("1h", 3600),
            ("1h2m3s", 3723),
            ("1h5s", 3605),
            ("007s", 7),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_with_reasons() {
        for (text, expected) in [
            ("", "empty duration"),
            ("90", "not of the form"),
            ("s", "not of the form"),
            ("1.5m", "not of the form"),
            ("-5s", "not of the form"),
            (" 5s", "not of the form"),
            ("5 s", "not of the form"),
            ("5ms", "not of the form"),
            ("5d", "not of the form"),
            ("30s1m", "out of order"),
            ("1m1m", "out of order"),
            ("0s", "is zero"),
            ("0h0m0s", "is zero"),
            ("99999999999999999999s", "too long"),
            ("9999999999999999h", "too long"),
        ] {
            let err = parse_duration(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(
            format_duration(Duration::from_secs(90)).to_string(),
            "1m30s"
        );
        assert_eq!(format_duration(Duration::from_secs(3600)).to_string(), "1h");
        assert_eq!(format_duration(Duration::from_secs(0)).to_string(), "0s");
        assert_eq!(
            format_duration(Duration::from_millis(2500)).to_string(),
            "2s"
        );
    }

    proptest! {
        #[test]
        fn format_parse_round_trips(secs in 1u64..10_000_000) {
            let text = format_duration(Duration::from_secs(secs)).to_string();
            prop_assert_eq!(parse_duration(&text), Ok(Duration::from_secs(secs)));
        }
    }
}
