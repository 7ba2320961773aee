//! What a detached resolution reports while it runs: the status file the worker rewrites and
//! every waiting shim, `containix status` and the pod's error text read.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::resolve::known_roots::KnownRoots;
use crate::resolve::progress::ResolveProgress;
use crate::resolve::step::Step;
use crate::store::store_path::StorePath;

/// Where a detached resolution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum InflightState {
    /// The worker is resolving.
    Running,
    /// The closure is valid and held; `result` names its roots.
    Done,
    /// The resolution failed; `error` says why.
    Failed,
}

/// One status snapshot, as written to `status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InflightStatus {
    /// What is resolved, in a few words.
    pub request: String,
    /// Where it stands.
    pub state: InflightState,
    /// The step running (as a phrase), while running.
    pub step: Option<String>,
    /// A short form of the step for messages (`building /nix/store/...-app.drv`).
    pub step_short: Option<String>,
    /// Whether the step builds (so the counts are derivations and paths, not only paths).
    pub building: bool,
    /// Paths (or derivations) built or copied so far in this step.
    pub paths_done: u64,
    /// Paths (or derivations) the daemon expects to build or copy.
    pub paths_expected: u64,
    /// Bytes copied so far.
    pub bytes_done: u64,
    /// Bytes the daemon expects to copy.
    pub bytes_expected: u64,
    /// When the resolution started, in milliseconds since the epoch.
    pub started_ms: u64,
    /// When this snapshot was written, in milliseconds since the epoch.
    pub updated_ms: u64,
    /// The worker's process id.
    pub worker_pid: u32,
    /// Why it failed.
    pub error: Option<String>,
    /// What it resolved to.
    pub result: Option<InflightResult>,
}

/// A finished resolution's roots and program, as the waiting shims need them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InflightResult {
    /// The roots, in the request's order.
    pub roots: Vec<StorePath>,
    /// The program to run by default.
    pub main_program: Option<String>,
    /// The package's name.
    pub package_name: Option<String>,
    /// The package's version.
    pub package_version: Option<String>,
}

impl From<KnownRoots> for InflightResult {
    fn from(known: KnownRoots) -> Self {
        Self {
            roots: known.roots,
            main_program: known.main_program,
            package_name: known.package_name,
            package_version: known.package_version,
        }
    }
}

impl From<InflightResult> for KnownRoots {
    fn from(result: InflightResult) -> Self {
        Self {
            roots: result.roots,
            main_program: result.main_program,
            package_name: result.package_name,
            package_version: result.package_version,
        }
    }
}

impl InflightStatus {
    /// A running status for `request`, started at `now_ms`.
    pub fn running(request: String, now_ms: u64) -> Self {
        Self {
            request,
            state: InflightState::Running,
            step: None,
            step_short: None,
            building: false,
            paths_done: 0,
            paths_expected: 0,
            bytes_done: 0,
            bytes_expected: 0,
            started_ms: now_ms,
            updated_ms: now_ms,
            worker_pid: std::process::id(),
            error: None,
            result: None,
        }
    }

    /// Takes in a progress snapshot of the resolution.
    pub fn update(&mut self, progress: &ResolveProgress, now_ms: u64) {
        self.step = progress.step.as_ref().map(ToString::to_string);
        self.step_short = progress.step.as_ref().map(short_step);
        self.building = matches!(progress.step, Some(Step::Building(_)));
        self.paths_done = progress.daemon.paths_done;
        self.paths_expected = progress.daemon.paths_expected;
        self.bytes_done = progress.daemon.bytes_done;
        self.bytes_expected = progress.daemon.bytes_expected;
        self.updated_ms = now_ms;
    }

    /// How long it has run at `now_ms`.
    pub fn elapsed(&self, now_ms: u64) -> Duration {
        Duration::from_millis(now_ms.saturating_sub(self.started_ms))
    }

    /// One line for a pod's events while the resolution runs, e.g. `still building
    /// /nix/store/...-app.drv (3 of 7 derivations and paths, 1 m 40 s)` or `still substituting
    /// /nix/store/...-lib (120 of 340 paths, 1.2 of 3.4 GiB, 40 s)`.
    pub fn summary(&self, now_ms: u64) -> String {
        let what = self.step_short.as_deref().unwrap_or("starting");
        let mut parts = Vec::new();
        if self.paths_expected > 0 {
            let unit = if self.building {
                "derivations and paths"
            } else {
                "paths"
            };
            parts.push(format!(
                "{} of {} {unit}",
                self.paths_done, self.paths_expected
            ));
        }
        if self.bytes_expected > 0 {
            parts.push(format!(
                "{} of {}",
                human_bytes(self.bytes_done),
                human_bytes(self.bytes_expected)
            ));
        }
        parts.push(human_duration(self.elapsed(now_ms)));
        format!("still {what} ({})", parts.join(", "))
    }
}

/// A step with store paths shortened to `/nix/store/...-name`, short enough for
/// `kubectl describe pod`.
fn short_step(step: &Step) -> String {
    let short = |path: &StorePath| format!("/nix/store/...-{}", path.name());
    match step {
        Step::Building(drvs) => match drvs.as_slice() {
            [one] => format!("building {}", short(one)),
            [first, rest @ ..] => format!("building {} and {} more", short(first), rest.len()),
            [] => "building".to_owned(),
        },
        Step::Substituting(path) => format!("substituting {}", short(path)),
        Step::Protecting(path) => format!("protecting {}", short(path)),
        Step::QueryingClosure(path) => format!("querying the closure of {}", short(path)),
        other => other.to_string(),
    }
}

/// `1 m 40 s`, `12 s`, `2 h 5 m`.
pub fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} m {} s", secs / 60, secs % 60),
        _ => format!("{} h {} m", secs / 3600, secs % 3600 / 60),
    }
}

/// `1.2 GiB`, `340 MiB`, `12 KiB`, `512 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::daemon::stderr::Progress;

    fn drv() -> StorePath {
        StorePath::parse(&format!("/nix/store/{}-app.drv", "a".repeat(32))).unwrap()
    }

    #[test]
    fn a_running_build_reads_as_one_short_true_line() {
        let mut status = InflightStatus::running("github:org/app#default".into(), 1_000);
        assert_eq!(status.summary(13_000), "still starting (12 s)");
        status.update(
            &ResolveProgress {
                step: Some(Step::Building(vec![drv()])),
                daemon: Progress {
                    paths_done: 3,
                    paths_expected: 7,
                    ..Progress::default()
                },
            },
            50_000,
        );
        assert_eq!(
            status.summary(101_000),
            "still building /nix/store/...-app.drv (3 of 7 derivations and paths, 1 m 40 s)"
        );
    }

    #[test]
    fn a_substitution_counts_paths_and_bytes() {
        let mut status = InflightStatus::running("x".into(), 0);
        let path = StorePath::parse(&format!("/nix/store/{}-lib", "b".repeat(32))).unwrap();
        status.update(
            &ResolveProgress {
                step: Some(Step::Substituting(path)),
                daemon: Progress {
                    paths_done: 120,
                    paths_expected: 340,
                    bytes_done: 1_288_490_188,
                    bytes_expected: 3_650_722_201,
                    ..Progress::default()
                },
            },
            40_000,
        );
        assert_eq!(
            status.summary(40_000),
            "still substituting /nix/store/...-lib (120 of 340 paths, 1.2 GiB of 3.4 GiB, 40 s)"
        );
    }

    #[test]
    fn durations_and_sizes_are_read_at_a_glance() {
        assert_eq!(human_duration(Duration::from_secs(7_500)), "2 h 5 m");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(340 * 1024 * 1024), "340 MiB");
    }
}
