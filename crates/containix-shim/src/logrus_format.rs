//! The line format containerd and its Go shims log in (logrus' text format), so that the shim's
//! lines read like every other line of containerd's log:
//! `time="2024-05-01T12:00:00.123456Z" level=info msg="container prepared" paths=3 runtime=io.containerd.containix.v1`.
//!
//! A value is written bare when it holds only letters, digits and `-._/@^+`, else quoted with
//! Go's escapes, as logrus does. Records of the `log` crate (from the containerd-shim crate)
//! arrive through `tracing-log` and keep their own target and level.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as logrus text lines, each ending with `runtime=<runtime>`.
pub struct LogrusFormat {
    runtime: String,
}

impl LogrusFormat {
    /// Lines that name `runtime` (containerd's name for this shim).
    pub fn new(runtime: &str) -> Self {
        LogrusFormat {
            runtime: runtime.to_owned(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for LogrusFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        write!(
            writer,
            "time=\"{time}\" level={} msg={}",
            level_name(metadata.level()),
            value(&fields.message)
        )?;
        for (name, text) in &fields.pairs {
            write!(writer, " {name}={}", value(text))?;
        }
        writeln!(writer, " runtime={}", value(&self.runtime))
    }
}

/// logrus' name of a level.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// `text` bare if logrus would leave it bare, else quoted.
fn value(text: &str) -> String {
    let bare = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    if bare { text.to_owned() } else { quote(text) }
}

/// `text` in double quotes with Go's escapes (`strconv.Quote`), on one line.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An event's message and its other fields in the order they were recorded; the `log.*`
/// fields `tracing-log` adds are left out (they are in the normalized metadata).
#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl Fields {
    fn record(&mut self, field: &Field, text: String) {
        match field.name() {
            "message" => self.message = text,
            name if name.starts_with("log.") => {}
            name => self.pairs.push((name, text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

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

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// Runs `emit` under a subscriber with [`LogrusFormat`] and returns what it wrote.
    fn formatted(emit: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .event_format(LogrusFormat::new("io.containerd.containix.v1"))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        captured.text()
    }

    /// The line without its time, which changes.
    fn without_time(line: &str) -> &str {
        let rest = line.strip_prefix("time=\"").expect(line);
        &rest[rest.find("\" ").expect(line) + 2..]
    }

    #[test]
    fn lines_read_like_containerds() {
        let text = formatted(|| {
            tracing::info!(
                paths = 3,
                root = "/nix/store/abc-hello",
                "container prepared"
            );
            tracing::warn!(error = "no \"such\" file\nat all", "cannot unmount");
            tracing::debug!("");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            without_time(lines[0]),
            "level=info msg=\"container prepared\" paths=3 root=/nix/store/abc-hello \
             runtime=io.containerd.containix.v1"
        );
        assert_eq!(
            without_time(lines[1]),
            "level=warning msg=\"cannot unmount\" error=\"no \\\"such\\\" file\\nat all\" \
             runtime=io.containerd.containix.v1"
        );
        assert_eq!(
            without_time(lines[2]),
            "level=debug msg=\"\" runtime=io.containerd.containix.v1"
        );
        // RFC 3339 in UTC.
        let time = &lines[0]["time=\"".len()..lines[0].find("\" ").unwrap()];
        assert!(time.ends_with('Z') && time.contains('T'), "{time}");
    }

    #[test]
    fn log_records_keep_their_level_and_lose_the_bridge_fields() {
        use tracing_log::log;
        let text = formatted(|| {
            log::Log::log(
                &tracing_log::LogTracer::new(),
                &log::Record::builder()
                    .level(log::Level::Warn)
                    .target("containerd_shim::asynchronous")
                    .args(format_args!("Shim successfully started"))
                    .build(),
            );
        });
        assert_eq!(
            without_time(text.trim_end()),
            "level=warning msg=\"Shim successfully started\" runtime=io.containerd.containix.v1"
        );
    }

    #[test]
    fn values_are_quoted_like_logrus() {
        assert_eq!(value("a-b.c_d/e@f^g+h1"), "a-b.c_d/e@f^g+h1");
        assert_eq!(value(""), "\"\"");
        assert_eq!(value("a b"), "\"a b\"");
        assert_eq!(value("tab\there"), "\"tab\\there\"");
        assert_eq!(value("bell\u{7}"), "\"bell\\x07\"");
        assert_eq!(value("c1\u{85}"), "\"c1\\u0085\"");
        assert_eq!(value("naïve"), "\"naïve\"");
        assert_eq!(value("back\\slash"), "\"back\\\\slash\"");
    }
}
