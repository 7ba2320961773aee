//! Where the shim's `tracing` events go: its own, containix-core's (Nix build output, stage
//! timings) and the containerd-shim crate's `log` records, bridged with `tracing-log`.
//!
//! containerd runs the shim binary in three ways, and each has its own place for diagnostics:
//! - `start`: containerd reads its combined stdout and stderr as the socket address, so nothing
//!   is logged.
//! - `delete`: containerd logs what it writes to stderr as "cleanup warnings", so warnings and
//!   errors go there.
//! - serving (no action): containerd copies the lines of the `log` fifo in the bundle directory
//!   into its own log. Events go there in containerd's line format ([`LogrusFormat`]) at info,
//!   or at debug when containerd itself logs at debug (it then passes `-debug`).
//!
//! `RUST_LOG` in containerd's environment, when set, replaces either level (for example
//! `RUST_LOG=containix::nix=debug,info`).

use std::fs::OpenOptions;
use std::sync::Mutex;

use containerd_shim::Flags;
use tracing_log::AsLog;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::util::SubscriberInitExt;

use crate::logrus_format::LogrusFormat;

/// The fifo containerd reads the serving shim's log from, in the bundle (working) directory.
pub const LOG_FIFO: &str = "log";

/// Where one run of the shim binary sends its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Nowhere: the run's output is its answer to containerd.
    Nowhere,
    /// Standard error, warnings and errors only.
    Stderr,
    /// The `log` fifo containerd reads.
    Fifo,
}

/// Where the run named by containerd's `action` argument logs. Pure.
pub fn destination(action: &str) -> Destination {
    match action {
        "start" => Destination::Nowhere,
        "delete" => Destination::Stderr,
        _ => Destination::Fifo,
    }
}

/// The filter of a serving shim: `rust_log` if set and valid, else info, or debug when
/// containerd passed `-debug`. Also returns why `rust_log` was ignored, if it was. Pure.
pub fn serving_filter(debug: bool, rust_log: Option<&str>) -> (EnvFilter, Option<String>) {
    let default = if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    match rust_log.map(str::trim).filter(|value| !value.is_empty()) {
        None => (EnvFilter::new(default.to_string()), None),
        Some(directives) => match EnvFilter::builder().with_regex(false).parse(directives) {
            Ok(filter) => (filter, None),
            Err(err) => (
                EnvFilter::new(default.to_string()),
                Some(format!("ignoring RUST_LOG={directives:?}: {err}")),
            ),
        },
    }
}

/// Installs the subscriber for this run of the shim (see the module documentation). Logging
/// is best effort: if the fifo cannot be opened, events are dropped and the shim still runs.
pub fn install(runtime: &str, flags: &Flags) {
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let (filter, ignored) = match destination(&flags.action) {
        Destination::Nowhere => return,
        Destination::Stderr => {
            let filter = EnvFilter::new(LevelFilter::WARN.to_string());
            let installed = tracing_subscriber::fmt()
                .event_format(LogrusFormat::new(runtime))
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .finish()
                .try_init();
            bridge_log(installed.is_ok(), LevelFilter::WARN);
            return;
        }
        Destination::Fifo => serving_filter(flags.debug, rust_log.as_deref()),
    };
    let Ok(fifo) = OpenOptions::new().write(true).open(LOG_FIFO) else {
        return;
    };
    let max_level = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
    let installed = tracing_subscriber::fmt()
        // A write containerd no longer reads fails quietly: reporting it on stderr could
        // panic the shim.
        .log_internal_errors(false)
        .event_format(LogrusFormat::new(runtime))
        .with_env_filter(filter)
        .with_writer(Mutex::new(fifo))
        .finish()
        .try_init();
    bridge_log(installed.is_ok(), max_level);
    if let Some(reason) = ignored {
        tracing::warn!("{reason}");
    }
}

/// Routes `log` records (the containerd-shim crate logs with `log`) into `tracing`, letting
/// through only what `max_level` could show.
fn bridge_log(subscriber_installed: bool, max_level: LevelFilter) {
    if subscriber_installed {
        let _ = tracing_log::LogTracer::builder()
            .with_max_level(max_level.as_log())
            .init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_logs_nowhere_delete_to_stderr_and_serving_to_the_fifo() {
        assert_eq!(destination("start"), Destination::Nowhere);
        assert_eq!(destination("delete"), Destination::Stderr);
        assert_eq!(destination(""), Destination::Fifo);
    }

    #[test]
    fn containerds_debug_flag_and_rust_log_set_the_level() {
        let hint = |debug, rust_log| serving_filter(debug, rust_log).0.max_level_hint();
        assert_eq!(hint(false, None), Some(LevelFilter::INFO));
        assert_eq!(hint(true, None), Some(LevelFilter::DEBUG));
        assert_eq!(hint(true, Some("  ")), Some(LevelFilter::DEBUG));
        assert_eq!(hint(false, Some("warn")), Some(LevelFilter::WARN));
        assert_eq!(hint(true, Some("trace")), Some(LevelFilter::TRACE));
        assert_eq!(
            hint(false, Some("containix::nix=debug,info")),
            Some(LevelFilter::DEBUG)
        );
        let (filter, ignored) = serving_filter(true, Some("=nonsense=="));
        assert_eq!(filter.max_level_hint(), Some(LevelFilter::DEBUG));
        assert!(ignored.unwrap().contains("RUST_LOG"));
    }
}
