//! Gathering the [`Facts`]: running the tools (as argument vectors), reading files, connecting
//! sockets. No judgement here.

use std::ffi::OsStr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use containix_core::assemble::view::mechanism;
use containix_core::request::policy::NodePolicy;
use containix_core::store::daemon::DaemonClient;

use super::containerd_process;
use super::facts::{
    DaemonFacts, DaemonSummary, Facts, FreeSpace, NixSettings, PolicyFacts, ShimFacts, ShimSearch,
    StoreViewFacts,
};
use super::tool_output;
use containix_core::node::containerd_config::{self, DEFAULT_ADDRESS, SHIM_BINARY};

/// Upper bound on the daemon handshake, so a wedged daemon cannot hang the doctor.
const DAEMON_LIMIT: Duration = Duration::from_secs(10);
/// The Nix store.
const STORE_DIR: &str = "/nix/store";

/// Where to look for containerd.
pub struct ContainerdTarget {
    /// Its config file.
    pub config: PathBuf,
    /// Its gRPC socket; none means the config's `grpc.address`, else the default.
    pub address: Option<PathBuf>,
}

/// Gathers every fact the checks judge.
pub fn gather(target: &ContainerdTarget) -> Facts {
    let policy = NodePolicy::load();
    let daemon_socket = match &policy {
        Ok(policy) => policy.daemon_socket.clone(),
        Err(_) => containix_core::store::daemon::socket_path(),
    };
    let nix_command = match &policy {
        Ok(policy) => policy.nix_command.clone(),
        Err(_) => PathBuf::from("nix"),
    };
    let state_dir = match &policy {
        Ok(policy) => policy.state_dir.clone(),
        Err(_) => NodePolicy::default().state_dir,
    };

    let store_view = policy.as_ref().ok().map(|policy| StoreViewFacts {
        setting: policy.store_view,
        probe: mechanism::probe(policy.store_view, &policy.view_dir(), Path::new(STORE_DIR)),
    });

    let config_text = std::fs::read_to_string(&target.config).map_err(|err| err.to_string());
    let socket = target.address.clone().unwrap_or_else(|| {
        config_text
            .as_ref()
            .ok()
            .and_then(|text| containerd_config::grpc_address(text))
            .map_or_else(|| PathBuf::from(DEFAULT_ADDRESS), PathBuf::from)
    });
    let socket_connect = UnixStream::connect(&socket)
        .map(drop)
        .map_err(|err| err.to_string());

    Facts {
        daemon: daemon(daemon_socket),
        nix_settings: nix_settings(&nix_command),
        containerd_version: output("containerd", ["--version"]),
        containerd_config: (target.config.clone(), config_text),
        runc_version: output("runc", ["--version"]),
        shim: shim(&socket),
        containerd_socket: (socket, socket_connect),
        cgroup_v2: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        policy: policy
            .map(|policy| PolicyFacts {
                source: policy.source,
                state_dir: policy.state_dir,
            })
            .map_err(|err| err.to_string()),
        free_space: vec![
            free_space("store space", Path::new(STORE_DIR)),
            free_space("state dir space", &state_dir),
        ],
        can_lower_oom_score_adj: can_lower_oom_score_adj(),
        store_view,
    }
}

fn daemon(socket: PathBuf) -> DaemonFacts {
    let handshake = crate::runtime::runtime()
        .map_err(|err| err.to_string())
        .and_then(|runtime| {
            runtime.block_on(async {
                match tokio::time::timeout(DAEMON_LIMIT, DaemonClient::connect(&socket)).await {
                    Err(_) => Err(format!("no handshake within {DAEMON_LIMIT:?}")),
                    Ok(Err(err)) => Err(err.to_string()),
                    Ok(Ok(client)) => {
                        let info = client.info();
                        Ok(DaemonSummary {
                            daemon_protocol: info.daemon_protocol.to_string(),
                            protocol: info.protocol.to_string(),
                            nix_version: info.nix_version.clone(),
                            trust: info.trust,
                        })
                    }
                }
            })
        });
    DaemonFacts { socket, handshake }
}

/// Nix's settings: `nix show-config --json` (Nix 2.8 and later), else `nix config show --json`
/// (the newer spelling).
fn nix_settings(nix: &Path) -> Result<NixSettings, String> {
    let feature = ["--extra-experimental-features", "nix-command"];
    let first = output(nix, feature.iter().chain(&["show-config", "--json"]));
    let text = first.or_else(|first_err| {
        output(nix, feature.iter().chain(&["config", "show", "--json"])).map_err(|_| first_err)
    })?;
    tool_output::nix_settings(&text)
}

/// Runs `program args` and returns its stdout, or a one-line reason it failed.
fn output<I, S>(program: impl AsRef<OsStr>, args: I) -> Result<String, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let program = program.as_ref();
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|err| format!("cannot run {}: {err}", program.to_string_lossy()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        Err(format!("exited with {}: {}", out.status, last.trim()))
    }
}

/// Looks for the shim where the containerd on `socket` will (its `PATH`, then its own
/// directory), or on this process's `PATH` when no running containerd is found.
fn shim(socket: &Path) -> ShimFacts {
    let searched = match containerd_process::find(socket) {
        Some(process) => ShimSearch::Containerd {
            pid: process.pid,
            dirs: process.shim_dirs(),
        },
        None => ShimSearch::OwnPath {
            dirs: std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect(),
        },
    };
    let found = searched
        .dirs()
        .iter()
        .map(|dir| dir.join(SHIM_BINARY))
        .find(|candidate| is_executable(candidate));
    match found {
        None => ShimFacts::NotFound { searched },
        Some(binary) => ShimFacts::Found {
            version: output(&binary, ["-v"]),
            binary,
            searched,
        },
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Free space where `dir` lives, measured at its nearest existing ancestor (the state dir may
/// not exist before the first pod).
fn free_space(name: &'static str, dir: &Path) -> FreeSpace {
    let path = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_owned();
    let available = nix::sys::statvfs::statvfs(&path)
        .map(|stat| stat.blocks_available().saturating_mul(stat.fragment_size()))
        .map_err(|err| format!("statvfs: {err}"));
    FreeSpace {
        name,
        path,
        available,
    }
}

/// Tries to lower this process's `oom_score_adj` by one and restores it: whether runc could
/// lower a sandbox's score on this host.
fn can_lower_oom_score_adj() -> Result<bool, String> {
    const FILE: &str = "/proc/self/oom_score_adj";
    if !nix::unistd::geteuid().is_root() {
        return Err("only root can tell (run the doctor as root)".to_owned());
    }
    let current: i32 = std::fs::read_to_string(FILE)
        .map_err(|err| format!("{FILE}: {err}"))?
        .trim()
        .parse()
        .map_err(|err| format!("{FILE}: {err}"))?;
    if current <= -1000 {
        return Ok(true);
    }
    match std::fs::write(FILE, (current - 1).to_string()) {
        Ok(()) => {
            // Raising back is always allowed.
            let _ = std::fs::write(FILE, current.to_string());
            Ok(true)
        }
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => Ok(false),
        Err(err) => Err(format!("{FILE}: {err}")),
    }
}
