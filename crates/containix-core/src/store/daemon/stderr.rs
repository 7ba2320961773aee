//! The "stderr" channel that precedes every reply: log lines, activities and their results, and
//! finally `STDERR_LAST` (a result follows) or `STDERR_ERROR` (the operation failed).
//!
//! Log lines, activities, build output and errors become `tracing` events naming the derivation
//! or store path they concern ([`ActivityLog`]), and activities update a [`Progress`] snapshot
//! published on a `watch` channel that a frontend can render.
//!
//! The last few warning- or error-looking log lines of the operation are also kept ([`LogTail`])
//! and attached to its [`DaemonError::Daemon`]: older daemons (Nix 2.8) give the real reason a
//! substitution failed (a bad signature, an unreachable cache, an HTTP error) only as log lines,
//! and end with a generic error.

use std::collections::{BTreeMap, VecDeque};

use tokio::io::AsyncBufRead;
use tokio::sync::watch;

use super::activity::{
    ACTIVITY_BUILDS, ACTIVITY_COPY_PATH, ACTIVITY_COPY_PATHS, Field, RESULT_BUILD_LOG_LINE,
    RESULT_PROGRESS, RESULT_SET_EXPECTED,
};
use super::activity_log::{ActivityLog, TARGET};
use super::ansi::strip_ansi;
use super::error::{DaemonError, DaemonResult};
use super::version::ProtocolVersion;
use super::wire::{
    MAX_FIELD_COUNT, MAX_LOG_LINE_LEN, MAX_SHORT_STRING_LEN, MAX_SMALL_LIST_LEN, MAX_STRING_LEN,
    WireReader,
};

/// A log line follows.
pub const STDERR_NEXT: u64 = 0x6f6c_6d67;
/// The daemon wants data from the client (legacy import only).
pub const STDERR_READ: u64 = 0x6461_7461;
/// The daemon pushes data to the client (legacy export only).
pub const STDERR_WRITE: u64 = 0x6461_7416;
/// The operation succeeded; its result follows.
pub const STDERR_LAST: u64 = 0x616c_7473;
/// The operation failed; an error follows and no result.
pub const STDERR_ERROR: u64 = 0x6378_7470;
/// An activity starts.
pub const STDERR_START_ACTIVITY: u64 = 0x5354_5254;
/// An activity stops.
pub const STDERR_STOP_ACTIVITY: u64 = 0x5354_4f50;
/// An activity reports a result.
pub const STDERR_RESULT: u64 = 0x5253_4c54;

/// Most log lines an operation keeps to explain its failure ([`LogTail`]).
pub const LOG_TAIL_LINES: usize = 8;

/// Longest log line kept in a [`LogTail`], in bytes; longer ones are cut and end with `…`.
pub const LOG_TAIL_LINE_LEN: usize = 512;

/// Most activities tracked at once; more are logged but not counted.
const MAX_TRACKED_ACTIVITIES: usize = 10_000;

/// What the daemon is doing, summed over the current operation's activities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Paths built or copied so far.
    pub paths_done: u64,
    /// Paths the daemon expects to build or copy.
    pub paths_expected: u64,
    /// Bytes of NARs copied so far.
    pub bytes_done: u64,
    /// Bytes of NARs the daemon expects to copy.
    pub bytes_expected: u64,
    /// Text of the most recently started activity still running, e.g. "building '/nix/store/...'".
    pub current_activity: Option<String>,
    /// Number of activities running.
    pub running_activities: usize,
}

#[derive(Debug)]
struct Activity {
    kind: u64,
    text: String,
    started: u64,
    done: u64,
    expected: u64,
    expected_by_type: BTreeMap<u64, u64>,
}

/// Folds activities into [`Progress`] and publishes it.
#[derive(Debug)]
pub struct ProgressTracker {
    running: BTreeMap<u64, Activity>,
    finished: Progress,
    finished_expected_copy_bytes: u64,
    started: u64,
    sender: watch::Sender<Progress>,
}

impl ProgressTracker {
    /// A tracker and a receiver of its snapshots.
    pub fn new() -> (Self, watch::Receiver<Progress>) {
        let (sender, receiver) = watch::channel(Progress::default());
        let tracker = Self {
            running: BTreeMap::new(),
            finished: Progress::default(),
            finished_expected_copy_bytes: 0,
            started: 0,
            sender,
        };
        (tracker, receiver)
    }

    /// Another receiver of the snapshots.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.sender.subscribe()
    }

    /// The latest snapshot.
    pub fn current(&self) -> Progress {
        self.sender.borrow().clone()
    }

    /// Forgets all activities: called when a new operation starts.
    pub fn reset(&mut self) {
        self.running.clear();
        self.finished = Progress::default();
        self.finished_expected_copy_bytes = 0;
        self.sender.send_replace(Progress::default());
    }

    fn start(&mut self, id: u64, kind: u64, text: String) {
        if self.running.len() >= MAX_TRACKED_ACTIVITIES {
            return;
        }
        self.started += 1;
        let activity = Activity {
            kind,
            text,
            started: self.started,
            done: 0,
            expected: 0,
            expected_by_type: BTreeMap::new(),
        };
        self.running.insert(id, activity);
        self.publish();
    }

    fn stop(&mut self, id: u64) {
        if let Some(activity) = self.running.remove(&id) {
            // The counts are the daemon's: saturate rather than overflow on absurd ones.
            let (paths, bytes) = Self::contribution(&activity);
            let finished = &mut self.finished;
            finished.paths_done = finished.paths_done.saturating_add(paths.0);
            finished.paths_expected = finished.paths_expected.saturating_add(paths.1);
            finished.bytes_done = finished.bytes_done.saturating_add(bytes.0);
            finished.bytes_expected = finished.bytes_expected.saturating_add(bytes.1);
            self.finished_expected_copy_bytes = self.finished_expected_copy_bytes.saturating_add(
                activity
                    .expected_by_type
                    .get(&ACTIVITY_COPY_PATH)
                    .copied()
                    .unwrap_or(0),
            );
            self.publish();
        }
    }

    fn result(&mut self, id: u64, kind: u64, fields: &[Field]) {
        let Some(activity) = self.running.get_mut(&id) else {
            return;
        };
        match (kind, fields) {
            (RESULT_PROGRESS, [Field::Int(done), Field::Int(expected), ..]) => {
                activity.done = *done;
                activity.expected = *expected;
            }
            (RESULT_SET_EXPECTED, [Field::Int(of_type), Field::Int(expected), ..]) => {
                activity.expected_by_type.insert(*of_type, *expected);
            }
            _ => return,
        }
        self.publish();
    }

    /// (paths done, expected), (bytes done, expected) of one activity.
    fn contribution(activity: &Activity) -> ((u64, u64), (u64, u64)) {
        match activity.kind {
            ACTIVITY_COPY_PATHS | ACTIVITY_BUILDS => ((activity.done, activity.expected), (0, 0)),
            ACTIVITY_COPY_PATH => ((0, 0), (activity.done, activity.expected)),
            _ => ((0, 0), (0, 0)),
        }
    }

    fn publish(&self) {
        let mut progress = self.finished.clone();
        let mut announced_bytes = self.finished_expected_copy_bytes;
        for activity in self.running.values() {
            let (paths, bytes) = Self::contribution(activity);
            progress.paths_done = progress.paths_done.saturating_add(paths.0);
            progress.paths_expected = progress.paths_expected.saturating_add(paths.1);
            progress.bytes_done = progress.bytes_done.saturating_add(bytes.0);
            progress.bytes_expected = progress.bytes_expected.saturating_add(bytes.1);
            announced_bytes = announced_bytes.saturating_add(
                activity
                    .expected_by_type
                    .get(&ACTIVITY_COPY_PATH)
                    .copied()
                    .unwrap_or(0),
            );
        }
        progress.bytes_expected = progress.bytes_expected.max(announced_bytes);
        progress.running_activities = self.running.len();
        progress.current_activity = self
            .running
            .values()
            .filter(|activity| !activity.text.is_empty())
            .max_by_key(|activity| activity.started)
            .map(|activity| activity.text.clone());
        self.sender.send_replace(progress);
    }
}

/// The last [`LOG_TAIL_LINES`] warning- or error-looking log lines of one operation (see
/// [`looks_like_a_problem`]), without colours, each at most [`LOG_TAIL_LINE_LEN`] bytes; a
/// line seen again moves to the end instead of being kept twice (retries repeat themselves).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogTail {
    lines: VecDeque<String>,
}

impl LogTail {
    /// Keeps `line` if it looks like a problem, dropping the oldest kept line when full.
    pub fn offer(&mut self, line: &str) {
        let line = strip_ansi(line);
        let line = line.trim();
        if !looks_like_a_problem(line) {
            return;
        }
        let line = shorten(line, LOG_TAIL_LINE_LEN);
        self.lines
            .retain(|kept| without_retry_delay(kept) != without_retry_delay(&line));
        if self.lines.len() == LOG_TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The kept lines, oldest first, leaving out one that repeats the final error `message`.
    pub fn into_lines(self, message: &str) -> Vec<String> {
        let message = message.trim();
        self.lines
            .into_iter()
            .filter(|line| line != message)
            .collect()
    }
}

/// Whether a log line reads like a warning or an error (Nix prefixes those with `warning:` or
/// `error:`; download and signature problems name themselves).
pub fn looks_like_a_problem(line: &str) -> bool {
    const SIGNS: [&str; 12] = [
        "warning:",
        "error",
        "fail",
        "unable",
        "cannot",
        "can't",
        "couldn't",
        "could not",
        "denied",
        "refused",
        "signature",
        "timed out",
    ];
    let lower = line.to_lowercase();
    SIGNS.iter().any(|sign| lower.contains(sign))
}

/// `line` without a trailing `; retrying in <n> ms`, so that the attempts of one download count
/// as one line.
fn without_retry_delay(line: &str) -> &str {
    if let Some(at) = line.rfind("; retrying in ")
        && let Some(delay) = line[at + "; retrying in ".len()..].strip_suffix(" ms")
        && !delay.is_empty()
        && delay.bytes().all(|b| b.is_ascii_digit())
    {
        return &line[..at];
    }
    line
}

/// `text` cut to at most `max` bytes at a character boundary, marked with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Reads stderr messages up to and including `STDERR_LAST` (returns `Ok`) or `STDERR_ERROR`
/// (returns [`DaemonError::Daemon`], with the operation's [`LogTail`]).
pub async fn read_stderr<R: AsyncBufRead + Unpin>(
    reader: &mut WireReader<R>,
    version: ProtocolVersion,
    progress: &mut ProgressTracker,
) -> DaemonResult<()> {
    let mut log_tail = LogTail::default();
    let mut activities = ActivityLog::default();
    loop {
        match reader.u64("stderr message type").await? {
            STDERR_LAST => return Ok(()),
            STDERR_ERROR => {
                let error = read_error(reader, version, log_tail).await?;
                if let Some(message) = error.daemon_message() {
                    activities.failed(message).emit();
                }
                return Err(error);
            }
            STDERR_NEXT => {
                let line = reader.text("log line", MAX_LOG_LINE_LEN).await?;
                activities.line(&line).emit();
                log_tail.offer(&line);
            }
            STDERR_START_ACTIVITY => {
                let id = reader.u64("activity id").await?;
                let level = reader.u64("activity level").await?;
                let kind = reader.u64("activity type").await?;
                let text = reader.text("activity text", MAX_STRING_LEN).await?;
                let fields = read_fields(reader).await?;
                let parent = reader.u64("activity parent").await?;
                activities
                    .started(id, level, kind, &text, &fields, parent)
                    .emit();
                tracing::trace!(target: TARGET, id, kind, parent, ?fields, "activity started");
                progress.start(id, kind, text);
            }
            STDERR_STOP_ACTIVITY => {
                let id = reader.u64("activity id").await?;
                tracing::trace!(target: TARGET, id, "activity stopped");
                activities.stopped(id);
                progress.stop(id);
            }
            STDERR_RESULT => {
                let id = reader.u64("activity id").await?;
                let kind = reader.u64("result type").await?;
                let fields = read_fields(reader).await?;
                match activities.result(id, kind, &fields) {
                    Some(event) => event.emit(),
                    None => tracing::trace!(target: TARGET, id, kind, ?fields, "result"),
                }
                if let (RESULT_BUILD_LOG_LINE, [Field::String(line), ..]) =
                    (kind, fields.as_slice())
                {
                    log_tail.offer(line);
                }
                progress.result(id, kind, &fields);
            }
            STDERR_READ => {
                let _wanted = reader.u64("read request size").await?;
                return Err(DaemonError::UnsupportedStderr("STDERR_READ"));
            }
            STDERR_WRITE => return Err(DaemonError::UnsupportedStderr("STDERR_WRITE")),
            value => {
                return Err(DaemonError::UnexpectedValue {
                    what: "stderr message type",
                    value,
                    expected: "a STDERR_* message",
                });
            }
        }
    }
}

async fn read_fields<R: AsyncBufRead + Unpin>(
    reader: &mut WireReader<R>,
) -> DaemonResult<Vec<Field>> {
    let count = reader.len("field count", MAX_FIELD_COUNT).await?;
    let mut fields = Vec::with_capacity(count as usize);
    for _ in 0..count {
        match reader.u64("field type").await? {
            0 => fields.push(Field::Int(reader.u64("integer field").await?)),
            1 => fields.push(Field::String(
                reader.text("string field", MAX_LOG_LINE_LEN).await?,
            )),
            value => {
                return Err(DaemonError::UnexpectedValue {
                    what: "field type",
                    value,
                    expected: "0 (integer) or 1 (string)",
                });
            }
        }
    }
    Ok(fields)
}

/// Reads the body of `STDERR_ERROR` into [`DaemonError::Daemon`].
async fn read_error<R: AsyncBufRead + Unpin>(
    reader: &mut WireReader<R>,
    version: ProtocolVersion,
    log_tail: LogTail,
) -> DaemonResult<DaemonError> {
    if !version.at_least(26) {
        let message = strip_ansi(&reader.text("error message", MAX_STRING_LEN).await?);
        let status = reader.u64("error status").await?;
        return Ok(DaemonError::Daemon {
            log_tail: log_tail.into_lines(&message),
            message,
            status,
            traces: Vec::new(),
            closed_connection: false,
        });
    }
    let _kind = reader.text("error type", MAX_SHORT_STRING_LEN).await?;
    let level = reader.u64("error level").await?;
    let _name = reader.text("error name", MAX_SHORT_STRING_LEN).await?;
    let message = reader.text("error message", MAX_STRING_LEN).await?;
    expect_no_position(reader).await?;
    let count = reader.len("error trace count", MAX_SMALL_LIST_LEN).await?;
    let mut traces = Vec::with_capacity(count as usize);
    for _ in 0..count {
        expect_no_position(reader).await?;
        let hint = reader.text("error trace", MAX_STRING_LEN).await?;
        traces.push(strip_ansi(&hint));
    }
    let message = strip_ansi(&message);
    Ok(DaemonError::Daemon {
        log_tail: log_tail.into_lines(&message),
        message,
        status: level,
        traces,
        closed_connection: false,
    })
}

async fn expect_no_position<R: AsyncBufRead + Unpin>(
    reader: &mut WireReader<R>,
) -> DaemonResult<()> {
    match reader.u64("error position flag").await? {
        0 => Ok(()),
        value => Err(DaemonError::UnexpectedValue {
            what: "error position flag",
            value,
            expected: "0 (no position)",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::daemon::in_memory::ready;
    use crate::store::daemon::testing::transcript;

    const V34: ProtocolVersion = ProtocolVersion::new(1, 34);

    fn run(bytes: &[u8], version: ProtocolVersion) -> (DaemonResult<()>, Progress) {
        let (mut tracker, receiver) = ProgressTracker::new();
        let mut reader = WireReader::new(bytes);
        let result = ready(read_stderr(&mut reader, version, &mut tracker));
        let progress = receiver.borrow().clone();
        (result, progress)
    }

    #[test]
    fn activities_become_progress() {
        let mut t = transcript();
        t.u64(STDERR_NEXT).string("hello from the daemon\n");
        t.u64(STDERR_START_ACTIVITY)
            .u64(1)
            .u64(3)
            .u64(ACTIVITY_BUILDS);
        t.string("").u64(0).u64(0);
        t.u64(STDERR_START_ACTIVITY).u64(2).u64(3).u64(105);
        t.string("building '/nix/store/x.drv'")
            .u64(1)
            .u64(1)
            .string("/nix/store/x.drv");
        t.u64(0);
        t.u64(STDERR_RESULT).u64(1).u64(RESULT_PROGRESS).u64(4);
        for n in [1, 3, 1, 0] {
            t.u64(0).u64(n);
        }
        t.u64(STDERR_START_ACTIVITY)
            .u64(3)
            .u64(3)
            .u64(ACTIVITY_COPY_PATH);
        t.string("copying").u64(0).u64(0);
        t.u64(STDERR_RESULT).u64(3).u64(RESULT_PROGRESS).u64(2);
        t.u64(0).u64(500).u64(0).u64(2000);
        // Unknown activity and result types are ignored.
        t.u64(STDERR_START_ACTIVITY).u64(4).u64(3).u64(999);
        t.string("").u64(0).u64(0);
        t.u64(STDERR_RESULT)
            .u64(4)
            .u64(777)
            .u64(1)
            .u64(1)
            .string("?");
        t.u64(STDERR_RESULT)
            .u64(2)
            .u64(RESULT_BUILD_LOG_LINE)
            .u64(1);
        t.u64(1).string("compiling");
        t.u64(STDERR_STOP_ACTIVITY).u64(3);
        t.u64(STDERR_LAST);
        let (result, progress) = run(t.as_bytes(), V34);
        result.unwrap();
        assert_eq!(
            progress,
            Progress {
                paths_done: 1,
                paths_expected: 3,
                bytes_done: 500,
                bytes_expected: 2000,
                current_activity: Some("building '/nix/store/x.drv'".into()),
                running_activities: 3,
            }
        );
    }

    /// Found by the `daemon_stderr` fuzz target: finished activities whose progress adds up
    /// past `u64::MAX` overflowed (a panic in debug builds) instead of saturating.
    #[test]
    fn progress_of_finished_activities_saturates() {
        let mut t = transcript();
        for id in 1..=3 {
            t.u64(STDERR_START_ACTIVITY)
                .u64(id)
                .u64(3)
                .u64(ACTIVITY_COPY_PATHS);
            t.string("").u64(0).u64(0);
            t.u64(STDERR_RESULT).u64(id).u64(RESULT_PROGRESS).u64(2);
            t.u64(0).u64(u64::MAX).u64(0).u64(u64::MAX);
            t.u64(STDERR_START_ACTIVITY)
                .u64(id + 10)
                .u64(3)
                .u64(ACTIVITY_COPY_PATH);
            t.string("").u64(0).u64(0);
            t.u64(STDERR_RESULT)
                .u64(id + 10)
                .u64(RESULT_SET_EXPECTED)
                .u64(2);
            t.u64(0).u64(ACTIVITY_COPY_PATH).u64(0).u64(u64::MAX);
            t.u64(STDERR_RESULT)
                .u64(id + 10)
                .u64(RESULT_PROGRESS)
                .u64(2);
            t.u64(0).u64(u64::MAX).u64(0).u64(u64::MAX);
            t.u64(STDERR_STOP_ACTIVITY).u64(id);
            t.u64(STDERR_STOP_ACTIVITY).u64(id + 10);
        }
        t.u64(STDERR_LAST);
        let (result, progress) = run(t.as_bytes(), V34);
        result.unwrap();
        assert_eq!(progress.paths_done, u64::MAX);
        assert_eq!(progress.paths_expected, u64::MAX);
        assert_eq!(progress.bytes_done, u64::MAX);
        assert_eq!(progress.bytes_expected, u64::MAX);
    }

    #[test]
    fn errors_in_both_formats() {
        let mut t = transcript();
        t.u64(STDERR_ERROR).string("Error").u64(0).string("Error");
        t.string("\x1b[31;1merror:\x1b[0m path '\x1b[35;1m/nix/store/x\x1b[0m' is not valid");
        t.u64(0)
            .u64(1)
            .u64(0)
            .string("while doing \x1b[1mthings\x1b[0m");
        let (result, _) = run(t.as_bytes(), V34);
        match result.unwrap_err() {
            DaemonError::Daemon {
                message, traces, ..
            } => {
                assert_eq!(message, "error: path '/nix/store/x' is not valid");
                assert_eq!(traces, ["while doing things"]);
            }
            other => panic!("{other}"),
        }
        let mut t = transcript();
        t.u64(STDERR_ERROR).string("old style").u64(1);
        let (result, _) = run(t.as_bytes(), ProtocolVersion::new(1, 25));
        let err = result.unwrap_err();
        assert_eq!(err.daemon_message(), Some("old style"));
        assert!(!err.is_connection_lost());
    }

    #[test]
    fn legacy_data_requests_and_junk_are_refused() {
        let mut t = transcript();
        t.u64(STDERR_READ).u64(100);
        let err = run(t.as_bytes(), V34).0.unwrap_err();
        assert!(matches!(err, DaemonError::UnsupportedStderr("STDERR_READ")));
        let mut t = transcript();
        t.u64(12345);
        assert!(run(t.as_bytes(), V34).0.unwrap_err().is_connection_lost());
        let mut t = transcript();
        t.u64(STDERR_NEXT).u64(MAX_LOG_LINE_LEN + 1);
        let err = run(t.as_bytes(), V34).0.unwrap_err();
        assert!(err.to_string().contains("log line"), "{err}");
        let mut t = transcript();
        t.u64(STDERR_RESULT)
            .u64(1)
            .u64(RESULT_PROGRESS)
            .u64(MAX_FIELD_COUNT + 1);
        let err = run(t.as_bytes(), V34).0.unwrap_err();
        assert!(err.to_string().contains("field count"), "{err}");
    }

    #[test]
    fn log_tails_keep_the_last_problems_bounded_and_once() {
        let mut tail = LogTail::default();
        tail.offer("copying path '/nix/store/x' from 'http://cache'...\n");
        tail.offer("\x1b[31;1merror:\x1b[0m first\n");
        tail.offer("warning: second");
        tail.offer("error: first");
        assert_eq!(
            tail.clone().into_lines("final"),
            ["warning: second", "error: first"]
        );
        assert_eq!(tail.clone().into_lines("error: first"), ["warning: second"]);
        tail.offer("warning: error: unable to download 'u': refused; retrying in 256 ms");
        tail.offer("warning: error: unable to download 'u': refused; retrying in 525 ms");
        assert_eq!(
            tail.clone().into_lines("final"),
            [
                "warning: second",
                "error: first",
                "warning: error: unable to download 'u': refused; retrying in 525 ms"
            ]
        );
        for n in 0..20 {
            tail.offer(&format!("warning: number {n}"));
        }
        let lines = tail.into_lines("final");
        assert_eq!(lines.len(), LOG_TAIL_LINES);
        assert_eq!(lines[0], "warning: number 12");
        let mut tail = LogTail::default();
        tail.offer(&format!("error: {}", "é".repeat(1000)));
        let lines = tail.into_lines("");
        assert!(lines[0].len() <= LOG_TAIL_LINE_LEN, "{}", lines[0].len());
        assert!(lines[0].ends_with('…'));
        for quiet in [
            "building '/nix/store/x.drv'...",
            "querying info about missing paths",
        ] {
            assert!(!looks_like_a_problem(quiet), "{quiet}");
        }
        for loud in [
            "HTTP error 404 (curl error: HTTP returned error)",
            "cannot add path because it lacks a signature by a trusted key",
            "Couldn't connect to server",
        ] {
            assert!(looks_like_a_problem(loud), "{loud}");
        }
    }
}
