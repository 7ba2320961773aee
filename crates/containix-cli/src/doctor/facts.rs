//! What [`super::probe`] found on the node, before any judgement.

use std::path::PathBuf;

use containix_core::assemble::view::mechanism::Probe;
use containix_core::request::view_setting::ViewSetting;

use containix_core::store::daemon::TrustStatus;

/// Everything the checks judge.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The nix-daemon's socket and what connecting to it gave.
    pub daemon: DaemonFacts,
    /// Nix's settings (`nix show-config --json`), or why they could not be read.
    pub nix_settings: Result<NixSettings, String>,
    /// The first line of `containerd --version`, or why it could not be run.
    pub containerd_version: Result<String, String>,
    /// containerd's config file and its text, or why it could not be read.
    pub containerd_config: (PathBuf, Result<String, String>),
    /// The containerd socket checked, and whether connecting to it worked.
    pub containerd_socket: (PathBuf, Result<(), String>),
    /// The output of `runc --version`, or why it could not be run.
    pub runc_version: Result<String, String>,
    /// The shim binary found where containerd looks and what `-v` printed.
    pub shim: ShimFacts,
    /// Whether the unified cgroup v2 hierarchy is mounted at /sys/fs/cgroup.
    pub cgroup_v2: bool,
    /// The node policy, or why it does not load.
    pub policy: Result<PolicyFacts, String>,
    /// Free space of the filesystems containix writes to.
    pub free_space: Vec<FreeSpace>,
    /// Whether this process could lower its `oom_score_adj`, or why that was not tried.
    pub can_lower_oom_score_adj: Result<bool, String>,
    /// How store views are made (none when the policy does not load).
    pub store_view: Option<StoreViewFacts>,
}

/// The nix-daemon as a client sees it.
#[derive(Debug, Clone)]
pub struct DaemonFacts {
    /// The socket connected to.
    pub socket: PathBuf,
    /// What the handshake established, or why it failed.
    pub handshake: Result<DaemonSummary, String>,
}

/// What the daemon's handshake told.
#[derive(Debug, Clone)]
pub struct DaemonSummary {
    /// The protocol version the daemon speaks.
    pub daemon_protocol: String,
    /// The protocol version in use (the lower of ours and the daemon's).
    pub protocol: String,
    /// The daemon's Nix version, if it says.
    pub nix_version: Option<String>,
    /// Whether it trusts us.
    pub trust: TrustStatus,
}

/// The substitution settings of Nix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NixSettings {
    /// `substituters`.
    pub substituters: Vec<String>,
    /// `trusted-public-keys`.
    pub trusted_public_keys: Vec<String>,
}

/// The shim binary containerd runs for the containix handler.
#[derive(Debug, Clone)]
pub enum ShimFacts {
    /// In none of the directories searched.
    NotFound {
        /// Where it was looked for.
        searched: ShimSearch,
    },
    /// Found; `version` is what `-v` printed, or why it failed.
    Found {
        /// The binary.
        binary: PathBuf,
        /// Its version output.
        version: Result<String, String>,
        /// Where it was looked for.
        searched: ShimSearch,
    },
}

/// Whose directories the shim was looked for in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShimSearch {
    /// The running containerd's: its `PATH`, then its executable's directory.
    Containerd {
        /// containerd's process id.
        pid: u32,
        /// The directories, in containerd's order.
        dirs: Vec<PathBuf>,
    },
    /// No running containerd was found on the socket: the doctor's own `PATH`.
    OwnPath {
        /// The directories of `PATH`.
        dirs: Vec<PathBuf>,
    },
}

impl ShimSearch {
    /// The directories searched, in order.
    pub fn dirs(&self) -> &[PathBuf] {
        match self {
            ShimSearch::Containerd { dirs, .. } | ShimSearch::OwnPath { dirs } => dirs,
        }
    }
}

/// How store views are made on this node: the policy's setting and what the probe found.
#[derive(Debug, Clone)]
pub struct StoreViewFacts {
    /// The policy's `store-view`.
    pub setting: ViewSetting,
    /// The mechanism views get, and why.
    pub probe: Probe,
}

/// The parts of the node policy the checks use.
#[derive(Debug, Clone)]
pub struct PolicyFacts {
    /// The file it came from (none: defaults).
    pub source: Option<PathBuf>,
    /// Its state directory.
    pub state_dir: PathBuf,
}

/// Free space on the filesystem holding a directory.
#[derive(Debug, Clone)]
pub struct FreeSpace {
    /// What the directory is for (`store`, `state dir`).
    pub name: &'static str,
    /// The directory (or the existing ancestor measured).
    pub path: PathBuf,
    /// Bytes available to unprivileged users, or why statvfs failed.
    pub available: Result<u64, String>,
}
