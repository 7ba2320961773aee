//! Judging the facts: every check's status, what was found and the fix. Pure.

use containix_core::daemon::TrustStatus;

use super::check::CheckResult;
use super::containerd_config::{self, ContainerdConfig};
use super::facts::{DaemonFacts, Facts, FreeSpace, NixSettings, PolicyFacts, ShimFacts};
use super::tool_output;

/// Below this much free space a filesystem containix writes to gets a warning.
pub const LOW_SPACE_BYTES: u64 = 1 << 30;

/// Every check's result, in the order they are printed.
pub fn evaluate(facts: &Facts) -> Vec<CheckResult> {
    let (config_path, config_text) = &facts.containerd_config;
    let config = config_text.as_ref().map(|text| containerd_config::check(text));
    let config_check = match &config {
        Err(err) => CheckResult::fail(
            "containerd config",
            format!("{}: {err}", config_path.display()),
            "pass the config containerd runs with as --containerd-config, or create it with \
             `containerd config default` and add the containix handler",
        ),
        Ok(Err(problem)) => CheckResult::fail(
            "containerd config",
            format!("{}: {problem}", config_path.display()),
            problem.fix(),
        ),
        Ok(Ok(config)) => CheckResult::pass(
            "containerd config",
            format!(
                "{} (version {}): [{}] runs {} with pod annotations {}",
                config_path.display(),
                config.version,
                config.handler_table,
                containerd_config::RUNTIME_TYPE,
                containerd_config::POD_ANNOTATIONS
            ),
        ),
    };
    let parsed = match &config {
        Ok(Ok(config)) => Some(config),
        _ => None,
    };

    let mut results = daemon(&facts.daemon);
    results.push(substituters(&facts.nix_settings));
    results.push(containerd(&facts.containerd_version));
    results.push(config_check);
    results.push(containerd_socket(&facts.containerd_socket));
    results.push(runc(&facts.runc_version));
    results.push(shim(&facts.shim));
    results.push(cgroups(facts.cgroup_v2));
    results.push(policy(&facts.policy));
    results.extend(facts.free_space.iter().map(free_space));
    results.push(oom_score_adj(&facts.can_lower_oom_score_adj, parsed));
    results
}

fn daemon(facts: &DaemonFacts) -> Vec<CheckResult> {
    let socket = facts.socket.display();
    match &facts.handshake {
        Err(err) => vec![CheckResult::fail(
            "nix-daemon",
            format!("{socket}: {err}"),
            "start nix-daemon (systemctl start nix-daemon), or point NIX_DAEMON_SOCKET_PATH or \
             the policy's daemon-socket at its socket",
        )],
        Ok(summary) => {
            let version = summary.nix_version.as_deref().unwrap_or("unknown");
            let reachable = CheckResult::pass(
                "nix-daemon",
                format!(
                    "{socket}: Nix {version}, protocol {} (in use: {})",
                    summary.daemon_protocol, summary.protocol
                ),
            );
            let trust = match summary.trust {
                TrustStatus::Trusted => CheckResult::pass("nix trust", "trusted user"),
                TrustStatus::Unknown => CheckResult::pass(
                    "nix trust",
                    format!(
                        "not reported (protocol {} predates 1.35); containix needs no trust",
                        summary.protocol
                    ),
                ),
                TrustStatus::NotTrusted => CheckResult::warn(
                    "nix trust",
                    "not a trusted user: substituting and building work, unsigned imports and \
                     repairs are refused",
                    "add this user to `trusted-users` in nix.conf if you import unsigned paths",
                ),
            };
            vec![reachable, trust]
        }
    }
}

fn substituters(settings: &Result<NixSettings, String>) -> CheckResult {
    const NAME: &str = "substituters";
    match settings {
        Err(err) => CheckResult::warn(
            NAME,
            format!("could not read Nix's settings: {err}"),
            "check that `nix show-config --json` works for the policy's nix-command",
        ),
        Ok(settings) if settings.substituters.is_empty() => CheckResult::warn(
            NAME,
            "no substituter: closures must already be in the store or be built on the node",
            "list a binary cache in `substituters` and its key in `trusted-public-keys` in nix.conf",
        ),
        Ok(settings) if settings.trusted_public_keys.is_empty() => CheckResult::warn(
            NAME,
            format!(
                "{} but no trusted public key: signed paths are refused",
                settings.substituters.join(" ")
            ),
            "add each cache's key to `trusted-public-keys` in nix.conf",
        ),
        Ok(settings) => CheckResult::pass(
            NAME,
            format!(
                "{} ({} trusted key{})",
                settings.substituters.join(" "),
                settings.trusted_public_keys.len(),
                if settings.trusted_public_keys.len() == 1 { "" } else { "s" }
            ),
        ),
    }
}

fn containerd(version: &Result<String, String>) -> CheckResult {
    match version {
        Ok(output) => CheckResult::pass(
            "containerd",
            format!("version {}", tool_output::containerd_version(output)),
        ),
        Err(err) => CheckResult::fail(
            "containerd",
            format!("`containerd --version`: {err}"),
            "install containerd 1.6 or later (Debian: apt-get install containerd)",
        ),
    }
}

fn containerd_socket((socket, connected): &(std::path::PathBuf, Result<(), String>)) -> CheckResult {
    match connected {
        Ok(()) => CheckResult::pass("containerd socket", format!("{} accepts", socket.display())),
        Err(err) => CheckResult::fail(
            "containerd socket",
            format!("{}: {err}", socket.display()),
            "start containerd, or pass the socket it listens on as --containerd-address",
        ),
    }
}

fn runc(version: &Result<String, String>) -> CheckResult {
    match version {
        Ok(output) => {
            CheckResult::pass("runc", format!("version {}", tool_output::runc_version(output)))
        }
        Err(err) => CheckResult::fail(
            "runc",
            format!("`runc --version`: {err}"),
            "install runc (Debian: apt-get install runc)",
        ),
    }
}

fn shim(facts: &ShimFacts) -> CheckResult {
    const NAME: &str = "shim";
    let binary = containerd_config::SHIM_BINARY;
    match facts {
        ShimFacts::NotFound { path_var } => CheckResult::fail(
            NAME,
            format!("{binary} is not on PATH ({path_var})"),
            format!("install {binary} into a directory on containerd's PATH, e.g. /usr/local/bin"),
        ),
        ShimFacts::Found { binary: path, version } => {
            match version.as_ref().map(|out| tool_output::shim_version(out)) {
                Ok(Some(version)) => {
                    CheckResult::pass(NAME, format!("{} version {version}", path.display()))
                }
                Ok(None) => CheckResult::fail(
                    NAME,
                    format!("{}: `-v` printed nothing", path.display()),
                    format!("reinstall {binary} from this containix release"),
                ),
                Err(err) => CheckResult::fail(
                    NAME,
                    format!("{}: `-v` failed: {err}", path.display()),
                    format!("reinstall {binary} from this containix release"),
                ),
            }
        }
    }
}

fn cgroups(v2: bool) -> CheckResult {
    if v2 {
        CheckResult::pass("cgroups", "v2 (unified hierarchy)")
    } else {
        CheckResult::warn(
            "cgroups",
            "v1 (no /sys/fs/cgroup/cgroup.controllers)",
            "boot with systemd.unified_cgroup_hierarchy=1 for cgroup v2; v1 works but is \
             deprecated by Kubernetes",
        )
    }
}

fn policy(policy: &Result<PolicyFacts, String>) -> CheckResult {
    match policy {
        Ok(policy) => CheckResult::pass(
            "node policy",
            match &policy.source {
                Some(file) => format!(
                    "{} is valid; state dir {}",
                    file.display(),
                    policy.state_dir.display()
                ),
                None => format!(
                    "no {}: the safe defaults apply; state dir {}",
                    containix_core::policy::DEFAULT_POLICY_PATH,
                    policy.state_dir.display()
                ),
            },
        ),
        Err(err) => CheckResult::fail(
            "node policy",
            err.clone(),
            "correct the named key (deploy/node/config.toml documents every key)",
        ),
    }
}

fn free_space(space: &FreeSpace) -> CheckResult {
    let name = space.name;
    let path = space.path.display();
    match space.available {
        Err(ref err) => CheckResult::warn(
            name,
            format!("{path}: {err}"),
            format!("make sure {path} exists and is readable"),
        ),
        Ok(bytes) if bytes < LOW_SPACE_BYTES => CheckResult::warn(
            name,
            format!("{path}: only {} free", human(bytes)),
            format!("free space on {path} (nix-collect-garbage) or grow the filesystem"),
        ),
        Ok(bytes) => CheckResult::pass(name, format!("{path}: {} free", human(bytes))),
    }
}

fn oom_score_adj(
    can_lower: &Result<bool, String>,
    config: Option<&ContainerdConfig>,
) -> CheckResult {
    const NAME: &str = "oom_score_adj";
    let restricted = config.and_then(|c| c.restrict_oom_score_adj) == Some(true);
    match can_lower {
        Ok(true) => CheckResult::pass(NAME, "this host can lower oom_score_adj"),
        Ok(false) if restricted => CheckResult::pass(
            NAME,
            "this host cannot lower oom_score_adj; CRI has restrict_oom_score_adj = true",
        ),
        Ok(false) => CheckResult::warn(
            NAME,
            "this host cannot lower oom_score_adj (a VM or container?): runc may fail pod \
             sandboxes with \"failed to update /proc/self/oom_score_adj\"",
            "set restrict_oom_score_adj = true in containerd's CRI plugin section",
        ),
        Err(err) => CheckResult::pass(NAME, format!("not tried: {err}")),
    }
}

/// `bytes` in binary units with one decimal.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
