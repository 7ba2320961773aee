//! A builder for `nix` and `nix-store` invocations that talk to the test node's daemon offline.
//!
//! Every command gets `NIX_REMOTE=daemon` and `--option` pairs that enable flakes and empty the
//! substituter list, so nothing ever waits on a network it cannot reach. Arguments are an argument
//! vector handed to the program directly; no shell is involved.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{Error, Result, tail};

/// The experimental features every command enables.
pub const EXPERIMENTAL_FEATURES: &str = "nix-command flakes";

/// How many lines of stderr an [`Error::CommandFailed`] keeps.
const STDERR_TAIL_LINES: usize = 30;

/// One `nix` or `nix-store` invocation, built up before it runs.
#[derive(Debug, Clone)]
pub struct NixCommand {
    program: &'static str,
    options: Vec<(String, String)>,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
}

impl NixCommand {
    /// A `nix` (new CLI) command.
    pub fn nix() -> Self {
        Self::new("nix")
    }

    /// A `nix-store` command.
    pub fn nix_store() -> Self {
        Self::new("nix-store")
    }

    fn new(program: &'static str) -> Self {
        Self {
            program,
            options: vec![
                ("experimental-features".into(), EXPERIMENTAL_FEATURES.into()),
                ("substituters".into(), String::new()),
            ],
            args: Vec::new(),
            stdin: None,
        }
    }

    /// Sets a Nix setting with `--option name value`, replacing an earlier value of `name`
    /// (including the default empty `substituters`).
    pub fn option(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        match self.options.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.options.push((name, value)),
        }
        self
    }

    /// Sets every `(name, value)` setting, as [`NixCommand::option`] does.
    pub fn options<N: Into<String>, V: Into<String>>(
        self,
        options: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        options
            .into_iter()
            .fold(self, |command, (name, value)| command.option(name, value))
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends arguments.
    pub fn args<A: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = A>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Feeds `bytes` to the command's standard input.
    pub fn stdin(mut self, bytes: Vec<u8>) -> Self {
        self.stdin = Some(bytes);
        self
    }

    /// The program this runs (`nix` or `nix-store`).
    pub fn program(&self) -> &'static str {
        self.program
    }

    /// The full argument vector after the program name: options first, then the arguments.
    pub fn argv(&self) -> Vec<OsString> {
        let mut argv = Vec::with_capacity(self.options.len() * 3 + self.args.len());
        for (name, value) in &self.options {
            argv.extend(["--option".into(), name.into(), value.into()]);
        }
        argv.extend(self.args.iter().cloned());
        argv
    }

    /// Runs the command and returns its stdout as text.
    pub fn run(&self) -> Result<String> {
        let stdout = self.run_bytes()?;
        String::from_utf8(stdout).map_err(|err| Error::UnexpectedOutput {
            program: self.program.into(),
            detail: format!("stdout is not UTF-8: {err}"),
        })
    }

    /// Runs the command and returns the non-empty lines of its stdout.
    pub fn run_lines(&self) -> Result<Vec<String>> {
        Ok(self
            .run()?
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Runs the command and returns its raw stdout; fails with [`Error::CommandFailed`]
    /// (carrying the tail of stderr) when it exits unsuccessfully.
    pub fn run_bytes(&self) -> Result<Vec<u8>> {
        let argv = self.argv();
        let mut child = Command::new(self.program)
            .args(&argv)
            .env("NIX_REMOTE", "daemon")
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| Error::io(format!("starting {}", self.program), err))?;
        // Write stdin from another thread so a command that fills its stdout pipe before reading
        // all of its input cannot deadlock against us.
        let writer = match (self.stdin.clone(), child.stdin.take()) {
            (Some(bytes), Some(mut pipe)) => {
                Some(std::thread::spawn(move || pipe.write_all(&bytes)))
            }
            _ => None,
        };
        let output = child
            .wait_with_output()
            .map_err(|err| Error::io(format!("waiting for {}", self.program), err))?;
        let stdin_result = writer.map(|w| w.join().expect("stdin writer thread panicked"));
        if !output.status.success() {
            return Err(Error::CommandFailed {
                program: self.program.into(),
                args: argv
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
                status: output.status.to_string(),
                stderr_tail: tail(&String::from_utf8_lossy(&output.stderr), STDERR_TAIL_LINES),
            });
        }
        if let Some(Err(err)) = stdin_result {
            return Err(Error::io(format!("writing stdin of {}", self.program), err));
        }
        Ok(output.stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_puts_offline_flake_options_first_and_later_options_replace_defaults() {
        let argv = NixCommand::nix()
            .option("substituters", "http://127.0.0.1:1")
            .option("require-sigs", "true")
            .args(["build", "--no-link"])
            .argv();
        let argv: Vec<_> = argv.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            argv,
            [
                "--option",
                "experimental-features",
                "nix-command flakes",
                "--option",
                "substituters",
                "http://127.0.0.1:1",
                "--option",
                "require-sigs",
                "true",
                "build",
                "--no-link",
            ]
        );
    }
}
