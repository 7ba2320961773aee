//! Checks that the Debian packages a real test node needs are installed.
//!
//! `scripts/setup-node.sh` installs them on a fresh machine; tests call [`require`] first so a
//! machine that is not a test node fails with one clear message instead of a confusing one later.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// A Debian package and the binaries the tests use from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Package {
    /// The Debian package name.
    pub name: &'static str,
    /// Executables that must be on `PATH` once it is installed.
    pub binaries: &'static [&'static str],
}

/// Nix 2.8 (client, store tools and daemon).
pub const NIX_BIN: Package = Package {
    name: "nix-bin",
    binaries: &["nix", "nix-store", "nix-daemon"],
};

/// containerd with its built-in CRI plugin, and `ctr`.
pub const CONTAINERD: Package = Package {
    name: "containerd",
    binaries: &["containerd", "ctr"],
};

/// The OCI runtime containix hands off to.
pub const RUNC: Package = Package {
    name: "runc",
    binaries: &["runc"],
};

/// A statically linked busybox: the builder of the test flakes and the pause process.
pub const BUSYBOX_STATIC: Package = Package {
    name: "busybox-static",
    binaries: &["busybox"],
};

/// Everything a full test node needs.
pub const NODE_PACKAGES: &[Package] = &[NIX_BIN, CONTAINERD, RUNC, BUSYBOX_STATIC];

/// What the Nix half of the harness needs (daemon, fixtures, binary cache).
pub const NIX_PACKAGES: &[Package] = &[NIX_BIN, BUSYBOX_STATIC];

/// Fails with [`Error::MissingPackages`] naming every package in `packages` that is not installed
/// (according to `dpkg-query`) or whose binaries are not on `PATH`.
///
/// On a machine without `dpkg-query` (not Debian), only the binaries are checked.
pub fn require(packages: &[Package]) -> Result<()> {
    let installed = installed_debian_packages(packages)?;
    let mut missing_packages = Vec::new();
    let mut missing_binaries = Vec::new();
    for package in packages {
        let absent: Vec<&str> = package
            .binaries
            .iter()
            .copied()
            .filter(|binary| find_on_path(binary).is_none())
            .collect();
        let not_installed = installed
            .as_ref()
            .is_some_and(|installed| !installed.iter().any(|name| name == package.name));
        if not_installed || !absent.is_empty() {
            missing_packages.push(package.name.to_string());
        }
        missing_binaries.extend(absent.into_iter().map(str::to_string));
    }
    if missing_packages.is_empty() {
        Ok(())
    } else {
        Err(Error::MissingPackages {
            packages: missing_packages,
            binaries: missing_binaries,
        })
    }
}

/// [`require`] of [`NODE_PACKAGES`].
pub fn require_node_packages() -> Result<()> {
    require(NODE_PACKAGES)
}

/// [`require`] of [`NIX_PACKAGES`].
pub fn require_nix_packages() -> Result<()> {
    require(NIX_PACKAGES)
}

/// The first executable file called `name` in the directories of `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable_file(candidate))
}

/// The static busybox binary (from `busybox-static`), as found on `PATH`.
pub fn busybox() -> Result<PathBuf> {
    require(&[BUSYBOX_STATIC])?;
    find_on_path("busybox").ok_or_else(|| Error::MissingPackages {
        packages: vec![BUSYBOX_STATIC.name.into()],
        binaries: vec!["busybox".into()],
    })
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The names among `packages` that dpkg reports as installed, or `None` without dpkg.
fn installed_debian_packages(packages: &[Package]) -> Result<Option<Vec<String>>> {
    let output = match Command::new("dpkg-query")
        .arg("--show")
        .arg("--showformat=${Package}\t${db:Status-Abbrev}\n")
        .args(packages.iter().map(|package| package.name))
        .output()
    {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(Error::io("running dpkg-query", err)),
    };
    // dpkg-query exits 1 when a package is unknown but still lists the others on stdout.
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(Some(parse_installed(&stdout)))
}

/// Package names whose status is "installed" (`ii`) in `dpkg-query` output of
/// `${Package}\t${db:Status-Abbrev}` lines.
fn parse_installed(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, status)| status.trim_end() == "ii")
        .map(|(name, _)| name.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_installed_keeps_only_fully_installed_packages() {
        let out = "nix-bin\tii \nrunc\trc \ncontainerd\tii \n";
        assert_eq!(parse_installed(out), ["nix-bin", "containerd"]);
    }

    #[test]
    fn require_names_an_unknown_package_and_its_binary() {
        let bogus = Package {
            name: "containix-no-such-package",
            binaries: &["containix-no-such-binary"],
        };
        let err = require(&[bogus]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("containix-no-such-package"), "{msg}");
        assert!(
            msg.contains("not on PATH: containix-no-such-binary"),
            "{msg}"
        );
        assert!(msg.contains("scripts/setup-node.sh"), "{msg}");
    }
}
