//! The running containerd behind a socket, found through `/proc`, so the doctor looks for the
//! shim where containerd will: on containerd's own `PATH`, then beside containerd's executable
//! (containerd falls back to its own directory). A shell's `PATH` can differ from a service's.
//!
//! The socket's inode comes from `/proc/net/unix`; the process is the `containerd` holding a file
//! descriptor on it. Parsing is pure and tested here; [`find`] is the small effectful part.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A running containerd and where it looks for shim binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdProcess {
    /// Its process id.
    pub pid: u32,
    /// Its executable.
    pub exe: PathBuf,
    /// Its `PATH`, if it has one.
    pub path_var: Option<OsString>,
}

impl ContainerdProcess {
    /// The directories containerd searches for a shim, in order: its `PATH`, then its
    /// executable's directory.
    pub fn shim_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .path_var
            .as_deref()
            .map(|path| std::env::split_paths(path).collect())
            .unwrap_or_default();
        if let Some(own) = self.exe.parent() {
            dirs.push(own.to_owned());
        }
        dirs
    }
}

/// Finds the `containerd` process listening on `socket`, or `None` when none is (stopped, in
/// another network namespace, or `/proc` unreadable).
pub fn find(socket: &Path) -> Option<ContainerdProcess> {
    let table = std::fs::read("/proc/net/unix").ok()?;
    let inodes = listening_inodes(&table, socket);
    if inodes.is_empty() {
        return None;
    }
    let links: Vec<Vec<u8>> = inodes
        .iter()
        .map(|inode| format!("socket:[{inode}]").into_bytes())
        .collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let proc_dir = entry.path();
        let is_containerd = std::fs::read(proc_dir.join("comm"))
            .is_ok_and(|comm| comm.strip_suffix(b"\n").unwrap_or(&comm) == b"containerd");
        if !is_containerd || !holds_any(&proc_dir, &links) {
            continue;
        }
        let exe = std::fs::read_link(proc_dir.join("exe")).ok()?;
        let environ = std::fs::read(proc_dir.join("environ")).unwrap_or_default();
        return Some(ContainerdProcess {
            pid,
            exe,
            path_var: env_var(&environ, "PATH"),
        });
    }
    None
}

/// Whether the process at `proc_dir` has a file descriptor whose link is one of `links`.
fn holds_any(proc_dir: &Path, links: &[Vec<u8>]) -> bool {
    let Ok(fds) = std::fs::read_dir(proc_dir.join("fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| links.iter().any(|l| target.as_os_str().as_bytes() == l))
    })
}

/// The inodes of the listening sockets bound at `socket`, read from `/proc/net/unix`'s table
/// (`Num RefCount Protocol Flags Type St Inode Path`; flag `00010000` marks a listener).
pub fn listening_inodes(table: &[u8], socket: &Path) -> Vec<u64> {
    const ACCEPTING: u32 = 0x0001_0000;
    let wanted = socket.as_os_str().as_bytes();
    table
        .split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&[u8]> = line
                .split(|&b| b == b' ')
                .filter(|field| !field.is_empty())
                .collect();
            let [_, _, _, flags, _, _, inode, path] = fields[..] else {
                return None;
            };
            let flags = u32::from_str_radix(std::str::from_utf8(flags).ok()?, 16).ok()?;
            (flags & ACCEPTING != 0 && path == wanted)
                .then(|| std::str::from_utf8(inode).ok()?.parse().ok())
                .flatten()
        })
        .collect()
}

/// The value of `name` in a NUL-separated environment block (`/proc/<pid>/environ`).
pub fn env_var(environ: &[u8], name: &str) -> Option<OsString> {
    environ
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(name.as_bytes())?.strip_prefix(b"="))
        .map(|value| OsStr::from_bytes(value).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[u8] = b"Num       RefCount Protocol Flags    Type St Inode Path
000000005a0614ee: 00000002 00000000 00010000 0001 01 20098 /nix/var/nix/daemon-socket/socket
00000000a633c9bb: 00000003 00000000 00000000 0001 03  1057
0000000011111111: 00000002 00000000 00010000 0001 01 31337 /run/containerd/containerd.sock
0000000022222222: 00000003 00000000 00000000 0001 03 31338 /run/containerd/containerd.sock
0000000033333333: 00000002 00000000 00010000 0001 01 40000 /run/containerd/containerd.sock.ttrpc
";

    #[test]
    fn only_the_listener_bound_at_the_exact_path_counts() {
        let inodes = listening_inodes(TABLE, Path::new("/run/containerd/containerd.sock"));
        assert_eq!(inodes, [31337]);
        assert!(listening_inodes(TABLE, Path::new("/run/containerd")).is_empty());
        assert!(listening_inodes(b"", Path::new("/run/containerd/containerd.sock")).is_empty());
        assert!(listening_inodes(b"header\ngarbage line\n", Path::new("line")).is_empty());
    }

    #[test]
    fn environment_values_are_found_by_exact_name() {
        let environ = b"LANG=C\0XPATH=/nope\0PATH=/usr/local/bin:/usr/bin\0EMPTY=\0";
        assert_eq!(
            env_var(environ, "PATH").as_deref(),
            Some(OsStr::new("/usr/local/bin:/usr/bin"))
        );
        assert_eq!(env_var(environ, "EMPTY").as_deref(), Some(OsStr::new("")));
        assert_eq!(env_var(environ, "HOME"), None);
    }

    #[test]
    fn shim_dirs_are_the_path_then_the_executable_directory() {
        let process = ContainerdProcess {
            pid: 1,
            exe: PathBuf::from("/usr/bin/containerd"),
            path_var: Some(OsString::from("/opt/bin:/usr/local/bin")),
        };
        assert_eq!(
            process.shim_dirs(),
            [
                Path::new("/opt/bin"),
                Path::new("/usr/local/bin"),
                Path::new("/usr/bin")
            ]
        );
        let no_path = ContainerdProcess {
            path_var: None,
            ..process
        };
        assert_eq!(no_path.shim_dirs(), [Path::new("/usr/bin")]);
    }

    #[test]
    fn a_socket_nobody_listens_on_has_no_process() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(find(&dir.path().join("none.sock")), None);
    }
}
