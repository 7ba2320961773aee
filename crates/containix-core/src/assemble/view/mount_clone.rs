//! A private, detached clone of the mount that holds a directory, for making link farms where
//! `/nix/store` is a read-only bind mount over itself (NixOS): `link()` refuses to cross from
//! that bind to the view directory (`EXDEV`), but inside one clone of the underlying mount (which
//! leaves submounts such as the bind out) both are the same mount, and the store directory there
//! is the filesystem's own. Nothing is attached to the host's mount tree: the clone is reached
//! through `/proc/self/fd/<fd>` and goes away when the file descriptor is closed.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::libc;

/// `open_tree(2)` flags: a detached copy of the mount, not the mount itself.
const OPEN_TREE_CLONE: libc::c_uint = 1;

/// A detached clone of one mount.
#[derive(Debug)]
pub struct MountClone {
    fd: OwnedFd,
    mount_point: PathBuf,
}

impl MountClone {
    /// Clones the mount that `dir` is on (without the mounts below it).
    pub fn containing(dir: &Path) -> io::Result<MountClone> {
        let dir = dir.canonicalize()?;
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
        let mount_point = mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(|field| PathBuf::from(crate::assemble::rootfs::unescape_mountinfo(field)))
            .filter(|point| dir.starts_with(point))
            .max_by_key(|point| point.components().count())
            .ok_or_else(|| io::Error::other(format!("no mount holds {}", dir.display())))?;
        let path =
            std::ffi::CString::new(mount_point.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: open_tree takes a NUL-terminated path and flags and returns a new file
        // descriptor or -1; the descriptor is owned from here on.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                path.as_ptr(),
                OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a non-negative return of open_tree is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(MountClone { fd, mount_point })
    }

    /// `host_path` as seen inside the clone, if it lies under the cloned mount's mount point
    /// and is the same file there as on the host, or would be once created (its closest
    /// existing ancestor is).
    pub fn path_of(&self, host_path: &Path) -> Option<PathBuf> {
        let relative = host_path.strip_prefix(&self.mount_point).ok()?;
        let inside = PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd())).join(relative);
        let host_existing = host_path.ancestors().find(|p| p.exists())?;
        let depth = host_path.components().count() - host_existing.components().count();
        let inside_existing = inside.ancestors().nth(depth)?;
        let (host, clone) = (
            fs::metadata(host_existing).ok()?,
            fs::metadata(inside_existing).ok()?,
        );
        (host.dev() == clone.dev() && host.ino() == clone.ino()).then_some(inside)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::mount::{MntFlags, MsFlags, mount, umount2};

    /// The situation on NixOS, made in a temp dir: a store directory bound read-only over
    /// itself, and a view directory beside it on the same filesystem.
    #[test]
    fn links_cross_a_read_only_bind_through_a_clone() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        fs::create_dir_all(store.join("aaaa-x")).unwrap();
        fs::write(store.join("aaaa-x/file"), "x").unwrap();
        let views = dir.path().join("views");
        fs::create_dir_all(&views).unwrap();
        mount(
            Some(&store),
            &store,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(None::<&str>, &store, None::<&str>, remount, None::<&str>).unwrap();

        let direct = fs::hard_link(store.join("aaaa-x/file"), views.join("direct"));
        let clone = MountClone::containing(&views).and_then(|clone| {
            let source = clone.path_of(&store.join("aaaa-x/file")).unwrap();
            let target = clone.path_of(&views.join("linked")).unwrap();
            fs::hard_link(source, target)
        });
        umount2(&store, MntFlags::MNT_DETACH).unwrap();

        assert_eq!(direct.unwrap_err().raw_os_error(), Some(libc::EXDEV));
        clone.unwrap();
        let linked = fs::metadata(views.join("linked")).unwrap();
        assert_eq!(
            linked.ino(),
            fs::metadata(store.join("aaaa-x/file")).unwrap().ino()
        );
    }

    #[test]
    fn paths_outside_the_mount_have_no_place_in_the_clone() {
        let dir = tempfile::tempdir().unwrap();
        let clone = MountClone::containing(dir.path()).unwrap();
        assert!(clone.path_of(Path::new("/proc/self")).is_none());
        let inside = clone.path_of(&dir.path().join("not-yet")).unwrap();
        assert!(inside.starts_with("/proc/self/fd/"));
    }
}
