//! The node policy as data: what pods on this node may ask containix to do, node-wide and per
//! Kubernetes namespace.

use crate::request::view_setting::ViewSetting;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::flake_rule::FlakeRule;

/// The Nix daemon's socket on a standard installation.
pub const DEFAULT_DAEMON_SOCKET: &str = "/nix/var/nix/daemon-socket/socket";

/// Environment variable overriding the daemon socket, as it does for Nix itself.
pub const DAEMON_SOCKET_ENV: &str = "NIX_DAEMON_SOCKET_PATH";

/// Flake ref rules allowed by default: remote sources at their usual hosts. Local ones
/// (`path:`, `git+file:`, `file:`) are refused unless listed, because evaluating a local path
/// copies that host directory into the world-readable store.
pub const DEFAULT_ALLOWED_PREFIXES: &[&str] = &[
    "github:",
    "gitlab:",
    "sourcehut:",
    "git+https:",
    "https:",
    "tarball+https:",
];

/// How the node may make a closure valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Realise {
    /// Only fetch from the configured binary caches; never run a build on the node.
    Substitute,
    /// Fetch what the caches have and build the rest.
    Build,
}

impl Realise {
    /// The policy file's spelling: `substitute` or `build`.
    pub fn as_str(self) -> &'static str {
        match self {
            Realise::Substitute => "substitute",
            Realise::Build => "build",
        }
    }
}

/// The settings a namespace may override (`[namespaces.<name>]`); `None` keeps the node-wide
/// value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespacePolicy {
    /// Replaces the node-wide `allowed-flake-prefixes` (it does not add to them).
    pub allowed_flake_prefixes: Option<Vec<FlakeRule>>,
    /// Whether pods of the namespace may build.
    pub realise: Option<Realise>,
    /// The namespace's resolution deadline when a pod sets none.
    pub default_timeout: Option<Duration>,
    /// The namespace's cap on `containix.dev/timeout`.
    pub max_timeout: Option<Duration>,
}

/// The parsed, validated node policy. The flake, realise and deadline settings at the top are
/// the defaults for pods of every namespace not listed in `namespaces`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePolicy {
    /// Where pods may fetch flakes from (`github:`, `github:my-org/`, `path:/srv/flakes`).
    pub allowed_flake_prefixes: Vec<FlakeRule>,
    /// Whether the node may build or only substitute.
    pub realise: Realise,
    /// Resolution deadline when a pod sets none.
    pub default_timeout: Duration,
    /// Upper bound on any pod's `containix.dev/timeout`.
    pub max_timeout: Duration,
    /// Per-namespace overrides of the four settings above, by Kubernetes namespace name.
    pub namespaces: BTreeMap<String, NamespacePolicy>,
    /// The Nix system pods' flakes are evaluated for (`x86_64-linux`).
    pub system: String,
    /// The Nix daemon's Unix socket.
    pub daemon_socket: PathBuf,
    /// Where containix keeps GC roots, the resolution cache, locks and per-container state.
    pub state_dir: PathBuf,
    /// The `nix` command used for flake evaluation.
    pub nix_command: PathBuf,
    /// The flake whose `legacyPackages.<system>` (or `packages.<system>`) resolves
    /// `containix.dev/packages`; none means that annotation is refused on this node. Trusted
    /// operator input: not checked against `allowed-flake-prefixes`.
    pub package_set: Option<String>,
    /// How long a detached resolution goes on after its last waiting pod is deleted (a
    /// Deployment often replaces a deleted pod at once).
    pub resolution_grace: Duration,
    /// How long a cached lock of a remote flake ref (a branch) is reused before the ref is
    /// locked again. `path:` folders are locked again when they change, whatever this says.
    pub lock_ttl: Duration,
    /// How many flake evaluations (and locks) may run at once on the node; more wait.
    pub max_concurrent_evaluations: usize,
    /// How store views are made: `auto`, `link-farm` or `bind-tree`.
    pub store_view: ViewSetting,
    /// Where store views live; default `<state-dir>/views`. A link farm needs it on the Nix
    /// store's filesystem.
    pub view_dir: Option<PathBuf>,
    /// The file the policy came from, if any.
    pub source: Option<PathBuf>,
}

impl Default for NodePolicy {
    /// The node's built-in policy: what the shim and the CSI plugin use without a policy file.
    fn default() -> Self {
        Self {
            allowed_flake_prefixes: DEFAULT_ALLOWED_PREFIXES
                .iter()
                .map(|p| FlakeRule::parse(p).expect("the default rules parse"))
                .collect(),
            realise: Realise::Substitute,
            default_timeout: Duration::from_secs(120),
            max_timeout: Duration::from_secs(600),
            namespaces: BTreeMap::new(),
            system: host_system(),
            daemon_socket: PathBuf::from(DEFAULT_DAEMON_SOCKET),
            state_dir: PathBuf::from("/var/lib/containix"),
            nix_command: PathBuf::from("nix"),
            package_set: None,
            resolution_grace: Duration::from_secs(30),
            lock_ttl: DEFAULT_LOCK_TTL,
            max_concurrent_evaluations: default_max_concurrent_evaluations(),
            store_view: ViewSetting::Auto,
            view_dir: None,
            source: None,
        }
    }
}

impl NodePolicy {
    /// The built-in policy of the `containix` CLI on a workstation: the node's, except that it
    /// builds what no binary cache has, as `nix build` does.
    pub fn workstation() -> Self {
        Self {
            realise: Realise::Build,
            ..Self::default()
        }
    }

    /// Where store views live: `view-dir`, else `<state-dir>/views`.
    pub fn view_dir(&self) -> PathBuf {
        self.view_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("views"))
    }

    /// The node-wide allowed prefixes as written.
    pub fn allowed_prefix_texts(&self) -> Vec<String> {
        self.allowed_flake_prefixes
            .iter()
            .map(ToString::to_string)
            .collect()
    }
}

/// `lock-ttl` by default: Nix's own `tarball-ttl`.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(3600);

/// `max-concurrent-evaluations` by default: the number of CPUs this process may use.
pub fn default_max_concurrent_evaluations() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The Nix system string of the machine containix runs on.
pub fn host_system() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}
