//! A nix-daemon of a test's own, on the system store, that the test may kill and restart.
//!
//! The test node's shared daemon ([`crate::nix_daemon`]) serves every test and helper on the
//! machine, so no test may kill it or change its `nix.conf`. A [`PrivateNixDaemon`] serves the
//! same store on a socket of its own (`NIX_DAEMON_SOCKET_PATH`), reads a `nix.conf` of its own
//! (the testkit's settings plus the test's, e.g. a binary cache and `require-sigs`), and runs in
//! a session of its own: [`PrivateNixDaemon::kill`] ends the listener and every connection's
//! worker (each in a session of its own) at once, as a service manager stopping the daemon's
//! unit does, and
//! [`PrivateNixDaemon::restart`] starts it again on the same socket. A node policy points
//! containix at it with `daemon-socket`.

use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::error::{Error, Result, tail};
use crate::nix_daemon::{NIX_CONF, is_answering};
use crate::packages;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A nix-daemon on the system store with its own socket, config and session; killed on drop.
#[derive(Debug)]
pub struct PrivateNixDaemon {
    dir: TempDir,
    child: Option<Child>,
}

impl PrivateNixDaemon {
    /// Starts a daemon whose `nix.conf` is the testkit's ([`NIX_CONF`]) followed by
    /// `extra_conf`, and waits until it answers.
    pub fn start(extra_conf: &str) -> Result<PrivateNixDaemon> {
        packages::require_nix_packages()?;
        let dir = tempfile::Builder::new()
            .prefix("containix-private-daemon-")
            .tempdir()
            .map_err(|err| Error::io("creating a temporary directory", err))?;
        let conf = dir.path().join("nix.conf");
        fs::write(&conf, format!("{NIX_CONF}{extra_conf}\n"))
            .map_err(|err| Error::io_at("writing", &conf, err))?;
        let mut daemon = PrivateNixDaemon { dir, child: None };
        daemon.spawn()?;
        Ok(daemon)
    }

    /// The socket it listens on (for the policy's `daemon-socket`).
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    /// Its log (stdout and stderr of every run).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    /// The listener's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The processes serving connections now (the listener forks one per client, in a
    /// session of its own), with whatever they started.
    pub fn connection_workers(&self) -> Vec<i32> {
        let Some(pid) = self.pid() else {
            return Vec::new();
        };
        descendants(pid as i32)
    }

    /// Kills the listener and every connection's worker (with what they started) with
    /// SIGKILL, mid-operation, and waits until they are gone. The socket file stays, as after a
    /// crash.
    pub fn kill(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let listener = child.id() as i32;
        // Workers first: once the listener is gone they no longer have it as their parent.
        let mut doomed = descendants(listener);
        for &pid in &doomed {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = kill(Pid::from_raw(listener), Signal::SIGKILL);
        let _ = child.wait();
        let started = Instant::now();
        while !doomed.is_empty() {
            doomed.retain(|&pid| is_alive(pid));
            if started.elapsed() > START_TIMEOUT {
                return Err(Error::Timeout {
                    what: format!("the private nix-daemon's workers {doomed:?} to end"),
                    waited: started.elapsed(),
                    detail: String::new(),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Ok(())
    }

    /// Starts the daemon again on the same socket and config (after [`kill`](Self::kill)).
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.spawn()
    }

    fn spawn(&mut self) -> Result<()> {
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|err| Error::io_at("opening", &log_path, err))?;
        let log_err = log
            .try_clone()
            .map_err(|err| Error::io_at("duplicating", &log_path, err))?;
        let socket = self.socket_path();
        let mut command = Command::new("nix-daemon");
        command
            .current_dir("/")
            .env("NIX_CONF_DIR", self.dir.path())
            .env("NIX_DAEMON_SOCKET_PATH", &socket)
            .env_remove("NIX_REMOTE")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(Into::into));
        }
        let mut child = command
            .spawn()
            .map_err(|err| Error::io("starting a private nix-daemon", err))?;
        let started = Instant::now();
        while !is_answering(&socket) {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::CommandFailed {
                    program: "nix-daemon".into(),
                    args: Vec::new(),
                    status: status.to_string(),
                    stderr_tail: log_tail(&log_path),
                });
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Timeout {
                    what: format!("a private nix-daemon to answer on {}", socket.display()),
                    waited: started.elapsed(),
                    detail: log_tail(&log_path),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for PrivateNixDaemon {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Live descendants of `ancestor` (zombies excluded).
fn descendants(ancestor: i32) -> Vec<i32> {
    let processes = processes();
    let mut found = vec![ancestor];
    let mut grew = true;
    while grew {
        grew = false;
        for &(pid, ppid) in &processes {
            if found.contains(&ppid) && !found.contains(&pid) {
                found.push(pid);
                grew = true;
            }
        }
    }
    found.retain(|&pid| pid != ancestor);
    found
}

fn is_alive(pid: i32) -> bool {
    processes().iter().any(|&(live, _)| live == pid)
}

/// Every live (non-zombie) process with its parent.
fn processes() -> Vec<(i32, i32)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
            let state = fields.next()?;
            let ppid: i32 = fields.next()?.parse().ok()?;
            (state != "Z" && state != "X").then_some((pid, ppid))
        })
        .collect()
}

fn log_tail(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| tail(&String::from_utf8_lossy(&bytes), 20))
        .unwrap_or_default()
}
