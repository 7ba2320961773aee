//! The error type every testkit function returns.

use std::path::PathBuf;
use std::time::Duration;

/// A testkit result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the test node could not do what a test asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Debian packages or binaries the tests need are not installed on this machine.
    #[error(
        "this machine is not a containix test node: {}; run scripts/setup-node.sh as root to install \
         the packages ({})",
        describe_missing(.packages, .binaries),
        .packages.join(" ")
    )]
    MissingPackages {
        /// Debian packages that are not installed (or whose binaries are missing).
        packages: Vec<String>,
        /// Binaries that were not found on `PATH`.
        binaries: Vec<String>,
    },

    /// A program ran and exited unsuccessfully.
    #[error("`{program} {}` failed ({status}); stderr ends with:\n{stderr_tail}", .args.join(" "))]
    CommandFailed {
        /// The program that ran.
        program: String,
        /// Its arguments, as passed (no shell involved).
        args: Vec<String>,
        /// How it exited.
        status: String,
        /// The last lines of what it wrote to stderr.
        stderr_tail: String,
    },

    /// An I/O operation failed; `context` says what the testkit was doing.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path or program involved.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Something did not become ready within a bounded wait.
    #[error("timed out after {waited:?} waiting for {what}{}", fmt_detail(.detail))]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the testkit waited.
        waited: Duration,
        /// Extra evidence, such as the tail of a log file (may be empty).
        detail: String,
    },

    /// A caller passed a value the testkit cannot use.
    #[error("invalid {field}: expected {expected}, got {got:?}")]
    InvalidInput {
        /// The argument or field that was wrong.
        field: &'static str,
        /// What would have been accepted.
        expected: &'static str,
        /// What was passed.
        got: String,
    },

    /// A program succeeded but printed something the testkit could not understand.
    #[error("unexpected output from `{program}`: {detail}")]
    UnexpectedOutput {
        /// The program whose output was not understood.
        program: String,
        /// What was wrong with it.
        detail: String,
    },
}

impl Error {
    /// An [`Error::Io`] with a sentence saying what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// An [`Error::Io`] about a path: "`action` `path`".
    pub fn io_at(action: &str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::io(format!("{action} {}", path.into().display()), source)
    }
}

fn describe_missing(packages: &[String], binaries: &[String]) -> String {
    let mut parts = Vec::new();
    if !packages.is_empty() {
        parts.push(format!("missing Debian packages: {}", packages.join(", ")));
    }
    if !binaries.is_empty() {
        parts.push(format!("not on PATH: {}", binaries.join(", ")));
    }
    parts.join("; ")
}

fn fmt_detail(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(":\n{detail}")
    }
}

/// The last `max_lines` lines of `text` (at most 4 KiB), for error messages.
pub(crate) fn tail(text: &str, max_lines: usize) -> String {
    let text = text.trim_end();
    let start = text
        .rmatch_indices('\n')
        .nth(max_lines.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1);
    let mut start = start.max(text.len().saturating_sub(4096));
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a\nb", 5), "a\nb");
        assert_eq!(tail("", 3), "");
    }

    #[test]
    fn missing_packages_message_names_them_and_the_setup_script() {
        let err = Error::MissingPackages {
            packages: vec!["runc".into()],
            binaries: vec!["runc".into()],
        };
        let msg = err.to_string();
        assert!(msg.contains("missing Debian packages: runc"), "{msg}");
        assert!(msg.contains("not on PATH: runc"), "{msg}");
        assert!(msg.contains("scripts/setup-node.sh"), "{msg}");
    }
}
