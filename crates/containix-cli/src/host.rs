//! Running a program on the node itself: directly from a shell on the node, or, from the
//! installer pod (host `/` mounted at `--host-root`, `hostPID`), inside the mount namespace of
//! the host's PID 1, so `systemctl` and `containerd` are the host's own.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// Where programs run: here, or in the host's mount namespace.
pub struct Host {
    /// The host's `/` as mounted in the pod, when containix runs in one: programs then run in
    /// PID 1's mount namespace.
    host_root: Option<PathBuf>,
}

impl Host {
    /// Programs run as children of this process, in its namespaces.
    pub fn local() -> Host {
        Host { host_root: None }
    }

    /// Programs run in PID 1's mount namespace, opened when the first one runs (a dry run, or
    /// an install that restarts nothing, runs none and needs no `hostPID`); `host_root` is
    /// named in the error when that namespace cannot be opened (the pod lacks `hostPID: true`
    /// or privilege).
    pub fn through_pid1(host_root: &Path) -> Host {
        Host {
            host_root: Some(host_root.to_owned()),
        }
    }

    /// PID 1's mount namespace, for a pod.
    fn mount_namespace(&self) -> Result<Option<File>> {
        let Some(host_root) = &self.host_root else {
            return Ok(None);
        };
        let path = "/proc/1/ns/mnt";
        let file = File::open(path).with_context(|| {
            format!(
                "--host-root {}: opening {path} to run commands on the host (the pod needs \
                 hostPID: true and privileged: true)",
                host_root.display()
            )
        })?;
        Ok(Some(file))
    }

    /// Runs `program` with `args` and collects its output.
    pub fn output(&self, program: &str, args: &[&str]) -> Result<Output> {
        let mut command = Command::new(program);
        command.args(args);
        let mount_namespace = self.mount_namespace()?;
        if let Some(namespace) = &mount_namespace {
            let fd = namespace.as_raw_fd();
            // SAFETY: runs in the forked child before exec; only async-signal-safe system calls
            // (setns, chdir) on a descriptor that stays open in the parent until the child execs.
            unsafe {
                command.pre_exec(move || {
                    let namespace = BorrowedFd::borrow_raw(fd);
                    nix::sched::setns(namespace, nix::sched::CloneFlags::CLONE_NEWNS)
                        .map_err(std::io::Error::from)?;
                    nix::unistd::chdir("/").map_err(std::io::Error::from)
                });
            }
        }
        command
            .output()
            .with_context(|| format!("running {program}"))
    }

    /// Runs `program` and fails, with what it printed, unless it exits 0.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<Output> {
        let output = self.output(program, args)?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            bail!(
                "`{program} {}` failed ({}): {}",
                args.join(" "),
                output.status,
                stderr.trim()
            );
        }
        Ok(output)
    }
}
