//! How a store view is filled, and which way a node uses.

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::mount_clone::MountClone;
use crate::assemble::rootfs::LinkMode;
use crate::request::view_setting::ViewSetting;

/// How a view holds its store paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViewMechanism {
    /// Directories recreated, regular files hard-linked to the store's, symlinks recreated: no
    /// mounts at all. Needs the view directory on the store's filesystem, reachable through the
    /// same mount (a read-only bind of `/nix/store` over itself, as on NixOS, prevents it).
    LinkFarm,
    /// One read-only bind mount per member under a plain directory. Works on any node, but
    /// each mount is in the host's mount table, which every new mount namespace copies.
    BindTree,
}

impl ViewMechanism {
    /// The name the policy and `containix doctor` use: `link-farm` or `bind-tree`.
    pub fn as_str(self) -> &'static str {
        match self {
            ViewMechanism::LinkFarm => "link-farm",
            ViewMechanism::BindTree => "bind-tree",
        }
    }

    /// How [`crate::assemble::rootfs::populate`] places members for this mechanism.
    pub fn link_mode(self) -> LinkMode {
        match self {
            ViewMechanism::LinkFarm => LinkMode::Hardlink,
            ViewMechanism::BindTree => LinkMode::Bind,
        }
    }
}

impl fmt::Display for ViewMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The mechanism `setting` tries first, and whether a bind tree may stand in when linking
/// fails.
pub fn first_choice(setting: ViewSetting) -> (ViewMechanism, bool) {
    match setting {
        ViewSetting::Auto => (ViewMechanism::LinkFarm, true),
        ViewSetting::LinkFarm => (ViewMechanism::LinkFarm, false),
        ViewSetting::BindTree => (ViewMechanism::BindTree, false),
    }
}

/// What a node can do, as `containix doctor` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The mechanism views get under the setting.
    pub mechanism: ViewMechanism,
    /// Why, in a sentence.
    pub reason: String,
    /// False when the setting asks for a link farm this node cannot make: views then fail.
    pub works: bool,
}

/// Finds which mechanism `setting` gives views under `view_dir` on this node: it hard-links one
/// regular file of the store into `view_dir` and removes the link again.
pub fn probe(setting: ViewSetting, view_dir: &Path, store_dir: &Path) -> Probe {
    let (first, fallback) = first_choice(setting);
    if first == ViewMechanism::BindTree {
        return Probe {
            mechanism: first,
            reason: "the node policy sets store-view = \"bind-tree\"".into(),
            works: true,
        };
    }
    match try_link(view_dir, store_dir) {
        Ok(()) => Probe {
            mechanism: ViewMechanism::LinkFarm,
            reason: format!(
                "{} can hard-link files of {}",
                view_dir.display(),
                store_dir.display()
            ),
            works: true,
        },
        Err(err) if fallback => Probe {
            mechanism: ViewMechanism::BindTree,
            reason: format!(
                "{} cannot hard-link files of {} ({err}); put `view-dir` on the store's filesystem \
                 for mount-free views",
                view_dir.display(),
                store_dir.display()
            ),
            works: true,
        },
        Err(err) => Probe {
            mechanism: ViewMechanism::LinkFarm,
            reason: format!(
                "store-view = \"link-farm\" but {} cannot hard-link files of {}: {err}",
                view_dir.display(),
                store_dir.display()
            ),
            works: false,
        },
    }
}

fn try_link(view_dir: &Path, store_dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(view_dir)?;
    if std::fs::metadata(view_dir)?.dev() != std::fs::metadata(store_dir)?.dev() {
        return Err(io::Error::other("they are on different filesystems"));
    }
    let Some(file) = some_store_file(store_dir)? else {
        return Err(io::Error::other("the store holds no regular file to try"));
    };
    let link = view_dir.join(format!(".probe-{}", std::process::id()));
    let _ = std::fs::remove_file(&link);
    match std::fs::hard_link(&file, &link) {
        Ok(()) => return std::fs::remove_file(&link),
        Err(err) if err.raw_os_error() != Some(nix::libc::EXDEV) => return Err(err),
        Err(_) => {}
    }
    // A read-only bind of the store over itself: try through a clone of the underlying mount,
    // as views are made.
    let clone = MountClone::containing(view_dir)?;
    let unreachable = || io::Error::other("the store is not on the mount that holds the view dir");
    let inside_file = clone.path_of(&file).ok_or_else(unreachable)?;
    let inside_link = clone.path_of(&link).ok_or_else(unreachable)?;
    std::fs::hard_link(inside_file, &inside_link)?;
    std::fs::remove_file(inside_link)
}

/// A regular file near the top of the store, looking at a bounded number of entries.
fn some_store_file(store_dir: &Path) -> io::Result<Option<std::path::PathBuf>> {
    for entry in std::fs::read_dir(store_dir)?.take(64) {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_file() && !entry.file_name().to_string_lossy().starts_with('.') {
            return Ok(Some(entry.path()));
        }
        if kind.is_dir() {
            for inner in std::fs::read_dir(entry.path())?.take(16).flatten() {
                if inner.file_type()?.is_file() {
                    return Ok(Some(inner.path()));
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_choose() {
        for setting in [
            ViewSetting::Auto,
            ViewSetting::LinkFarm,
            ViewSetting::BindTree,
        ] {
            assert_eq!(setting.as_str().parse::<ViewSetting>(), Ok(setting));
        }
        assert!(
            "overlay"
                .parse::<ViewSetting>()
                .unwrap_err()
                .contains("bind-tree")
        );
        assert_eq!(
            first_choice(ViewSetting::Auto),
            (ViewMechanism::LinkFarm, true)
        );
        assert_eq!(
            first_choice(ViewSetting::BindTree),
            (ViewMechanism::BindTree, false)
        );
    }

    #[test]
    fn a_directory_on_the_same_filesystem_can_link() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir_all(store.join("aaaa-x")).unwrap();
        std::fs::write(store.join("aaaa-x/file"), "x").unwrap();
        let probe = probe(ViewSetting::Auto, &dir.path().join("views"), &store);
        assert_eq!(probe.mechanism, ViewMechanism::LinkFarm, "{}", probe.reason);
        assert_eq!(
            std::fs::read_dir(dir.path().join("views")).unwrap().count(),
            0
        );
        let forced = probe_bind(&dir.path().join("views"), &store);
        assert_eq!(forced.mechanism, ViewMechanism::BindTree);
    }

    fn probe_bind(view_dir: &Path, store: &Path) -> Probe {
        probe(ViewSetting::BindTree, view_dir, store)
    }

    #[test]
    fn an_empty_store_falls_back_to_binds_under_auto() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir_all(&store).unwrap();
        let probe = probe(ViewSetting::Auto, &dir.path().join("views"), &store);
        assert_eq!(probe.mechanism, ViewMechanism::BindTree);
        assert!(probe.reason.contains("no regular file"), "{}", probe.reason);
    }

    #[test]
    fn a_read_only_bind_of_the_store_still_gets_a_link_farm() {
        use nix::mount::{MntFlags, MsFlags, mount, umount2};
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir_all(store.join("aaaa-x")).unwrap();
        std::fs::write(store.join("aaaa-x/file"), "x").unwrap();
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
        let probe = probe(ViewSetting::LinkFarm, &dir.path().join("views"), &store);
        umount2(&store, MntFlags::MNT_DETACH).unwrap();
        assert_eq!(probe.mechanism, ViewMechanism::LinkFarm, "{}", probe.reason);
        assert!(probe.works, "{}", probe.reason);
    }
}
