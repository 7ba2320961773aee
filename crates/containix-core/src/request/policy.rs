//! Node policy: what pods on this node may ask containix to do.
//!
//! Read from `/etc/containix/config.toml`, or from the file named by `CONTAINIX_CONFIG`. A missing
//! default file means the safe defaults below; a file that names an unknown key is an error, so a
//! typo never silently weakens the policy. `deploy/node/config.toml` documents every key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::request::duration::{DurationError, format_duration, parse_duration};
use crate::request::view_setting::ViewSetting;

/// Where the policy file lives unless `CONTAINIX_CONFIG` names another.
pub const DEFAULT_POLICY_PATH: &str = "/etc/containix/config.toml";

/// The policy file `containix node install` writes when a node has none: every key commented
/// with its default (the same text as `deploy/node/config.toml`).
pub const DOCUMENTED_DEFAULTS: &str = include_str!("default-policy.toml");

/// Environment variable naming another policy file (tests use it).
pub const POLICY_PATH_ENV: &str = "CONTAINIX_CONFIG";

/// Environment variable overriding the daemon socket, as it does for Nix itself.
pub const DAEMON_SOCKET_ENV: &str = "NIX_DAEMON_SOCKET_PATH";

/// The Nix daemon's socket on a standard installation.
pub const DEFAULT_DAEMON_SOCKET: &str = "/nix/var/nix/daemon-socket/socket";

/// Flake ref prefixes allowed by default: remote sources only. Local ones (`path:`, `git+file:`,
/// `file:`) are refused unless listed, because evaluating a local path copies that host directory
/// into the world-readable store.
pub const DEFAULT_ALLOWED_PREFIXES: &[&str] = &[
    "github:",
    "gitlab:",
    "sourcehut:",
    "git+https:",
    "https:",
    "tarball+https:",
];

/// How the node may make a closure valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Realise {
    /// Only fetch from the configured binary caches; never run a build on the node.
    Substitute,
    /// Fetch what the caches have and build the rest.
    Build,
}

/// The parsed, validated node policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePolicy {
    /// Canonical flake ref prefixes pods may use (`github:`, `github:my-org/`, `path:/srv/flakes/`).
    pub allowed_flake_prefixes: Vec<String>,
    /// Whether the node may build or only substitute.
    pub realise: Realise,
    /// Resolution deadline when a pod sets none.
    pub default_timeout: Duration,
    /// Upper bound on any pod's `containix.dev/timeout`.
    pub max_timeout: Duration,
    /// The Nix system pods' flakes are evaluated for (`x86_64-linux`).
    pub system: String,
    /// The Nix daemon's Unix socket.
    pub daemon_socket: PathBuf,
    /// Where containix keeps GC roots, the resolution cache, locks and per-container state.
    pub state_dir: PathBuf,
    /// The `nix` command used for flake evaluation.
    pub nix_command: PathBuf,
    /// The flake whose `legacyPackages.<system>` (or `packages.<system>`) resolves
    /// `containix.dev/packages`; none means that annotation is refused on this node.
    pub package_set: Option<String>,
    /// How store views are made: `auto`, `link-farm` or `bind-tree`.
    pub store_view: ViewSetting,
    /// Where store views live; default `<state-dir>/views`. A link farm needs it on the Nix
    /// store's filesystem.
    pub view_dir: Option<PathBuf>,
    /// The file the policy came from, if any.
    pub source: Option<PathBuf>,
}

/// Why the node policy could not be loaded.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("node policy {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The policy file is not valid TOML or has unknown keys or wrong types.
    #[error("node policy {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's explanation, naming the key.
        message: String,
    },
    /// A duration setting is malformed.
    #[error("node policy {path}: `{key}`: {source}")]
    Duration {
        /// The file.
        path: PathBuf,
        /// The setting.
        key: &'static str,
        /// What is wrong with it.
        source: DurationError,
    },
    /// A setting has a value outside what it allows.
    #[error("node policy {path}: `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The setting.
        key: &'static str,
        /// What was expected.
        message: String,
    },
}

/// Why a flake ref is refused by the policy.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "flake ref `{flake_ref}` is not allowed on this node; allowed prefixes: {}",
    if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") }
)]
pub struct RefNotAllowed {
    /// The canonical ref.
    pub flake_ref: String,
    /// The allowed prefixes.
    pub allowed: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PolicyFile {
    allowed_flake_prefixes: Option<Vec<String>>,
    realise: Option<Realise>,
    default_timeout: Option<String>,
    max_timeout: Option<String>,
    system: Option<String>,
    daemon_socket: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    nix_command: Option<PathBuf>,
    package_set: Option<String>,
    store_view: Option<ViewSetting>,
    view_dir: Option<PathBuf>,
}

impl Default for NodePolicy {
    fn default() -> Self {
        Self {
            allowed_flake_prefixes: DEFAULT_ALLOWED_PREFIXES
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            realise: Realise::Substitute,
            default_timeout: Duration::from_secs(120),
            max_timeout: Duration::from_secs(600),
            system: host_system(),
            daemon_socket: PathBuf::from(DEFAULT_DAEMON_SOCKET),
            state_dir: PathBuf::from("/var/lib/containix"),
            nix_command: PathBuf::from("nix"),
            package_set: None,
            store_view: ViewSetting::Auto,
            view_dir: None,
            source: None,
        }
    }
}

impl NodePolicy {
    /// Loads the policy the environment points at: `CONTAINIX_CONFIG` if set (the file must
    /// exist), else `/etc/containix/config.toml` if present, else the defaults. Then applies
    /// `NIX_DAEMON_SOCKET_PATH`.
    pub fn load() -> Result<Self, PolicyError> {
        let explicit = std::env::var_os(POLICY_PATH_ENV).filter(|v| !v.is_empty());
        let mut policy = match explicit {
            Some(path) => Self::from_file(Path::new(&path))?,
            None if Path::new(DEFAULT_POLICY_PATH).exists() => {
                Self::from_file(Path::new(DEFAULT_POLICY_PATH))?
            }
            None => Self::default(),
        };
        if let Some(socket) = std::env::var_os(DAEMON_SOCKET_ENV).filter(|v| !v.is_empty()) {
            policy.daemon_socket = PathBuf::from(socket);
        }
        Ok(policy)
    }

    /// Reads and validates one policy file.
    pub fn from_file(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses policy TOML; `path` is only used in error messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|err| PolicyError::Parse {
            path: path.to_owned(),
            message: err.message().to_owned(),
        })?;
        let defaults = Self::default();
        let duration = |key: &'static str, value: Option<String>, default: Duration| {
            value.map_or(Ok(default), |text| {
                parse_duration(&text).map_err(|source| PolicyError::Duration {
                    path: path.to_owned(),
                    key,
                    source,
                })
            })
        };
        let invalid = |key: &'static str, message: String| PolicyError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        let policy = Self {
            allowed_flake_prefixes: file
                .allowed_flake_prefixes
                .unwrap_or(defaults.allowed_flake_prefixes),
            realise: file.realise.unwrap_or(defaults.realise),
            default_timeout: duration(
                "default-timeout",
                file.default_timeout,
                defaults.default_timeout,
            )?,
            max_timeout: duration("max-timeout", file.max_timeout, defaults.max_timeout)?,
            system: file.system.unwrap_or(defaults.system),
            daemon_socket: file.daemon_socket.unwrap_or(defaults.daemon_socket),
            state_dir: file.state_dir.unwrap_or(defaults.state_dir),
            nix_command: file.nix_command.unwrap_or(defaults.nix_command),
            package_set: file.package_set,
            store_view: file.store_view.unwrap_or(defaults.store_view),
            view_dir: file.view_dir,
            source: Some(path.to_owned()),
        };
        if policy.default_timeout > policy.max_timeout {
            return Err(invalid(
                "default-timeout",
                format!(
                    "{} exceeds max-timeout {}",
                    format_duration(policy.default_timeout),
                    format_duration(policy.max_timeout)
                ),
            ));
        }
        if let Some(prefix) = policy
            .allowed_flake_prefixes
            .iter()
            .find(|p| p.is_empty() || p.starts_with('-') || p.chars().any(char::is_control))
        {
            return Err(invalid(
                "allowed-flake-prefixes",
                format!("{prefix:?} is not a flake ref prefix such as \"github:my-org/\""),
            ));
        }
        let valid_system = policy.system.split_once('-').is_some_and(|(arch, os)| {
            !arch.is_empty()
                && !os.is_empty()
                && policy
                    .system
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
        if !valid_system {
            return Err(invalid(
                "system",
                format!(
                    "{:?} is not a Nix system such as \"x86_64-linux\"",
                    policy.system
                ),
            ));
        }
        for (key, dir) in [
            ("daemon-socket", &policy.daemon_socket),
            ("state-dir", &policy.state_dir),
            ("view-dir", &policy.view_dir()),
        ] {
            if !dir.is_absolute() {
                return Err(invalid(
                    key,
                    format!("{} is not an absolute path", dir.display()),
                ));
            }
        }
        Ok(policy)
    }

    /// Where store views live: `view-dir`, else `<state-dir>/views`.
    pub fn view_dir(&self) -> PathBuf {
        self.view_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("views"))
    }

    /// Checks a flake ref, in its canonical printed form, against the allowed prefixes.
    pub fn check_flake_ref(&self, canonical: &str) -> Result<(), RefNotAllowed> {
        if self
            .allowed_flake_prefixes
            .iter()
            .any(|prefix| canonical.starts_with(prefix.as_str()))
        {
            Ok(())
        } else {
            Err(RefNotAllowed {
                flake_ref: canonical.to_owned(),
                allowed: self.allowed_flake_prefixes.clone(),
            })
        }
    }

    /// The deadline for one resolution: the pod's request, or the default, capped by the maximum.
    pub fn effective_timeout(&self, requested: Option<Duration>) -> Duration {
        requested
            .unwrap_or(self.default_timeout)
            .min(self.max_timeout)
    }
}

/// The Nix system string of the machine containix runs on.
pub fn host_system() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodePolicy, PolicyError> {
        NodePolicy::from_toml(text, Path::new("/etc/containix/config.toml"))
    }

    #[test]
    fn defaults_are_safe() {
        let policy = parse("").unwrap();
        assert_eq!(policy.realise, Realise::Substitute);
        assert!(policy.check_flake_ref("github:org/app").is_ok());
        assert!(
            policy
                .check_flake_ref("git+https://example.com/app")
                .is_ok()
        );
        for local in ["path:/etc", "git+file:///root/app", "file:///etc/shadow"] {
            let err = policy.check_flake_ref(local).unwrap_err().to_string();
            assert!(err.contains("not allowed on this node"), "{err}");
            assert!(err.contains("github:, gitlab:"), "{err}");
        }
        assert_eq!(policy.effective_timeout(None), Duration::from_secs(120));
        assert_eq!(
            policy.effective_timeout(Some(Duration::from_secs(3600))),
            Duration::from_secs(600)
        );
        assert_eq!(policy.system, host_system());
    }

    #[test]
    fn reads_every_key() {
        let policy = parse(
            r#"
            allowed-flake-prefixes = ["github:my-org/", "path:/srv/flakes/"]
            realise = "build"
            default-timeout = "30s"
            max-timeout = "5m"
            system = "aarch64-linux"
            daemon-socket = "/run/nix/socket"
            state-dir = "/srv/containix"
            nix-command = "/run/current-system/sw/bin/nix"
            package-set = "github:NixOS/nixpkgs/nixos-24.05"
            "#,
        )
        .unwrap();
        assert_eq!(policy.realise, Realise::Build);
        assert!(policy.check_flake_ref("github:my-org/app").is_ok());
        assert!(policy.check_flake_ref("github:other/app").is_err());
        assert!(policy.check_flake_ref("path:/srv/flakes/app").is_ok());
        assert_eq!(policy.default_timeout, Duration::from_secs(30));
        assert_eq!(policy.max_timeout, Duration::from_secs(300));
        assert_eq!(policy.system, "aarch64-linux");
        assert_eq!(policy.daemon_socket, Path::new("/run/nix/socket"));
        assert_eq!(policy.state_dir, Path::new("/srv/containix"));
        assert_eq!(
            policy.package_set.as_deref(),
            Some("github:NixOS/nixpkgs/nixos-24.05")
        );
    }

    #[test]
    fn refuses_bad_files_naming_the_key() {
        for (text, expected) in [
            ("realize = \"build\"", "unknown field `realize`"),
            ("realise = \"compile\"", "unknown variant `compile`"),
            (
                "default-timeout = \"soon\"",
                "`default-timeout`: duration \"soon\"",
            ),
            ("max-timeout = 30", "invalid type"),
            (
                "default-timeout = \"10m\"\nmax-timeout = \"1m\"",
                "`default-timeout`: 10m exceeds max-timeout 1m",
            ),
            (
                "allowed-flake-prefixes = [\"--impure\"]",
                "`allowed-flake-prefixes`",
            ),
            (
                "allowed-flake-prefixes = [\"\"]",
                "`allowed-flake-prefixes`",
            ),
            (
                "system = \"linux\"",
                "`system`: \"linux\" is not a Nix system",
            ),
            (
                "state-dir = \"var/lib\"",
                "`state-dir`: var/lib is not an absolute path",
            ),
            ("daemon-socket = \"sock\"", "`daemon-socket`"),
            ("realise = ", "node policy /etc/containix/config.toml"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(
                err.starts_with("node policy /etc/containix/config.toml"),
                "{err}"
            );
        }
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let err = NodePolicy::from_file(Path::new("/nonexistent/containix.toml")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/containix.toml"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod documented_file {
    use super::*;

    /// The commented policy shipped in `deploy/` parses and equals the defaults (but its source).
    #[test]
    fn deploy_policy_matches_defaults() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/node/config.toml"
        ));
        let mut policy = NodePolicy::from_file(path).unwrap();
        policy.source = None;
        assert_eq!(policy, NodePolicy::default());
        assert_eq!(std::fs::read_to_string(path).unwrap(), DOCUMENTED_DEFAULTS);
    }
}
