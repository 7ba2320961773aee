//! Why a node could not be installed or uninstalled.

use std::path::PathBuf;

use thiserror::Error;

use crate::node::containerd_config::edit::EditError;

/// Why a node could not be installed or uninstalled. Nothing is half-written: every file is
/// replaced by a rename, and the plan is complete before the first change.
#[derive(Debug, Error)]
pub enum NodeInstallError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file could not be written, renamed or removed.
    #[error("{what} {path}: {source}")]
    Write {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// containerd's config cannot take the handler.
    #[error("{path}: {source}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// Why.
        source: EditError,
    },
    /// The shim to install is missing or not executable.
    #[error("the shim to install, {path}: {reason} (name another with --shim)")]
    ShimSource {
        /// The shim given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// k3s/RKE2 has no template and has not rendered a config that says its version.
    #[error(
        "{}: neither config-v3.toml.tmpl nor config.toml.tmpl exists, and no config.toml says \
         which config version k3s/RKE2 writes (has it started once?); pass --config-version 3 \
         (releases with containerd 2.x) or 2",
        dir.display()
    )]
    TemplateVersion {
        /// The agent's containerd folder.
        dir: PathBuf,
    },
    /// A node path is relative.
    #[error("{0}: node paths must be absolute")]
    RelativePath(PathBuf),
}
