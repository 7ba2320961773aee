//! Which containerd a node runs, a standalone one or the one k3s or RKE2 embed, and so where
//! the `containix` handler goes: containerd's config file, or the Go template k3s and RKE2
//! render that file from at every start (they overwrite `config.toml` itself).
//!
//! k3s and RKE2 look in the agent's containerd folder for `config-v3.toml.tmpl` (config version
//! 3, containerd 2.x) and then `config.toml.tmpl` (version 2), and render the first they find;
//! with neither, they render their built-in config, whose `version` says which one a new
//! template should be.

use std::path::{Path, PathBuf};

use super::error::NodeInstallError;
use crate::node::containerd_config::{DEFAULT_ADDRESS, DEFAULT_CONFIG_PATH};

/// k3s's agent containerd folder.
pub const K3S_CONTAINERD_DIR: &str = "/var/lib/rancher/k3s/agent/etc/containerd";
/// RKE2's agent containerd folder.
pub const RKE2_CONTAINERD_DIR: &str = "/var/lib/rancher/rke2/agent/etc/containerd";
/// The template of a version 3 config (k3s and RKE2 releases with containerd 2.x).
pub const TEMPLATE_V3: &str = "config-v3.toml.tmpl";
/// The template of a version 2 config.
pub const TEMPLATE_V2: &str = "config.toml.tmpl";
/// The config k3s and RKE2 render, next to the templates.
pub const RENDERED_CONFIG: &str = "config.toml";
/// The containerd socket k3s and RKE2 run.
pub const K3S_ADDRESS: &str = "/run/k3s/containerd/containerd.sock";

/// Which containerd a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerdFlavor {
    /// containerd with its own config file (kubeadm, kind, managed node images).
    Standalone,
    /// The containerd k3s runs.
    K3s,
    /// The containerd RKE2 runs.
    Rke2,
}

impl ContainerdFlavor {
    /// Every flavor.
    pub const ALL: [ContainerdFlavor; 3] = [Self::Standalone, Self::K3s, Self::Rke2];

    /// Its name, for people.
    pub fn name(self) -> &'static str {
        match self {
            Self::Standalone => "containerd",
            Self::K3s => "k3s",
            Self::Rke2 => "RKE2",
        }
    }

    /// Its name for machines (JSON, flags): `containerd`, `k3s` or `rke2`.
    pub fn id(self) -> &'static str {
        match self {
            Self::Standalone => "containerd",
            Self::K3s => "k3s",
            Self::Rke2 => "rke2",
        }
    }

    /// The agent's containerd folder holding the templates (node path); `None` for a
    /// standalone containerd.
    pub fn template_dir(self) -> Option<&'static Path> {
        match self {
            Self::Standalone => None,
            Self::K3s => Some(Path::new(K3S_CONTAINERD_DIR)),
            Self::Rke2 => Some(Path::new(RKE2_CONTAINERD_DIR)),
        }
    }

    /// The systemd units whose restart restarts this containerd, in the order to try: a
    /// server node runs the first, an agent node the second. Restarting k3s or RKE2 restarts
    /// the kubelet too; running containers keep running, as with containerd alone.
    pub fn units(self) -> &'static [&'static str] {
        match self {
            Self::Standalone => &["containerd"],
            Self::K3s => &["k3s", "k3s-agent"],
            Self::Rke2 => &["rke2-server", "rke2-agent"],
        }
    }

    /// containerd's socket when the config does not say (node path).
    pub fn address(self) -> &'static str {
        match self {
            Self::Standalone => DEFAULT_ADDRESS,
            Self::K3s | Self::Rke2 => K3S_ADDRESS,
        }
    }

    /// The `ctr` to import images with: k3s's installer links `ctr` on the PATH to `k3s`, RKE2
    /// keeps its own under its data dir.
    pub fn ctr(self) -> &'static str {
        match self {
            Self::Standalone | Self::K3s => "ctr",
            Self::Rke2 => "/var/lib/rancher/rke2/bin/ctr",
        }
    }
}

/// The flavor whose containerd folder exists (`dir_exists` answers for node paths): k3s, then
/// RKE2, else a standalone containerd.
pub fn detect_flavor(dir_exists: impl Fn(&Path) -> bool) -> ContainerdFlavor {
    [ContainerdFlavor::K3s, ContainerdFlavor::Rke2]
        .into_iter()
        .find(|flavor| flavor.template_dir().is_some_and(&dir_exists))
        .unwrap_or(ContainerdFlavor::Standalone)
}

/// The form of the file the handler goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConfigForm {
    /// containerd's TOML config.
    #[default]
    Toml,
    /// A k3s/RKE2 Go template of a config of this version.
    Template {
        /// 3 for `config-v3.toml.tmpl`, 2 for `config.toml.tmpl`.
        version: i64,
    },
}

impl ConfigForm {
    /// The form of the file at `path`: a template by its name (`*.tmpl`), else TOML.
    pub fn of_path(path: &Path) -> ConfigForm {
        match path.file_name().and_then(|name| name.to_str()) {
            Some(TEMPLATE_V3) => ConfigForm::Template { version: 3 },
            Some(name) if name.ends_with(".tmpl") => ConfigForm::Template { version: 2 },
            _ => ConfigForm::Toml,
        }
    }
}

/// What a k3s/RKE2 containerd folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TemplateDir {
    /// `config-v3.toml.tmpl` exists.
    pub v3_template: bool,
    /// `config.toml.tmpl` exists.
    pub v2_template: bool,
    /// The `version` of the rendered `config.toml`, if it exists and says.
    pub rendered_version: Option<i64>,
}

impl TemplateDir {
    /// Reads the folder `dir` (as this process sees it).
    pub fn read(dir: &Path) -> Result<TemplateDir, NodeInstallError> {
        let rendered = dir.join(RENDERED_CONFIG);
        let rendered_version = match std::fs::read_to_string(&rendered) {
            Ok(text) => text
                .parse::<toml::Table>()
                .ok()
                .and_then(|table| table.get("version")?.as_integer()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(NodeInstallError::Read {
                    path: rendered,
                    source,
                });
            }
        };
        Ok(TemplateDir {
            v3_template: dir.join(TEMPLATE_V3).exists(),
            v2_template: dir.join(TEMPLATE_V2).exists(),
            rendered_version,
        })
    }
}

/// The template to put the handler in, in the folder `dir`, and its form. An existing template
/// is the one k3s/RKE2 reads (the v3 one first); with none, a new one of the version the
/// rendered config has, or of `asked` (`--config-version`), which wins when given.
pub fn choose_template(
    dir: &Path,
    found: &TemplateDir,
    asked: Option<i64>,
) -> Result<(PathBuf, ConfigForm), NodeInstallError> {
    let version = if found.v3_template {
        3
    } else if found.v2_template {
        2
    } else {
        asked
            .or(found.rendered_version)
            .filter(|version| matches!(version, 2 | 3))
            .ok_or_else(|| NodeInstallError::TemplateVersion {
                dir: dir.to_owned(),
            })?
    };
    let name = if version == 3 {
        TEMPLATE_V3
    } else {
        TEMPLATE_V2
    };
    Ok((dir.join(name), ConfigForm::Template { version }))
}

/// The default config file of a standalone containerd.
pub fn standalone_config() -> (PathBuf, ConfigForm) {
    (PathBuf::from(DEFAULT_CONFIG_PATH), ConfigForm::Toml)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn flavors_are_told_apart_by_their_folders() {
        assert_eq!(detect_flavor(|_| false), ContainerdFlavor::Standalone);
        assert_eq!(
            detect_flavor(|dir| dir == Path::new(K3S_CONTAINERD_DIR)),
            ContainerdFlavor::K3s
        );
        assert_eq!(
            detect_flavor(|dir| dir == Path::new(RKE2_CONTAINERD_DIR)),
            ContainerdFlavor::Rke2
        );
        assert_eq!(detect_flavor(|_| true), ContainerdFlavor::K3s);
        assert_eq!(
            ContainerdFlavor::Rke2.units(),
            ["rke2-server", "rke2-agent"]
        );
        assert_eq!(ContainerdFlavor::K3s.address(), K3S_ADDRESS);
    }

    #[test]
    fn a_template_is_known_by_its_name() {
        let form = |name: &str| ConfigForm::of_path(Path::new(name));
        assert_eq!(
            form("/x/config-v3.toml.tmpl"),
            ConfigForm::Template { version: 3 }
        );
        assert_eq!(
            form("/x/config.toml.tmpl"),
            ConfigForm::Template { version: 2 }
        );
        assert_eq!(form("/etc/containerd/config.toml"), ConfigForm::Toml);
    }

    #[test]
    fn with_no_template_and_nothing_rendered_the_version_must_be_given() {
        let dir = Path::new(K3S_CONTAINERD_DIR);
        let err = choose_template(dir, &TemplateDir::default(), None).unwrap_err();
        assert!(err.to_string().contains("--config-version"), "{err}");
        let (path, form) = choose_template(dir, &TemplateDir::default(), Some(2)).unwrap();
        assert_eq!(path, dir.join(TEMPLATE_V2));
        assert_eq!(form, ConfigForm::Template { version: 2 });
    }

    proptest! {
        /// An existing template is always the one edited (the one k3s reads: v3 first); a new
        /// one follows `--config-version`, else the rendered config's version.
        #[test]
        fn the_template_k3s_reads_is_the_one_edited(
            v3_template in any::<bool>(),
            v2_template in any::<bool>(),
            rendered_version in proptest::option::of(1i64..=4),
            asked in proptest::option::of(2i64..=3),
        ) {
            let dir = Path::new(RKE2_CONTAINERD_DIR);
            let found = TemplateDir { v3_template, v2_template, rendered_version };
            match choose_template(dir, &found, asked) {
                Ok((path, ConfigForm::Template { version })) => {
                    let name = path.file_name().unwrap().to_str().unwrap();
                    prop_assert_eq!(path.parent(), Some(dir));
                    prop_assert_eq!(ConfigForm::of_path(&path), ConfigForm::Template { version });
                    if v3_template {
                        prop_assert_eq!(name, TEMPLATE_V3);
                    } else if v2_template {
                        prop_assert_eq!(name, TEMPLATE_V2);
                    } else {
                        prop_assert_eq!(Some(version), asked.or(rendered_version));
                    }
                }
                Ok((_, ConfigForm::Toml)) => prop_assert!(false, "a template dir gave TOML"),
                Err(_) => {
                    prop_assert!(!v3_template && !v2_template);
                    prop_assert!(!matches!(asked.or(rendered_version), Some(2 | 3)));
                }
            }
        }
    }
}
