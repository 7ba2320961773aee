//! Benchmarks of containix. Each benchmark is a `[[bench]]` target in `benches/Cargo.toml` and
//! reports its figures next to a baseline measured in the same run.
//!
//! Criterion does the measuring; every routine is run through `Bencher::iter_custom`, which
//! hands its timings to a [`Samples`] as well, so a bench can print its own summary (medians and
//! ratios) at the end of the run without reading criterion's files. [`cri_pods`] holds what the
//! benches that drive pods through the test node's CRI share.

pub mod cri_pods;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `(iterations, elapsed)` of each call, per benchmark id.
type Calls = BTreeMap<String, Vec<(u64, Duration)>>;

/// The timings criterion asked for, per benchmark id: `(iterations, elapsed)` pairs in call order.
///
/// Criterion calls a routine first to warm up and then once per sample, so the last
/// `sample_size` calls are the measurement. Cloning shares the store.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    calls: Arc<Mutex<Calls>>,
}

impl Samples {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `routine` `iterations` times, records the total time under `id` and returns it:
    /// the body of an `iter_custom` closure.
    pub fn time(&self, id: &str, iterations: u64, mut routine: impl FnMut()) -> Duration {
        let start = Instant::now();
        for _ in 0..iterations {
            routine();
        }
        let elapsed = start.elapsed();
        self.record(id, iterations, elapsed);
        elapsed
    }

    /// Records one call of `id`: `iterations` runs took `elapsed` in total (for routines that
    /// time themselves, leaving setup out).
    pub fn record(&self, id: &str, iterations: u64, elapsed: Duration) {
        self.calls
            .lock()
            .expect("no recorder panics while holding the lock")
            .entry(id.to_owned())
            .or_default()
            .push((iterations, elapsed));
    }

    /// The median time of one iteration of `id` over its last `sample_size` calls (all calls
    /// when there were fewer, as in criterion's `--test` mode); `None` if `id` never ran
    /// (filtered out on the command line).
    pub fn median(&self, id: &str, sample_size: usize) -> Option<Duration> {
        let calls = self.calls.lock().expect("no recorder panics");
        let calls = calls.get(id)?;
        let measured = &calls[calls.len().saturating_sub(sample_size)..];
        let mut per_iteration: Vec<Duration> = measured
            .iter()
            .filter(|(iterations, _)| *iterations > 0)
            .map(|&(iterations, elapsed)| elapsed.div_f64(iterations as f64))
            .collect();
        if per_iteration.is_empty() {
            return None;
        }
        per_iteration.sort_unstable();
        let middle = per_iteration.len() / 2;
        Some(if per_iteration.len() % 2 == 1 {
            per_iteration[middle]
        } else {
            (per_iteration[middle - 1] + per_iteration[middle]) / 2
        })
    }
}

/// The table a bench prints at the end: one row per figure, then the ratios.
#[derive(Debug, Default)]
pub struct Summary {
    title: String,
    rows: Vec<(String, Option<Duration>, String)>,
    ratios: Vec<(String, Option<f64>, String)>,
}

impl Summary {
    /// An empty table headed `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            ..Self::default()
        }
    }

    /// Adds a figure: a median (`None` when the bench did not run) and a free-form note.
    pub fn figure(
        &mut self,
        name: impl Into<String>,
        median: Option<Duration>,
        note: impl Into<String>,
    ) {
        self.rows.push((name.into(), median, note.into()));
    }

    /// Adds the ratio `numerator / denominator` (shown as `n/a` when either is missing) with a
    /// note such as the target.
    pub fn ratio(
        &mut self,
        name: impl Into<String>,
        numerator: Option<Duration>,
        denominator: Option<Duration>,
        note: impl Into<String>,
    ) {
        let value = numerator
            .zip(denominator)
            .filter(|(_, d)| !d.is_zero())
            .map(|(n, d)| n.as_secs_f64() / d.as_secs_f64());
        self.ratios.push((name.into(), value, note.into()));
    }

    /// The table as text.
    pub fn render(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|(name, ..)| name.len())
            .chain(self.ratios.iter().map(|(name, ..)| name.len()))
            .max()
            .unwrap_or(0);
        let mut out = format!("\n== {} ==\n", self.title);
        for (name, median, note) in &self.rows {
            let value = median.map_or_else(|| "n/a".to_owned(), format_duration);
            let _ = writeln!(out, "{name:<width$}  {value:>12}  {note}");
        }
        if !self.ratios.is_empty() {
            let _ = writeln!(out, "ratios:");
        }
        for (name, value, note) in &self.ratios {
            let value = value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"));
            let _ = writeln!(out, "{name:<width$}  {value:>12}  {note}");
        }
        out
    }

    /// Prints the table to stdout.
    pub fn print(&self) {
        println!("{}", self.render());
    }
}

/// A duration with a unit that keeps three significant figures or so: `812 ns`, `41.3 us`,
/// `12.7 ms`, `1.52 s`.
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_secs_f64() * 1e9;
    let (value, unit) = if nanos < 1e3 {
        (nanos, "ns")
    } else if nanos < 1e6 {
        (nanos / 1e3, "us")
    } else if nanos < 1e9 {
        (nanos / 1e6, "ms")
    } else {
        (nanos / 1e9, "s")
    };
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_uses_the_last_samples_per_iteration() {
        let samples = Samples::new();
        // A warm-up call, then three samples.
        samples.record("a", 1, Duration::from_secs(100));
        samples.record("a", 2, Duration::from_millis(20));
        samples.record("a", 1, Duration::from_millis(30));
        samples.record("a", 4, Duration::from_millis(4));
        assert_eq!(samples.median("a", 3), Some(Duration::from_millis(10)));
        assert_eq!(samples.median("a", 2), Some(Duration::from_micros(15_500)));
        assert_eq!(samples.median("b", 3), None);
    }

    #[test]
    fn ratios_and_durations_render() {
        let mut summary = Summary::new("t");
        summary.figure("x", Some(Duration::from_micros(41_300)), "");
        summary.ratio(
            "x / y",
            Some(Duration::from_millis(1)),
            Some(Duration::from_millis(4)),
            "",
        );
        summary.ratio("x / z", Some(Duration::from_millis(1)), None, "");
        let text = summary.render();
        assert!(text.contains("41.3 ms"), "{text}");
        assert!(text.contains("0.250"), "{text}");
        assert!(text.contains("n/a"), "{text}");
        assert_eq!(format_duration(Duration::from_nanos(812)), "812 ns");
    }
}
