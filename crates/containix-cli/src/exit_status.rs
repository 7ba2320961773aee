//! The exit statuses every command documents, and the usage error that exits with status 2.

/// Exit codes every command documents.
pub const EXIT_CODES: &str = "\
Exit status:
  0  success
  1  failure (the error is printed as `containix: <message>`)
  2  usage error (bad or missing arguments)";

/// Arguments clap accepted but the command cannot use; `main` reports it the way clap reports
/// its own usage errors (status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
