//! Progress on stderr for long work: paths and bytes, shown when stderr is a terminal or with
//! `--progress`. On a terminal one line is redrawn; otherwise a line is printed per change, at
//! most a few per second.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use containix_core::daemon::Progress as DaemonProgress;
use containix_core::rootfs::Progress as RootfsProgress;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Least time between two progress lines when stderr is not a terminal.
const LOG_INTERVAL: Duration = Duration::from_millis(500);

/// Writes progress lines to stderr, or nothing when disabled.
pub struct Reporter {
    enabled: bool,
    terminal: bool,
    last: Mutex<Option<Instant>>,
}

/// Stops watching the daemon's progress when dropped.
pub struct Watch(Option<JoinHandle<()>>);

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

impl Reporter {
    /// Reports when `forced` or when stderr is a terminal.
    pub fn new(forced: bool) -> Reporter {
        let terminal = std::io::stderr().is_terminal();
        Reporter {
            enabled: forced || terminal,
            terminal,
            last: Mutex::new(None),
        }
    }

    /// Prints one progress line (redrawn on a terminal, rate-limited otherwise).
    pub fn line(&self, text: &str, last_one: bool) {
        if !self.enabled {
            return;
        }
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(stderr, "\r\x1b[K{text}");
            let _ = stderr.flush();
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last_one || last.is_none_or(|at| now.duration_since(at) >= LOG_INTERVAL) {
            *last = Some(now);
            let _ = writeln!(stderr, "{text}");
        }
    }

    /// Ends a redrawn line.
    pub fn finish(&self) {
        if self.enabled && self.terminal {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }

    /// Prints the daemon's progress while the returned guard lives.
    pub fn watch_daemon(&'static self, mut progress: watch::Receiver<DaemonProgress>) -> Watch {
        if !self.enabled {
            return Watch(None);
        }
        Watch(Some(tokio::spawn(async move {
            while progress.changed().await.is_ok() {
                let current = progress.borrow_and_update().clone();
                if current.running_activities == 0 && current.paths_expected == 0 {
                    continue;
                }
                let activity = current.current_activity.as_deref().unwrap_or("");
                self.line(
                    &format!(
                        "nix: {}/{} paths, {}/{} {activity}",
                        current.paths_done,
                        current.paths_expected,
                        human_bytes(current.bytes_done),
                        human_bytes(current.bytes_expected),
                    ),
                    false,
                );
            }
        })))
    }

    /// Reports one step of populating a rootfs.
    pub fn rootfs(&self, progress: RootfsProgress) {
        let last = progress.paths_done == progress.paths_total;
        self.line(
            &format!(
                "rootfs: {}/{} paths, {}/{}",
                progress.paths_done,
                progress.paths_total,
                human_bytes(progress.bytes_done),
                human_bytes(progress.bytes_total)
            ),
            last,
        );
        if last {
            self.finish();
        }
    }
}

/// `1.5 MiB`-style sizes.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_are_human_readable() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
