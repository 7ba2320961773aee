//! How the CLI prints an error: its message, then each cause in its chain that the message does
//! not already say. containix's errors put their cause in their message (pod events show only
//! the message), so printing the whole chain would say it twice.

/// The error's message followed by `: <cause>` for each cause not already in the text.
pub fn said_once(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading {path}: {source}")]
    struct Reading {
        path: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn causes_the_message_already_says_are_left_out() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let shown = io.to_string();
        let error = anyhow::Error::from(Reading {
            path: "/etc/x",
            source: io,
        });
        assert_eq!(said_once(&error), format!("reading /etc/x: {shown}"));
        let wrapped = Err::<(), _>(error).context("--policy").unwrap_err();
        assert_eq!(
            said_once(&wrapped),
            format!("--policy: reading /etc/x: {shown}")
        );
    }
}
