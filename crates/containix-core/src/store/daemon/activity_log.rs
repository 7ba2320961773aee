//! How the daemon's stderr stream becomes `tracing` events (target [`TARGET`]): its log lines,
//! activities, build output and errors, each carrying the derivation (`drv` field) or store path
//! (`path` field) it concerns, at a level that follows Nix's own.
//!
//! A build's output lines name only their activity, so [`ActivityLog`] remembers what each
//! running activity is about. Deciding what to log is pure (every method returns a [`NixEvent`]);
//! [`NixEvent::emit`] is the one effect.

use std::collections::BTreeMap;

use tracing::Level;

use super::activity::{
    ACTIVITY_BUILD, ACTIVITY_COPY_PATH, ACTIVITY_POST_BUILD_HOOK, ACTIVITY_QUERY_PATH_INFO,
    ACTIVITY_SUBSTITUTE, Field, RESULT_BUILD_LOG_LINE, RESULT_SET_PHASE,
};
use super::ansi::strip_ansi;

/// The `tracing` target of every event from the daemon's stderr stream.
pub const TARGET: &str = "containix::nix";

/// Most activities remembered at once; output of others is logged without a subject.
const MAX_REMEMBERED: usize = 10_000;

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A derivation being built: the `drv` field.
    Drv(String),
    /// A store path being substituted, copied or looked up: the `path` field.
    Path(String),
}

/// One event to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NixEvent {
    /// Its level.
    pub level: Level,
    /// The derivation or store path it concerns, if known.
    pub subject: Option<Subject>,
    /// The text, without colours or trailing whitespace.
    pub message: String,
}

impl NixEvent {
    fn new(level: Level, subject: Option<Subject>, text: &str) -> Self {
        Self {
            level,
            subject,
            message: strip_ansi(text).trim_end().to_owned(),
        }
    }

    /// Emits the event with target [`TARGET`].
    pub fn emit(&self) {
        macro_rules! at_level {
            ($($field:tt)*) => {
                match self.level {
                    Level::ERROR => tracing::error!(target: TARGET, $($field)*),
                    Level::WARN => tracing::warn!(target: TARGET, $($field)*),
                    Level::INFO => tracing::info!(target: TARGET, $($field)*),
                    Level::DEBUG => tracing::debug!(target: TARGET, $($field)*),
                    Level::TRACE => tracing::trace!(target: TARGET, $($field)*),
                }
            };
        }
        let message = &self.message;
        match &self.subject {
            Some(Subject::Drv(drv)) => at_level!(drv = %drv, "{message}"),
            Some(Subject::Path(path)) => at_level!(path = %path, "{message}"),
            None => at_level!("{message}"),
        }
    }
}

/// The `tracing` level of a Nix verbosity (0 = error ... 7 = vomit).
pub fn level_of_verbosity(verbosity: u64) -> Level {
    match verbosity {
        0 => Level::ERROR,
        1 => Level::WARN,
        2 | 3 => Level::INFO,
        4 | 5 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// What the running activities of one daemon operation are about.
#[derive(Debug, Default)]
pub struct ActivityLog {
    subjects: BTreeMap<u64, Subject>,
}

impl ActivityLog {
    /// A plain log line (`STDERR_NEXT`). The daemon sends no level with it, but Nix starts
    /// warnings and errors with `warning:` and `error:`.
    pub fn line(&self, text: &str) -> NixEvent {
        let plain = strip_ansi(text);
        let level = if plain.starts_with("error:") {
            Level::ERROR
        } else if plain.starts_with("warning:") {
            Level::WARN
        } else {
            Level::INFO
        };
        NixEvent::new(level, None, &plain)
    }

    /// Activity `id` starts; it is about the path its fields name, else about what its parent
    /// is about. An activity without text (a group such as "building N paths") logs at trace.
    pub fn started(
        &mut self,
        id: u64,
        verbosity: u64,
        kind: u64,
        text: &str,
        fields: &[Field],
        parent: u64,
    ) -> NixEvent {
        let subject = subject_of(kind, fields).or_else(|| self.subjects.get(&parent).cloned());
        if let Some(subject) = &subject
            && self.subjects.len() < MAX_REMEMBERED
        {
            self.subjects.insert(id, subject.clone());
        }
        let level = if text.is_empty() {
            Level::TRACE
        } else {
            level_of_verbosity(verbosity)
        };
        NixEvent::new(level, subject, text)
    }

    /// Activity `id` stopped.
    pub fn stopped(&mut self, id: u64) {
        self.subjects.remove(&id);
    }

    /// Activity `id` reports a result: build output (info) and build phases (debug) are
    /// events; progress counts are not (they go to [`Progress`](super::stderr::Progress)).
    pub fn result(&self, id: u64, kind: u64, fields: &[Field]) -> Option<NixEvent> {
        let level = match kind {
            RESULT_BUILD_LOG_LINE => Level::INFO,
            RESULT_SET_PHASE => Level::DEBUG,
            _ => return None,
        };
        let Some(Field::String(text)) = fields.first() else {
            return None;
        };
        let subject = self.subjects.get(&id).cloned();
        Some(match kind {
            RESULT_SET_PHASE => NixEvent::new(level, subject, &format!("build phase {text}")),
            _ => NixEvent::new(level, subject, text),
        })
    }

    /// The operation failed with `message`. Logged at debug: the error itself goes to the
    /// caller, who reports it.
    pub fn failed(&self, message: &str) -> NixEvent {
        NixEvent::new(
            Level::DEBUG,
            None,
            &format!("the daemon reported an error: {message}"),
        )
    }
}

/// The derivation or path an activity of type `kind` names in its fields.
fn subject_of(kind: u64, fields: &[Field]) -> Option<Subject> {
    let Some(Field::String(first)) = fields.first() else {
        return None;
    };
    if first.is_empty() {
        return None;
    }
    match kind {
        ACTIVITY_BUILD | ACTIVITY_POST_BUILD_HOOK => Some(Subject::Drv(first.clone())),
        ACTIVITY_COPY_PATH | ACTIVITY_SUBSTITUTE | ACTIVITY_QUERY_PATH_INFO => {
            Some(Subject::Path(first.clone()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    const DRV: &str = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app.drv";
    const PATH: &str = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib";

    fn strings(values: &[&str]) -> Vec<Field> {
        values.iter().map(|v| Field::String((*v).into())).collect()
    }

    #[test]
    fn build_output_names_its_derivation_until_the_build_stops() {
        let mut log = ActivityLog::default();
        let group = log.started(1, 3, 104, "", &[], 0);
        assert_eq!((group.level, group.subject), (Level::TRACE, None));
        let mut fields = strings(&[DRV, ""]);
        fields.extend([Field::Int(1), Field::Int(1)]);
        let start = log.started(
            2,
            3,
            ACTIVITY_BUILD,
            "building '\x1b[1mapp\x1b[0m'",
            &fields,
            1,
        );
        assert_eq!(
            start,
            NixEvent {
                level: Level::INFO,
                subject: Some(Subject::Drv(DRV.into())),
                message: "building 'app'".into(),
            }
        );
        let line = log
            .result(2, RESULT_BUILD_LOG_LINE, &strings(&["compiling  \n"]))
            .unwrap();
        assert_eq!(line.level, Level::INFO);
        assert_eq!(line.subject, Some(Subject::Drv(DRV.into())));
        assert_eq!(line.message, "compiling");
        let phase = log
            .result(2, RESULT_SET_PHASE, &strings(&["buildPhase"]))
            .unwrap();
        assert_eq!(
            (phase.level, phase.message.as_str()),
            (Level::DEBUG, "build phase buildPhase")
        );
        assert_eq!(
            log.result(2, 105, &[Field::Int(1), Field::Int(2)]),
            None,
            "progress counts are not events"
        );
        log.stopped(2);
        let orphan = log
            .result(2, RESULT_BUILD_LOG_LINE, &strings(&["late"]))
            .unwrap();
        assert_eq!(orphan.subject, None);
    }

    #[test]
    fn substitutions_name_their_path_and_children_inherit_it() {
        let mut log = ActivityLog::default();
        let start = log.started(
            7,
            3,
            ACTIVITY_SUBSTITUTE,
            "copying path",
            &strings(&[PATH, "https://cache"]),
            0,
        );
        assert_eq!(start.subject, Some(Subject::Path(PATH.into())));
        let download = log.started(8, 4, 101, "downloading", &strings(&["https://x"]), 7);
        assert_eq!(download.subject, Some(Subject::Path(PATH.into())));
        assert_eq!(download.level, Level::DEBUG);
        let unrelated = log.started(9, 3, 101, "downloading", &strings(&["https://y"]), 0);
        assert_eq!(unrelated.subject, None);
    }

    #[test]
    fn levels_follow_nix() {
        let levels: Vec<Level> = (0..=9).map(level_of_verbosity).collect();
        use Level as L;
        assert_eq!(
            levels,
            [
                L::ERROR,
                L::WARN,
                L::INFO,
                L::INFO,
                L::DEBUG,
                L::DEBUG,
                L::TRACE,
                L::TRACE,
                L::TRACE,
                L::TRACE
            ]
        );
        let log = ActivityLog::default();
        assert_eq!(log.line("warning: dirty").level, Level::WARN);
        assert_eq!(log.line("\x1b[31;1merror:\x1b[0m boom").level, Level::ERROR);
        assert_eq!(log.line("these paths will be fetched").level, Level::INFO);
        assert_eq!(log.failed("boom").level, Level::DEBUG);
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn events_carry_target_level_and_subject_field() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for (level, subject) in [
                (Level::INFO, Some(Subject::Drv(DRV.into()))),
                (Level::WARN, Some(Subject::Path(PATH.into()))),
                (Level::TRACE, None),
            ] {
                NixEvent {
                    level,
                    subject,
                    message: format!("{level} event"),
                }
                .emit();
            }
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                format!(" INFO containix::nix: INFO event drv={DRV}"),
                format!(" WARN containix::nix: WARN event path={PATH}"),
                "TRACE containix::nix: TRACE event".to_owned(),
            ]
        );
    }
}
