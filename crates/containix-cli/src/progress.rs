//! Progress on stderr for long work: paths and bytes, shown when stderr is a terminal or with
//! `--progress`. On a terminal one line is redrawn; otherwise a line is printed per change, at
//! most a few per second.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use containix_core::assemble::rootfs::Progress as RootfsProgress;
use containix_core::resolve::ResolveProgress;
use containix_core::store::daemon::Progress as DaemonProgress;
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

    /// Prints one progress line (redrawn on a terminal; otherwise rate-limited unless
    /// `always`).
    pub fn line(&self, text: &str, always: bool) {
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
        if always || last.is_none_or(|at| now.duration_since(at) >= LOG_INTERVAL) {
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

    /// Prints a resolution's progress (its step, and the daemon's counts while a daemon
    /// operation runs) while the returned guard lives. A new step is always printed; counts are
    /// rate-limited like every line.
    pub fn watch_resolution(
        &'static self,
        mut progress: watch::Receiver<ResolveProgress>,
    ) -> Watch {
        if !self.enabled {
            return Watch(None);
        }
        Watch(Some(tokio::spawn(async move {
            let mut shown_step = None;
            while progress.changed().await.is_ok() {
                let current = progress.borrow_and_update().clone();
                let Some(text) = resolution_line(&current) else {
                    continue;
                };
                let new_step = current.step != shown_step;
                shown_step = current.step;
                self.line(&text, new_step);
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

/// The line for a resolution's progress: the step, then the daemon's counts while it reports
/// any; `None` between steps.
fn resolution_line(progress: &ResolveProgress) -> Option<String> {
    let step = progress.step.as_ref()?;
    let daemon = &progress.daemon;
    if daemon.running_activities == 0 && daemon.paths_expected == 0 {
        return Some(step.to_string());
    }
    Some(format!("{step}: {}", daemon_counts(daemon)))
}

/// `nix: 3/10 paths, 1.0/5.0 MiB copying ...`.
fn daemon_counts(daemon: &DaemonProgress) -> String {
    let activity = daemon.current_activity.as_deref().unwrap_or("");
    format!(
        "nix: {}/{} paths, {}/{} {activity}",
        daemon.paths_done,
        daemon.paths_expected,
        human_bytes(daemon.bytes_done),
        human_bytes(daemon.bytes_expected),
    )
    .trim_end()
    .to_owned()
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
    use containix_core::resolve::Step;
    use containix_core::store::store_path::StorePath;

    use super::*;

    #[test]
    fn sizes_are_human_readable() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn resolution_lines_show_the_step_and_the_daemons_counts() {
        assert_eq!(resolution_line(&ResolveProgress::default()), None);
        let path =
            StorePath::parse("/nix/store/0c1h5b3ldrb1d8jq6ln5ai3k06h3ipm8-hello-1.0").unwrap();
        let mut progress = ResolveProgress {
            step: Some(Step::Substituting(path.clone())),
            daemon: DaemonProgress::default(),
        };
        assert_eq!(
            resolution_line(&progress).unwrap(),
            format!("substituting {path}")
        );
        progress.daemon = DaemonProgress {
            paths_done: 1,
            paths_expected: 3,
            bytes_done: 1536,
            bytes_expected: 3 * 1024 * 1024,
            current_activity: Some("copying path".into()),
            running_activities: 1,
        };
        assert_eq!(
            resolution_line(&progress).unwrap(),
            format!("substituting {path}: nix: 1/3 paths, 1.5 KiB/3.0 MiB copying path")
        );
    }
}
