//! A newer Nix in a root filesystem of its own, for the version matrix: the tests talk to its
//! daemon as a node running that Nix would have them do.
//!
//! Nix 2.26 needs a newer glibc than Debian 12's, so `scripts/matrix-setup.sh` installs it into
//! a Debian trixie root (`debootstrap`). [`NIX_ROOT_ENV`] names that root. The testkit runs the
//! root's `nix-daemon` chrooted there (its store is `ROOT/nix/store`), in a mount namespace of
//! its own that has `/proc`, `/dev` and the host's temp dir mounted, so that the links the tests
//! register as GC roots under the temp dir resolve for the daemon as they do for the host.
//!
//! The tests themselves must see the root's store at `/nix`, where store paths say they are: a
//! pod's closure is bind-mounted from there, and the Nix CLI reads flakes from there.
//! `scripts/matrix.sh` runs them in a private mount namespace with `ROOT/nix` bind-mounted on
//! `/nix`; [`NixRoot::check_seen_at_nix`] refuses to go on otherwise, so no test ever mixes the
//! machine's store with the root's.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

use crate::error::{Error, Result};

/// Environment variable naming the root filesystem whose Nix the tests run against instead of
/// the machine's (unset or empty: the machine's).
pub const NIX_ROOT_ENV: &str = "CONTAINIX_TEST_NIX_ROOT";

/// Where, inside the root, the testkit keeps its daemon's config, log, pid and start lock.
const STATE_DIR_IN_ROOT: &str = "containix-testkit";

/// What a daemon in the root needs on top of the testkit's usual settings: the root has no
/// build users, so builds run as the daemon's user.
pub const ROOT_NIX_CONF_EXTRA: &str = "\
# The root has no nixbld users: builds run as root, without a sandbox, like everything here.
build-users-group =
";

/// A root filesystem holding a Nix installation (`usr/bin/nix-daemon`) and its store (`nix/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NixRoot {
    dir: PathBuf,
}

impl NixRoot {
    /// The root at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The root [`NIX_ROOT_ENV`] names, if any.
    pub fn under_test() -> Option<Self> {
        std::env::var_os(NIX_ROOT_ENV)
            .filter(|value| !value.is_empty())
            .map(Self::new)
    }

    /// The root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The daemon's socket as the host sees it, inside the root.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("nix/var/nix/daemon-socket/socket")
    }

    /// The testkit's directory for the root's daemon (`/containix-testkit` inside the root).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join(STATE_DIR_IN_ROOT)
    }

    /// Fails unless `/nix` is the root's `nix` directory (the same directory, bind-mounted) and
    /// the root has a `nix-daemon`.
    pub fn check_seen_at_nix(&self) -> Result<()> {
        let daemon = self.dir.join("usr/bin/nix-daemon");
        if !daemon.is_file() {
            return Err(Error::InvalidInput {
                field: NIX_ROOT_ENV,
                expected: "a root filesystem with usr/bin/nix-daemon (run scripts/matrix-setup.sh)",
                got: self.dir.display().to_string(),
            });
        }
        let identity = |path: &Path| {
            path.metadata()
                .map(|meta| (meta.dev(), meta.ino()))
                .map_err(|err| Error::io_at("inspecting", path, err))
        };
        let store = self.dir.join("nix");
        std::fs::create_dir_all(&store).map_err(|err| Error::io_at("creating", &store, err))?;
        if identity(&store)? != identity(Path::new("/nix"))? {
            return Err(Error::InvalidInput {
                field: NIX_ROOT_ENV,
                expected: "tests running with the root's nix directory mounted on /nix \
                           (run them through scripts/matrix.sh, which does that in a private \
                           mount namespace)",
                got: self.dir.display().to_string(),
            });
        }
        Ok(())
    }

    /// Starts the root's `nix-daemon` detached (own session, own mount namespace, chrooted in
    /// the root) with its config in [`NixRoot::state_dir`], logging to `log`.
    pub fn spawn_daemon(&self, log: &Path) -> Result<Child> {
        let log_file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|err| Error::io_at("opening", log, err))?;
        let log_err = log_file
            .try_clone()
            .map_err(|err| Error::io_at("duplicating", log, err))?;
        let temp = std::env::temp_dir()
            .canonicalize()
            .map_err(|err| Error::io("finding the temp dir", err))?;
        let mounts = RootMounts {
            proc: self.dir.join("proc"),
            dev: self.dir.join("dev"),
            temp_inside: self.dir.join(temp.strip_prefix("/").unwrap_or(&temp)),
            temp,
            root: self.dir.clone(),
        };
        std::fs::create_dir_all(&mounts.temp_inside)
            .map_err(|err| Error::io_at("creating", &mounts.temp_inside, err))?;
        let mut command = Command::new("/usr/bin/nix-daemon");
        command
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("NIX_CONF_DIR", Path::new("/").join(STATE_DIR_IN_ROOT))
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        // SAFETY: between fork and exec this only makes system calls (setsid, unshare, mount,
        // chroot, chdir) on paths prepared before the fork; nothing allocates or locks.
        unsafe {
            command.pre_exec(move || mounts.enter().map_err(std::io::Error::from));
        }
        command
            .spawn()
            .map_err(|err| Error::io(format!("starting {}'s nix-daemon", self.dir.display()), err))
    }
}

/// What the daemon's mount namespace gets, as paths computed before the fork.
struct RootMounts {
    root: PathBuf,
    proc: PathBuf,
    dev: PathBuf,
    temp: PathBuf,
    temp_inside: PathBuf,
}

impl RootMounts {
    /// Runs in the child: a new session and mount namespace (private, so nothing reaches the
    /// host), `/proc`, `/dev` (with `/dev/pts`, which builds need) and the host's temp dir at
    /// the same path, then chroot into the root.
    fn enter(&self) -> nix::Result<()> {
        nix::unistd::setsid()?;
        unshare(CloneFlags::CLONE_NEWNS)?;
        let none: Option<&str> = None;
        mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)?;
        mount(
            Some("proc"),
            &self.proc,
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            none,
        )?;
        mount(
            Some("/dev"),
            &self.dev,
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        )?;
        // Only the temp dir itself, not the containers' mounts below it.
        mount(
            Some(&self.temp),
            &self.temp_inside,
            none,
            MsFlags::MS_BIND,
            none,
        )?;
        nix::unistd::chroot(&self.root)?;
        nix::unistd::chdir("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_keeps_its_socket_and_the_testkit_state_inside() {
        let root = NixRoot::new("/var/cache/m/nix-2.26.3/root");
        assert_eq!(
            root.socket(),
            Path::new("/var/cache/m/nix-2.26.3/root/nix/var/nix/daemon-socket/socket")
        );
        assert_eq!(
            root.state_dir(),
            Path::new("/var/cache/m/nix-2.26.3/root/containix-testkit")
        );
    }

    #[test]
    fn a_root_without_nix_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let error = NixRoot::new(dir.path()).check_seen_at_nix().unwrap_err();
        let message = error.to_string();
        assert!(message.contains(NIX_ROOT_ENV), "{message}");
        assert!(message.contains("usr/bin/nix-daemon"), "{message}");
    }

    #[test]
    fn a_root_that_is_not_mounted_on_nix_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("usr/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("nix-daemon"), "").unwrap();
        let error = NixRoot::new(dir.path()).check_seen_at_nix().unwrap_err();
        assert!(error.to_string().contains("scripts/matrix.sh"), "{error}");
    }
}
