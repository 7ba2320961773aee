//! Progress on stderr for long work (the resolution's step and the daemon's counts, then the
//! rootfs being filled). On a terminal an `indicatif` spinner line is redrawn, cut to the
//! terminal's width; with `--progress` and no terminal a line is printed per step and at most
//! every half second; otherwise nothing is printed.

use std::io::IsTerminal;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use containix_core::assemble::rootfs::Progress as RootfsProgress;
use containix_core::resolve::{ResolveProgress, Step};
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Least time between two progress lines when stderr is not a terminal.
const LOG_INTERVAL: Duration = Duration::from_millis(500);

/// How progress reaches stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// Nothing is shown.
    Silent,
    /// One redrawn spinner line (stderr is a terminal).
    Spinner,
    /// Plain lines, rate-limited (`--progress` without a terminal).
    Lines,
}

impl Output {
    fn choose(forced: bool, terminal: bool) -> Self {
        match (terminal, forced) {
            (true, _) => Output::Spinner,
            (false, true) => Output::Lines,
            (false, false) => Output::Silent,
        }
    }
}

/// Writes progress to stderr, or nothing.
pub struct Reporter {
    output: Output,
    /// The spinner while one is shown.
    spinner: Mutex<Option<ProgressBar>>,
    /// When the last plain line was printed.
    last_line: Mutex<Option<Instant>>,
}

/// Stops watching a resolution's progress when dropped.
pub struct Watch(Option<JoinHandle<()>>);

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

impl Reporter {
    /// Reports when stderr is a terminal, or as plain lines when `forced`.
    pub fn new(forced: bool) -> Reporter {
        Reporter {
            output: Output::choose(forced, std::io::stderr().is_terminal()),
            spinner: Mutex::new(None),
            last_line: Mutex::new(None),
        }
    }

    /// Shows `text`: as the spinner's message, or as a plain line unless one was printed less
    /// than [`LOG_INTERVAL`] ago and `always` is false.
    pub fn line(&self, text: String, always: bool) {
        match self.output {
            Output::Silent => {}
            Output::Spinner => {
                let mut spinner = self.spinner.lock().unwrap_or_else(PoisonError::into_inner);
                spinner.get_or_insert_with(new_spinner).set_message(text);
            }
            Output::Lines => {
                let mut last = self
                    .last_line
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                if always || last.is_none_or(|at| now.duration_since(at) >= LOG_INTERVAL) {
                    *last = Some(now);
                    eprintln!("{text}");
                }
            }
        }
    }

    /// Clears the spinner, if one is shown.
    pub fn finish(&self) {
        let mut spinner = self.spinner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(spinner) = spinner.take() {
            spinner.finish_and_clear();
        }
    }

    /// Shows a resolution's progress while the returned guard lives. A step's first line is
    /// always printed; later counts are rate-limited like every line.
    pub fn watch_resolution(
        &'static self,
        mut progress: watch::Receiver<ResolveProgress>,
    ) -> Watch {
        if self.output == Output::Silent {
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
                self.line(text, new_step);
            }
        })))
    }

    /// Reports one step of populating a rootfs.
    pub fn rootfs(&self, progress: RootfsProgress) {
        let last = progress.paths_done == progress.paths_total;
        let text = format!(
            "rootfs: {}/{} paths, {}/{}",
            progress.paths_done,
            progress.paths_total,
            HumanBytes(progress.bytes_done),
            HumanBytes(progress.bytes_total)
        );
        self.line(text, last);
        if last {
            self.finish();
        }
    }
}

/// A spinner on stderr whose message is cut to the terminal's width.
fn new_spinner() -> ProgressBar {
    let style =
        ProgressStyle::with_template("{spinner} {wide_msg}").expect("a valid progress template");
    let spinner =
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}

/// The line for a resolution's progress: the step, then the daemon's counts while it reports
/// any. `None` between steps, and while a path is "substituted" that the daemon does not fetch
/// (it is already valid: `EnsurePath` then runs no activity).
fn resolution_line(progress: &ResolveProgress) -> Option<String> {
    let step = progress.step.as_ref()?;
    let daemon = &progress.daemon;
    if matches!(step, Step::Substituting(_)) && daemon.running_activities == 0 {
        return None;
    }
    if daemon.running_activities == 0 && daemon.paths_expected == 0 {
        return Some(step.to_string());
    }
    let activity = daemon.current_activity.as_deref().unwrap_or("");
    let line = format!(
        "{step}: nix: {}/{} paths, {}/{} {activity}",
        daemon.paths_done,
        daemon.paths_expected,
        HumanBytes(daemon.bytes_done),
        HumanBytes(daemon.bytes_expected),
    );
    Some(line.trim_end().to_owned())
}

/// `1.50 MiB`-style sizes.
pub fn human_bytes(bytes: u64) -> String {
    HumanBytes(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use containix_core::store::daemon::Progress as DaemonProgress;
    use containix_core::store::store_path::StorePath;

    use super::*;

    fn path() -> StorePath {
        StorePath::parse("/nix/store/0c1h5b3ldrb1d8jq6ln5ai3k06h3ipm8-hello-1.0").unwrap()
    }

    fn copying() -> DaemonProgress {
        DaemonProgress {
            paths_done: 1,
            paths_expected: 3,
            bytes_done: 1536,
            bytes_expected: 3 * 1024 * 1024,
            current_activity: Some("copying path".into()),
            running_activities: 1,
        }
    }

    #[test]
    fn progress_shows_on_a_terminal_or_when_forced_and_nowhere_else() {
        assert_eq!(Output::choose(false, true), Output::Spinner);
        assert_eq!(Output::choose(true, true), Output::Spinner);
        assert_eq!(Output::choose(true, false), Output::Lines);
        assert_eq!(Output::choose(false, false), Output::Silent);
    }

    #[test]
    fn sizes_are_human_readable() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.00 MiB");
    }

    #[test]
    fn resolution_lines_show_the_step_and_the_daemons_counts() {
        assert_eq!(resolution_line(&ResolveProgress::default()), None);
        let mut progress = ResolveProgress {
            step: Some(Step::Building(vec![path()])),
            daemon: DaemonProgress::default(),
        };
        assert_eq!(
            resolution_line(&progress).unwrap(),
            format!("building {}", path())
        );
        progress.daemon = copying();
        assert_eq!(
            resolution_line(&progress).unwrap(),
            format!(
                "building {}: nix: 1/3 paths, 1.50 KiB/3.00 MiB copying path",
                path()
            )
        );
    }

    #[test]
    fn a_path_the_daemon_does_not_fetch_shows_no_substituting_line() {
        // Already valid: EnsurePath runs no activity at all.
        let mut progress = ResolveProgress {
            step: Some(Step::Substituting(path())),
            daemon: DaemonProgress::default(),
        };
        assert_eq!(resolution_line(&progress), None);
        // The previous operation's finished counts are not this path's work.
        progress.daemon = DaemonProgress {
            running_activities: 0,
            current_activity: None,
            ..copying()
        };
        assert_eq!(resolution_line(&progress), None);
        // Fetched: shown with the daemon's counts.
        progress.daemon = copying();
        assert_eq!(
            resolution_line(&progress).unwrap(),
            format!(
                "substituting {}: nix: 1/3 paths, 1.50 KiB/3.00 MiB copying path",
                path()
            )
        );
    }
}
