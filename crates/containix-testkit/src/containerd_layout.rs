//! Where one private containerd instance keeps everything: root, state, sockets, config, logs
//! and binaries, all under one directory.

use std::path::{Path, PathBuf};

/// Where everything of one instance lives, all under one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdLayout {
    dir: PathBuf,
}

impl ContainerdLayout {
    /// The layout of an instance rooted at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The instance directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// containerd's `root` (content, snapshots, metadata).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
    /// containerd's `state` (sockets, task bundles, sandbox files).
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
    /// The gRPC socket (containerd API and CRI).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }
    /// The ttrpc socket.
    pub fn ttrpc_socket(&self) -> PathBuf {
        self.dir.join("containerd.ttrpc.sock")
    }
    /// containerd's config file (written by [`Containerd::prepare`](crate::containerd::Containerd::prepare), read when it starts).
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    /// containerd's stdout and stderr.
    pub fn log(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }
    /// runc's state root for this instance.
    pub fn runc_root(&self) -> PathBuf {
        self.dir.join("runc")
    }
    /// The directory put first on containerd's PATH (holds the containix shim link).
    pub fn bin(&self) -> PathBuf {
        self.dir.join("bin")
    }
    /// CNI plugin and config directories (empty: only host-network pods are used).
    pub fn cni(&self) -> PathBuf {
        self.dir.join("cni")
    }
    /// NRI's socket (containerd 1.7 and 2.x), where a stock config would otherwise put it in
    /// `/var/run/nri`.
    pub fn nri_socket(&self) -> PathBuf {
        self.dir.join("nri.sock")
    }
    /// containerd's `opt` plugin directory.
    pub fn opt(&self) -> PathBuf {
        self.dir.join("opt")
    }
    /// Parent of the pod log directories.
    pub fn pod_logs(&self) -> PathBuf {
        self.dir.join("pod-logs")
    }
    /// Scratch space for staged image tars.
    pub fn scratch(&self) -> PathBuf {
        self.dir.join("scratch")
    }
    /// The containix node policy the shim reads (`CONTAINIX_CONFIG` in containerd's environment).
    pub fn containix_policy(&self) -> PathBuf {
        self.dir.join("containix-config.toml")
    }
    /// The containix state dir (GC roots, caches, per-container state) of this instance.
    pub fn containix_state(&self) -> PathBuf {
        self.dir.join("containix-state")
    }
}
