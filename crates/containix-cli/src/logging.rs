//! The CLI's diagnostics: `tracing` events (containix-core's warnings, the Nix daemon's build
//! output and activities) on stderr, warnings and errors by default.
//!
//! `-v` shows info (what the daemon builds and fetches, every build output line, naming its
//! derivation), `-vv` debug, `-vvv` trace. Without `-v`, `RUST_LOG` (e.g.
//! `RUST_LOG=containix::nix=debug`) chooses. Stdout (data, `--json`) never gets a log line; on
//! a terminal, each line first clears the progress line it may share the screen with (the
//! progress display redraws itself on its next update).

use std::io::{IsTerminal, StderrLock, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

/// What a terminal needs before a log line: carriage return, clear to end of line.
const CLEAR_LINE: &[u8] = b"\r\x1b[K";

/// The filter for `verbose` times `-v`, else `rust_log` if set and valid, else warnings. Also
/// returns why `rust_log` was ignored, if it was. Pure.
pub fn filter(verbose: u8, rust_log: Option<&str>) -> (EnvFilter, Option<String>) {
    let level = match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let by_level = || EnvFilter::new(level.to_string());
    match rust_log.map(str::trim).filter(|value| !value.is_empty()) {
        Some(directives) if verbose == 0 => {
            match EnvFilter::builder().with_regex(false).parse(directives) {
                Ok(filter) => (filter, None),
                Err(err) => (
                    by_level(),
                    Some(format!("ignoring RUST_LOG={directives:?}: {err}")),
                ),
            }
        }
        _ => (by_level(), None),
    }
}

/// Installs the stderr subscriber for `verbose` times `-v` (see the module documentation).
pub fn install(verbose: u8) {
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let (filter, ignored) = filter(verbose, rust_log.as_deref());
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(StderrLines {
            terminal: std::io::stderr().is_terminal(),
        })
        .without_time()
        .try_init();
    if installed.is_ok()
        && let Some(reason) = ignored
    {
        tracing::warn!("{reason}");
    }
}

/// Makes a writer per event that holds stderr's lock while the event is written, so that no
/// other output interleaves with the line.
struct StderrLines {
    terminal: bool,
}

impl<'a> MakeWriter<'a> for StderrLines {
    type Writer = LogLine<StderrLock<'static>>;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine {
            out: std::io::stderr().lock(),
            clear_first: self.terminal,
        }
    }
}

/// One event's line, written to `out` after [`CLEAR_LINE`] when `clear_first`.
struct LogLine<W> {
    out: W,
    clear_first: bool,
}

impl<W: Write> Write for LogLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::mem::take(&mut self.clear_first) {
            self.out.write_all(CLEAR_LINE)?;
        }
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_by_default_more_with_each_v_and_rust_log_without_v() {
        let hint = |verbose, rust_log| filter(verbose, rust_log).0.max_level_hint();
        assert_eq!(hint(0, None), Some(LevelFilter::WARN));
        assert_eq!(hint(1, None), Some(LevelFilter::INFO));
        assert_eq!(hint(2, None), Some(LevelFilter::DEBUG));
        assert_eq!(hint(3, None), Some(LevelFilter::TRACE));
        assert_eq!(hint(9, None), Some(LevelFilter::TRACE));
        assert_eq!(hint(0, Some("")), Some(LevelFilter::WARN));
        assert_eq!(
            hint(0, Some("containix::nix=info")),
            Some(LevelFilter::INFO)
        );
        assert_eq!(hint(1, Some("error")), Some(LevelFilter::INFO), "-v wins");
        let (filter, ignored) = filter(0, Some("=nonsense=="));
        assert_eq!(filter.max_level_hint(), Some(LevelFilter::WARN));
        assert!(ignored.unwrap().contains("RUST_LOG"));
    }

    #[test]
    fn on_a_terminal_a_line_first_clears_the_progress_line_once() {
        for (terminal, expected) in [(true, "\r\x1b[K WARN x\n"), (false, " WARN x\n")] {
            let mut line = LogLine {
                out: Vec::new(),
                clear_first: terminal,
            };
            line.write_all(b" WARN ").unwrap();
            line.write_all(b"x\n").unwrap();
            assert_eq!(String::from_utf8(line.out).unwrap(), expected);
        }
    }
}
