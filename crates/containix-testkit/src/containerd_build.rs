//! Which containerd build the tests run: the machine's (on PATH), or another build named by
//! [`CONTAINERD_ENV`], as the version matrix does (`scripts/matrix.sh`).
//!
//! A build is a folder holding `containerd`, its `ctr` and its `containerd-shim-runc-v2` (a
//! Debian package extracted in place has them all in `usr/bin`). The testkit puts that folder
//! first on the instance's PATH, so containerd starts the runc shim of its own build.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use containix_core::node::containerd_config::version_for_containerd_major;

/// Environment variable naming the `containerd` binary the tests run instead of the one on PATH.
pub const CONTAINERD_ENV: &str = "CONTAINIX_TEST_CONTAINERD";

/// Why a containerd build's version could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdVersionError {
    /// `containerd --version` could not be run.
    #[error(
        "running `{program} --version`: {source} (install the containerd package, or fix {CONTAINERD_ENV})"
    )]
    Run {
        /// The binary.
        program: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Its output has no version this module can read.
    #[error(
        "`{program} --version` printed {output:?}, expected `containerd <module> <version> ...`"
    )]
    Unreadable {
        /// The binary.
        program: PathBuf,
        /// What it printed.
        output: String,
    },
}

/// A containerd build: the daemon, its `ctr`, and the folder it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdBuild {
    /// The `containerd` binary (a bare name is looked up on PATH).
    pub containerd: PathBuf,
    /// The `ctr` of the same build.
    pub ctr: PathBuf,
    /// The build's folder, put first on containerd's PATH; `None` for the build on PATH.
    pub bin_dir: Option<PathBuf>,
}

impl ContainerdBuild {
    /// The build on PATH (the machine's containerd package).
    pub fn on_path() -> Self {
        Self {
            containerd: PathBuf::from("containerd"),
            ctr: PathBuf::from("ctr"),
            bin_dir: None,
        }
    }

    /// The build whose `containerd` binary is `containerd`; its `ctr` is next to it.
    pub fn at(containerd: impl Into<PathBuf>) -> Self {
        let containerd = containerd.into();
        let bin_dir = containerd
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(Path::to_path_buf);
        match bin_dir {
            Some(dir) => Self {
                ctr: dir.join("ctr"),
                containerd,
                bin_dir: Some(dir),
            },
            None => Self {
                containerd,
                ..Self::on_path()
            },
        }
    }

    /// The build under test: the one [`CONTAINERD_ENV`] names, else [`ContainerdBuild::on_path`].
    pub fn under_test() -> Self {
        match std::env::var_os(CONTAINERD_ENV).filter(|value| !value.is_empty()) {
            Some(binary) => Self::at(binary),
            None => Self::on_path(),
        }
    }

    /// Whether [`CONTAINERD_ENV`] chose the build (a matrix run), rather than PATH.
    pub fn is_chosen_by_env() -> bool {
        std::env::var_os(CONTAINERD_ENV).is_some_and(|value| !value.is_empty())
    }

    /// The build's version, from `containerd --version`.
    pub fn version(&self) -> Result<ContainerdVersion, ContainerdVersionError> {
        let output = std::process::Command::new(&self.containerd)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ContainerdVersionError::Run {
                program: self.containerd.clone(),
                source,
            })?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        ContainerdVersion::parse(&text).ok_or_else(|| ContainerdVersionError::Unreadable {
            program: self.containerd.clone(),
            output: text.trim().to_owned(),
        })
    }

    /// `inherited` (a PATH value) with the build's folder in front, for programs that must find
    /// this build's `ctr` or shims, such as `containix node install`.
    pub fn path_with(&self, inherited: Option<&std::ffi::OsStr>) -> std::ffi::OsString {
        let mut dirs: Vec<PathBuf> = self.bin_dir.iter().cloned().collect();
        if let Some(inherited) = inherited {
            dirs.extend(std::env::split_paths(inherited));
        }
        std::env::join_paths(dirs).unwrap_or_default()
    }
}

/// A containerd version as `containerd --version` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdVersion {
    /// The version field as printed, e.g. `1.6.20~ds1` or `v2.1.9`.
    pub text: String,
    /// Its major number.
    pub major: u64,
    /// Its minor number.
    pub minor: u64,
}

impl ContainerdVersion {
    /// Reads `containerd <module path> <version> [<revision>]`, the line every containerd prints.
    pub fn parse(output: &str) -> Option<Self> {
        let text = output.split_whitespace().nth(2)?.to_owned();
        let mut numbers = text
            .trim_start_matches('v')
            .split(|c: char| !c.is_ascii_digit())
            .map(str::parse::<u64>);
        let major = numbers.next()?.ok()?;
        let minor = numbers.next()?.ok()?;
        Some(Self { text, major, minor })
    }

    /// The config version this containerd writes with `containerd config default`: 2 for 1.x,
    /// 3 for 2.x.
    pub fn config_version(&self) -> i64 {
        version_for_containerd_major(self.major)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_the_matrix_builds_parse() {
        let cases = [
            (
                "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3\n",
                (1, 6, 2),
            ),
            (
                "containerd github.com/containerd/containerd 1.7.24~ds1 1.7.24~ds1-6+deb13u1\n",
                (1, 7, 2),
            ),
            (
                "containerd github.com/containerd/containerd/v2 2.1.9+unknown \n",
                (2, 1, 3),
            ),
            (
                "containerd github.com/containerd/containerd v1.7.2 abc\n",
                (1, 7, 2),
            ),
        ];
        for (output, (major, minor, config)) in cases {
            let version = ContainerdVersion::parse(output).unwrap();
            assert_eq!((version.major, version.minor), (major, minor), "{output}");
            assert_eq!(version.config_version(), config, "{output}");
        }
        assert_eq!(ContainerdVersion::parse("containerd"), None);
        assert_eq!(ContainerdVersion::parse("containerd x y.z"), None);
    }

    #[test]
    fn a_build_folder_brings_its_own_ctr_and_goes_first_on_path() {
        let build = ContainerdBuild::at("/opt/ctrd-2/usr/bin/containerd");
        assert_eq!(build.ctr, Path::new("/opt/ctrd-2/usr/bin/ctr"));
        assert_eq!(
            build.bin_dir.as_deref(),
            Some(Path::new("/opt/ctrd-2/usr/bin"))
        );
        assert_eq!(
            build.path_with(Some("/usr/bin:/bin".as_ref())),
            "/opt/ctrd-2/usr/bin:/usr/bin:/bin"
        );
        let bare = ContainerdBuild::at("containerd");
        assert_eq!(bare, ContainerdBuild::on_path());
        assert_eq!(bare.path_with(Some("/usr/bin".as_ref())), "/usr/bin");
    }
}
