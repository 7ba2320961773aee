//! A process's stdio: containerd's fifos (or files) on one side, runc's pipes or a pty on
//! the other, and the copy tasks between them.

use std::{
    fs::File,
    io::{IoSliceMut, Read, Write},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::fs::OpenOptionsExt,
    },
    path::{Path, PathBuf},
    process::Stdio as CommandStdio,
    sync::Arc,
};

use async_trait::async_trait;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use runc::{Command, Pipe};
use tokio::{net::UnixListener, task::JoinHandle};
use tracing::{debug, warn};

use crate::error::{Result, ShimError};
use crate::runtime_stdio::RuntimeStdio;

/// The stdio containerd asked for: fifo (or `file://`) paths, empty when unused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stdio {
    /// Path of the stdin fifo, or empty.
    pub stdin: String,
    /// Path of the stdout fifo, or empty.
    pub stdout: String,
    /// Path of the stderr fifo, or empty.
    pub stderr: String,
    /// Whether the process gets a pty.
    pub terminal: bool,
}

impl Stdio {
    /// True when no stream is wanted at all.
    pub fn is_null(&self) -> bool {
        self.stdin.is_empty() && self.stdout.is_empty() && self.stderr.is_empty()
    }
}

/// Where an output stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// A fifo containerd reads.
    Fifo(PathBuf),
    /// A regular file the shim appends to (`file://` URI).
    File(PathBuf),
}

/// Parses a stdout/stderr destination as containerd's runc shim accepts it.
pub fn output_target(uri: &str) -> Result<OutputTarget> {
    match uri.split_once("://") {
        None => Ok(OutputTarget::Fifo(PathBuf::from(uri))),
        Some(("fifo", path)) => Ok(OutputTarget::Fifo(PathBuf::from(path))),
        Some(("file", path)) if path.starts_with('/') => {
            Ok(OutputTarget::File(PathBuf::from(path)))
        }
        Some((scheme, _)) => Err(ShimError::InvalidArgument(format!(
            "stdio uri {uri:?}: scheme {scheme:?} is not supported; expected a fifo path or file:///absolute/path"
        ))),
    }
}

/// One pipe per wanted stream; unwanted streams are `/dev/null` (never runc's own pipes, which
/// a detached container would otherwise inherit and keep open).
#[derive(Debug)]
pub struct PipeStdio {
    stdin: Option<Pipe>,
    stdout: Option<Pipe>,
    stderr: Option<Pipe>,
}

impl PipeStdio {
    fn new(stdio: &Stdio, uid: u32, gid: u32) -> std::io::Result<Self> {
        let pipe = |wanted: bool| -> std::io::Result<Option<Pipe>> {
            if !wanted {
                return Ok(None);
            }
            let pipe = Pipe::new()?;
            nix::unistd::fchown(
                &pipe.rd,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )?;
            Ok(Some(pipe))
        };
        Ok(PipeStdio {
            stdin: pipe(!stdio.stdin.is_empty())?,
            stdout: pipe(!stdio.stdout.is_empty())?,
            stderr: pipe(!stdio.stderr.is_empty())?,
        })
    }
}

#[async_trait]
impl runc::io::Io for PipeStdio {
    async fn set(&self, cmd: &mut Command) -> std::io::Result<()> {
        let write_end = |pipe: &Option<Pipe>| -> std::io::Result<CommandStdio> {
            match pipe {
                Some(p) => p
                    .try_clone_wr()
                    .map(CommandStdio::from)
                    .ok_or_else(|| std::io::Error::other("pipe write end already closed")),
                None => Ok(CommandStdio::null()),
            }
        };
        let stdin = match &self.stdin {
            Some(p) => CommandStdio::from(p.rd.try_clone()?),
            None => CommandStdio::null(),
        };
        cmd.stdin(stdin)
            .stdout(write_end(&self.stdout)?)
            .stderr(write_end(&self.stderr)?);
        Ok(())
    }

    async fn close_after_start(&self) {
        for pipe in [&self.stdout, &self.stderr].into_iter().flatten() {
            pipe.close_wr();
        }
    }
}

/// A unix socket runc connects to in order to hand over a pty master.
#[derive(Debug)]
pub struct ConsoleSocket {
    dir: tempfile::TempDir,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Listens on a fresh socket in a private temporary directory.
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("containix-pty")
            .tempdir()
            .map_err(ShimError::io("create the console socket directory"))?;
        let listener = UnixListener::bind(dir.path().join("pty.sock"))
            .map_err(ShimError::io("listen on the console socket"))?;
        Ok(ConsoleSocket { dir, listener })
    }

    /// The socket path given to runc's `--console-socket`.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("pty.sock")
    }

    /// Accepts runc's connection and receives the pty master.
    pub async fn receive_master(self) -> Result<File> {
        let (stream, _) = self
            .listener
            .accept()
            .await
            .map_err(ShimError::io("accept runc's console connection"))?;
        let stream = stream
            .into_std()
            .map_err(ShimError::io("take the console connection"))?;
        stream
            .set_nonblocking(false)
            .map_err(ShimError::io("take the console connection"))?;
        tokio::task::spawn_blocking(move || receive_fd(stream.as_raw_fd()))
            .await
            .map_err(|e| ShimError::Other(format!("console receiver panicked: {e}")))?
    }
}

fn receive_fd(socket: i32) -> Result<File> {
    let mut name = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([i32; 2]);
    let msg = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| ShimError::Other(format!("receive the pty master from runc: {e}")))?;
    let cmsgs = msg
        .cmsgs()
        .map_err(|e| ShimError::Other(format!("receive the pty master from runc: {e}")))?;
    for cmsg in cmsgs {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(&fd) = fds.first()
        {
            // SAFETY: SCM_RIGHTS just installed `fd` in this process; nothing else owns it.
            return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    Err(ShimError::Other(
        "runc closed the console socket without sending a pty master".into(),
    ))
}

/// Stdio set up before the runtime call, to be attached once the process exists.
#[derive(Debug)]
pub enum PreparedIo {
    /// No stdio.
    Null,
    /// Pipes to copy from/to containerd.
    Pipes(Arc<PipeStdio>),
    /// A pty that runc will send over the socket.
    Console(ConsoleSocket),
}

impl PreparedIo {
    /// Chooses and sets up the wiring for `stdio`.
    pub fn new(stdio: &Stdio, uid: u32, gid: u32) -> Result<Self> {
        if stdio.terminal {
            return Ok(PreparedIo::Console(ConsoleSocket::new()?));
        }
        if stdio.is_null() {
            return Ok(PreparedIo::Null);
        }
        for out in [&stdio.stdout, &stdio.stderr] {
            if !out.is_empty() {
                output_target(out)?;
            }
        }
        PipeStdio::new(stdio, uid, gid)
            .map(|p| PreparedIo::Pipes(Arc::new(p)))
            .map_err(ShimError::io("create stdio pipes"))
    }

    /// What to hand the runtime.
    pub fn runtime_stdio(&self) -> RuntimeStdio {
        match self {
            PreparedIo::Null => RuntimeStdio::Null,
            PreparedIo::Pipes(p) => RuntimeStdio::Pipes(p.clone()),
            PreparedIo::Console(socket) => RuntimeStdio::Console(socket.path()),
        }
    }

    /// Starts copying between the process and containerd's fifos.
    pub async fn attach(self, stdio: &Stdio) -> Result<ProcessIo> {
        let mut io = ProcessIo::default();
        match self {
            PreparedIo::Null => {}
            PreparedIo::Pipes(pipes) => {
                if let Some(pipe) = &pipes.stdin
                    && let Some(wr) = pipe.take_wr()
                {
                    io.stdin_keepalive = open_stdin(&stdio.stdin, File::from(wr), &mut io.copies)?;
                }
                for (pipe, uri) in [
                    (&pipes.stdout, &stdio.stdout),
                    (&pipes.stderr, &stdio.stderr),
                ] {
                    if let Some(pipe) = pipe {
                        let source =
                            File::from(pipe.rd.try_clone().map_err(ShimError::io("dup pipe"))?);
                        io.copies
                            .push(copy_output(source, output_target(uri)?, false));
                    }
                }
            }
            PreparedIo::Console(socket) => {
                let master = socket.receive_master().await?;
                if !stdio.stdin.is_empty() {
                    let to_pty = master
                        .try_clone()
                        .map_err(ShimError::io("dup pty master"))?;
                    io.stdin_keepalive = open_stdin(&stdio.stdin, to_pty, &mut io.copies)?;
                }
                if !stdio.stdout.is_empty() {
                    let from_pty = master
                        .try_clone()
                        .map_err(ShimError::io("dup pty master"))?;
                    io.copies
                        .push(copy_output(from_pty, output_target(&stdio.stdout)?, true));
                }
                io.console = Some(master);
            }
        }
        Ok(io)
    }
}

/// Opens the stdin fifo, copies it into `sink` and returns the shim's own write handle,
/// which keeps the copy alive until Task.CloseIO drops it (as containerd's runc shim does).
fn open_stdin(
    fifo: &str,
    mut sink: File,
    copies: &mut Vec<JoinHandle<()>>,
) -> Result<Option<File>> {
    if fifo.is_empty() {
        return Ok(None);
    }
    let mut source = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo)
        .map_err(ShimError::io(format!("open stdin fifo {fifo}")))?;
    let keepalive = std::fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .map_err(ShimError::io(format!("open stdin fifo {fifo} for writing")))?;
    set_blocking(&source).map_err(ShimError::io(format!("open stdin fifo {fifo}")))?;
    copies.push(tokio::task::spawn_blocking(move || {
        if let Err(e) = std::io::copy(&mut source, &mut sink) {
            debug!("stdin copy ended: {e}");
        }
    }));
    Ok(Some(keepalive))
}

fn set_blocking(file: &File) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(file, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(file, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
    Ok(())
}

/// Copies `source` to `target` until EOF (or EIO, which is how a pty reports its last close).
fn copy_output(mut source: File, target: OutputTarget, pty: bool) -> JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        let (mut sink, _reader) = match open_output(&target) {
            Ok(files) => files,
            Err(e) => {
                warn!("cannot open {target:?}: {e}");
                return;
            }
        };
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if pty && e.raw_os_error() == Some(libc::EIO) => break,
                Err(e) => {
                    warn!("stdio copy to {target:?} failed: {e}");
                    break;
                }
            };
            if let Err(e) = sink.write_all(&buf[..n]) {
                warn!("stdio copy to {target:?} failed: {e}");
                break;
            }
        }
    })
}

/// Opens an output destination. For a fifo, a read handle is opened first and kept for the
/// copy's lifetime, so that a restarting containerd does not make writes fail.
fn open_output(target: &OutputTarget) -> std::io::Result<(File, Option<File>)> {
    match target {
        OutputTarget::Fifo(path) => {
            let reader = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)?;
            let writer = std::fs::OpenOptions::new().write(true).open(path)?;
            Ok((writer, Some(reader)))
        }
        OutputTarget::File(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            Ok((file, None))
        }
    }
}

/// The live stdio of a process.
#[derive(Debug, Default)]
pub struct ProcessIo {
    /// The shim's own write handle on the stdin fifo, dropped by Task.CloseIO.
    stdin_keepalive: Option<File>,
    /// The pty master, for Task.ResizePty.
    console: Option<File>,
    copies: Vec<JoinHandle<()>>,
}

impl ProcessIo {
    /// Closes the shim's hold on stdin so the process sees EOF once containerd's side closes.
    pub fn close_stdin(&mut self) {
        self.stdin_keepalive = None;
    }

    /// Resizes the pty; an error when the process has none.
    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        let Some(console) = &self.console else {
            return Err(ShimError::FailedPrecondition(
                "the process has no terminal to resize".into(),
            ));
        };
        let size = libc::winsize {
            ws_row: u16::try_from(height).unwrap_or(u16::MAX),
            ws_col: u16::try_from(width).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a `winsize` from the pointer; the fd is the pty master we own.
        let rc = unsafe { libc::ioctl(console.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        if rc < 0 {
            return Err(ShimError::Io {
                context: "resize the pty".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Takes the copy tasks, to wait for the output to drain after the process exited.
    pub fn take_copies(&mut self) -> Vec<JoinHandle<()>> {
        self.stdin_keepalive = None;
        self.console = None;
        std::mem::take(&mut self.copies)
    }
}

/// Where runc should write a process's pid.
pub fn pid_file(bundle: &Path, exec_id: Option<&str>) -> PathBuf {
    match exec_id {
        None => bundle.join("init.pid"),
        Some(id) => bundle.join(format!("{id}.pid")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdio_uris() {
        assert_eq!(
            output_target("/run/x/stdout").unwrap(),
            OutputTarget::Fifo("/run/x/stdout".into())
        );
        assert_eq!(
            output_target("fifo:///a").unwrap(),
            OutputTarget::Fifo("/a".into())
        );
        assert_eq!(
            output_target("file:///var/log/x").unwrap(),
            OutputTarget::File("/var/log/x".into())
        );
        let err = output_target("binary:///usr/bin/logger")
            .unwrap_err()
            .to_string();
        assert!(err.contains("binary"), "{err}");
    }

    #[tokio::test]
    async fn pipes_copy_process_output_into_the_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stdout");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // containerd's side: a reader that is open before the shim writes.
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let stdio = Stdio {
            stdout: fifo.display().to_string(),
            ..Default::default()
        };
        let prepared = PreparedIo::new(&stdio, 0, 0).unwrap();
        let RuntimeStdio::Pipes(io) = prepared.runtime_stdio() else {
            panic!("expected pipes")
        };
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo hello"]);
        io.set(&mut cmd).await.unwrap();
        let mut child = cmd.spawn().unwrap();
        // The command holds a copy of the write end until it is dropped, as runc's does.
        drop(cmd);
        io.close_after_start().await;
        let mut live = prepared.attach(&stdio).await.unwrap();
        child.wait().await.unwrap();
        for copy in live.take_copies() {
            copy.await.unwrap();
        }
        set_blocking(&reader).unwrap();
        let mut out = String::new();
        reader.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello\n");
    }
}
