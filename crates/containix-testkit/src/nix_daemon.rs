//! The test node's nix-daemon: reused when one already answers, started detached otherwise.
//!
//! A daemon this module starts reads its configuration from [`STATE_DIR`] (through `NIX_CONF_DIR`),
//! so the machine's `/etc/nix/nix.conf` is never written. It keeps running after the test process
//! exits, so later tests and benchmarks reuse it; [`NixDaemon::stop_testkit_daemon`] stops it.
//! Clients built with [`crate::nix_cli::NixCommand`] pass the settings that matter (flakes, no
//! substituters) on every command, so a reused daemon started with other settings also works.
//!
//! When the version matrix names another Nix ([`crate::nix_root::NIX_ROOT_ENV`]), the daemon is
//! that root's, started chrooted there ([`NixRoot::spawn_daemon`]) and reached at the same
//! [`SOCKET_PATH`], since the tests then see the root's `nix` directory at `/nix`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result, tail};
use crate::nix_root::{NixRoot, ROOT_NIX_CONF_EXTRA};
use crate::packages;

/// Where nix-daemon listens (the Nix default, which clients with `NIX_REMOTE=daemon` use).
pub const SOCKET_PATH: &str = "/nix/var/nix/daemon-socket/socket";

/// The testkit's directory for the daemon it starts: `nix.conf`, `daemon.log`, `daemon.pid`
/// and the lock that keeps concurrent tests from starting two daemons.
pub const STATE_DIR: &str = "/run/containix-testkit/nix-daemon";

/// The configuration of a daemon the testkit starts.
pub const NIX_CONF: &str = "\
# Written by containix-testkit (crates/containix-testkit/src/nix_daemon.rs) for the nix-daemon it
# starts with NIX_CONF_DIR pointing here; /etc/nix/nix.conf is left alone.
# An offline test node: no substituters (tests name their local cache per command).
substituters =
experimental-features = nix-command flakes
# Builders are a static busybox in the store; Debian's Nix has no working build sandbox.
sandbox = false
trusted-users = root
# Tests serve short-lived local caches on reused loopback ports: never trust remembered lookups.
narinfo-cache-negative-ttl = 0
narinfo-cache-positive-ttl = 0
";

/// How long a freshly started daemon may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Worker protocol magic numbers (client hello, daemon reply).
const WORKER_MAGIC_1: u64 = 0x6e69_7863;
const WORKER_MAGIC_2: u64 = 0x6478_696f;

/// A nix-daemon answering on [`SOCKET_PATH`].
#[derive(Debug)]
pub struct NixDaemon {
    socket: PathBuf,
    started_pid: Option<u32>,
}

impl NixDaemon {
    /// Reuses the daemon answering on [`SOCKET_PATH`], or starts one (detached, in its own
    /// session, logging to `daemon.log` in [`NixDaemon::state_dir`]) and waits until it
    /// answers. Under the version matrix's Nix root, that root's daemon (see the module docs).
    ///
    /// Safe to call from many threads and processes at once: a file lock makes one of them start
    /// the daemon and the others reuse it.
    pub fn start_or_reuse() -> Result<NixDaemon> {
        packages::require_nix_packages()?;
        let root = NixRoot::under_test();
        if let Some(root) = &root {
            root.check_seen_at_nix()?;
        }
        let socket = PathBuf::from(SOCKET_PATH);
        if is_answering(&socket) {
            return Ok(NixDaemon {
                socket,
                started_pid: None,
            });
        }
        let state = &Self::state_dir();
        fs::create_dir_all(state).map_err(|err| Error::io_at("creating", state, err))?;
        let _lock = lock(&state.join("start.lock"))?;
        // Another thread or process may have started it while we waited for the lock.
        if is_answering(&socket) {
            return Ok(NixDaemon {
                socket,
                started_pid: None,
            });
        }
        let log_path = state.join("daemon.log");
        let mut child = match &root {
            None => {
                write_if_changed(&state.join("nix.conf"), NIX_CONF)?;
                spawn_detached(state, &log_path)?
            }
            Some(root) => {
                let conf = format!("{NIX_CONF}{ROOT_NIX_CONF_EXTRA}");
                write_if_changed(&state.join("nix.conf"), &conf)?;
                root.spawn_daemon(&log_path)?
            }
        };
        wait_until_answering(&socket, &mut child, &log_path)?;
        let pid = child.id();
        let pid_path = state.join("daemon.pid");
        fs::write(&pid_path, format!("{pid}\n"))
            .map_err(|err| Error::io_at("writing", &pid_path, err))?;
        Ok(NixDaemon {
            socket,
            started_pid: Some(pid),
        })
    }

    /// The daemon's socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The pid of the daemon if this call started it, `None` if an answering daemon was reused.
    pub fn started_pid(&self) -> Option<u32> {
        self.started_pid
    }

    /// The testkit's directory for the daemon it starts: [`STATE_DIR`], or under the version
    /// matrix's Nix root, [`NixRoot::state_dir`].
    pub fn state_dir() -> PathBuf {
        match NixRoot::under_test() {
            Some(root) => root.state_dir(),
            None => PathBuf::from(STATE_DIR),
        }
    }

    /// The log of a daemon the testkit started.
    pub fn log_path() -> PathBuf {
        Self::state_dir().join("daemon.log")
    }

    /// Stops the daemon the testkit started last (recorded in `daemon.pid` in
    /// [`NixDaemon::state_dir`]), if it is still running; returns its pid. A daemon the testkit
    /// did not start is left alone.
    pub fn stop_testkit_daemon() -> Result<Option<u32>> {
        let pid_path = Self::state_dir().join("daemon.pid");
        let pid = match fs::read_to_string(&pid_path) {
            Ok(text) => text
                .trim()
                .parse::<i32>()
                .map_err(|_| Error::InvalidInput {
                    field: "daemon.pid",
                    expected: "a process id",
                    got: text.clone(),
                })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(Error::io_at("reading", &pid_path, err)),
        };
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let result = if comm.trim() == "nix-daemon" {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGTERM)
                .map_err(|errno| Error::io(format!("stopping nix-daemon {pid}"), errno.into()))?;
            Some(pid as u32)
        } else {
            None
        };
        fs::remove_file(&pid_path).map_err(|err| Error::io_at("removing", &pid_path, err))?;
        Ok(result)
    }
}

/// Whether a daemon answers the worker protocol handshake on `socket`.
pub fn is_answering(socket: &Path) -> bool {
    handshake(socket).is_ok()
}

/// Sends the client magic and reads the daemon's magic and protocol version.
fn handshake(socket: &Path) -> std::io::Result<u64> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(&WORKER_MAGIC_1.to_le_bytes())?;
    let mut reply = [0u8; 16];
    stream.read_exact(&mut reply)?;
    let magic = u64::from_le_bytes(reply[..8].try_into().expect("8 bytes"));
    if magic != WORKER_MAGIC_2 {
        return Err(std::io::Error::other(format!(
            "not a nix-daemon: magic {magic:#x}"
        )));
    }
    Ok(u64::from_le_bytes(reply[8..].try_into().expect("8 bytes")))
}

fn lock(path: &Path) -> Result<Flock<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|err| Error::io_at("opening", path, err))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| Error::io_at("locking", path, errno.into()))
}

/// Writes `content` to `path` unless it already holds exactly that (atomically, by rename).
fn write_if_changed(path: &Path, content: &str) -> Result<()> {
    if fs::read_to_string(path).is_ok_and(|current| current == content) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, content).map_err(|err| Error::io_at("writing", &tmp, err))?;
    fs::rename(&tmp, path).map_err(|err| Error::io_at("renaming to", path, err))
}

fn spawn_detached(conf_dir: &Path, log_path: &Path) -> Result<Child> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(|err| Error::io_at("opening", log_path, err))?;
    let log_err = log
        .try_clone()
        .map_err(|err| Error::io_at("duplicating", log_path, err))?;
    let mut command = Command::new("nix-daemon");
    command
        .current_dir("/")
        .env("NIX_CONF_DIR", conf_dir)
        // A daemon told to use a daemon would talk to itself.
        .env_remove("NIX_REMOTE")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(Into::into));
    }
    command
        .spawn()
        .map_err(|err| Error::io("starting nix-daemon", err))
}

fn wait_until_answering(socket: &Path, child: &mut Child, log_path: &Path) -> Result<()> {
    let started = Instant::now();
    loop {
        if is_answering(socket) {
            return Ok(());
        }
        if let Some(status) = child
            .try_wait()
            .map_err(|err| Error::io("waiting for nix-daemon", err))?
        {
            return Err(Error::CommandFailed {
                program: "nix-daemon".into(),
                args: Vec::new(),
                status: status.to_string(),
                stderr_tail: log_tail(log_path),
            });
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Timeout {
                what: format!("nix-daemon to answer on {}", socket.display()),
                waited: started.elapsed(),
                detail: format!("{} ends with:\n{}", log_path.display(), log_tail(log_path)),
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn log_tail(log_path: &Path) -> String {
    fs::read(log_path)
        .map(|bytes| tail(&String::from_utf8_lossy(&bytes), 20))
        .unwrap_or_else(|err| format!("(cannot read {}: {err})", log_path.display()))
}
