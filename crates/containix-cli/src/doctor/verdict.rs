//! Judging the facts: every check's status, what was found and the fix. Pure.

use std::path::PathBuf;

use containix_core::assemble::view::ViewMechanism;
use containix_core::request::view_setting::ViewSetting;
use containix_core::store::daemon::TrustStatus;

use super::check::CheckResult;
use super::facts::{
    DaemonFacts, Facts, FreeSpace, NixSettings, PolicyFacts, ShimFacts, ShimSearch, StoreViewFacts,
};
use super::tool_output;
use containix_core::node::containerd_config::{self, ContainerdConfig};

/// Below this much free space a filesystem containix writes to gets a warning.
pub const LOW_SPACE_BYTES: u64 = 1 << 30;

/// Every check's result, in the order they are printed.
pub fn evaluate(facts: &Facts) -> Vec<CheckResult> {
    let (config_path, config_text) = &facts.containerd_config;
    let config = config_text
        .as_ref()
        .map(|text| containerd_config::check(text));
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
    results.extend(facts.store_view.as_ref().map(store_view));
    results
}

fn store_view(facts: &StoreViewFacts) -> CheckResult {
    const NAME: &str = "store views";
    let probe = &facts.probe;
    let detail = format!("{}: {}", probe.mechanism, probe.reason);
    if !probe.works {
        return CheckResult::fail(
            NAME,
            detail,
            "set view-dir to a directory on the Nix store's filesystem, or store-view = \"auto\"",
        );
    }
    match (facts.setting, probe.mechanism) {
        (ViewSetting::Auto, ViewMechanism::BindTree) => CheckResult::warn(
            NAME,
            detail,
            "every store path of a closure in use is then a mount on the host, and each new \
             container copies the host's mount table: set view-dir on the Nix store's filesystem",
        ),
        _ => CheckResult::pass(NAME, detail),
    }
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
                if settings.trusted_public_keys.len() == 1 {
                    ""
                } else {
                    "s"
                }
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

fn containerd_socket(
    (socket, connected): &(std::path::PathBuf, Result<(), String>),
) -> CheckResult {
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
        Ok(output) => CheckResult::pass(
            "runc",
            format!("version {}", tool_output::runc_version(output)),
        ),
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
        ShimFacts::NotFound { searched } => {
            let dirs = joined(searched.dirs());
            let detail = match searched {
                ShimSearch::Containerd { pid, .. } => {
                    format!("{binary} is not on PATH: containerd (pid {pid}) looks in {dirs}")
                }
                ShimSearch::OwnPath { .. } => format!(
                    "{binary} is not on PATH ({dirs}; no running containerd was found on its \
                     socket, so this shell's PATH was searched)"
                ),
            };
            CheckResult::fail(
                NAME,
                detail,
                format!(
                    "run `containix node install` (puts {binary} into /usr/local/bin), or \
                     install it into another directory on containerd's PATH"
                ),
            )
        }
        ShimFacts::Found {
            binary: path,
            version,
            searched,
        } => {
            let whose = match searched {
                ShimSearch::Containerd { pid, .. } => format!("containerd's (pid {pid})"),
                ShimSearch::OwnPath { .. } => {
                    "this shell's; containerd was not found running".to_owned()
                }
            };
            match version.as_ref().map(|out| tool_output::shim_version(out)) {
                Ok(Some(version)) => CheckResult::pass(
                    NAME,
                    format!("{} version {version} (PATH: {whose})", path.display()),
                ),
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

/// Directories as a `PATH`-style list.
fn joined(dirs: &[PathBuf]) -> String {
    std::env::join_paths(dirs).map_or_else(
        |_| format!("{dirs:?}"),
        |path| path.to_string_lossy().into_owned(),
    )
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
                    containix_core::request::policy::DEFAULT_POLICY_PATH,
                    policy.state_dir.display()
                ),
            },
        ),
        Err(err) => CheckResult::fail(
            "node policy",
            err.clone(),
            "correct the named key (deploy/node/policy.toml documents every key)",
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

#[cfg(test)]
mod tests {

    use super::super::check::{Status, blocks_pods};
    use super::super::facts::DaemonSummary;
    use super::*;

    const GOOD_CONFIG: &str = r#"
version = 2
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.containix]
    runtime_type = "io.containerd.containix.v1"
    pod_annotations = ["containix.dev/*"]
"#;

    /// A node where everything is in order.
    fn healthy() -> Facts {
        Facts {
            daemon: DaemonFacts {
                socket: PathBuf::from("/nix/var/nix/daemon-socket/socket"),
                handshake: Ok(DaemonSummary {
                    daemon_protocol: "1.34".into(),
                    protocol: "1.34".into(),
                    nix_version: Some("2.8.0".into()),
                    trust: TrustStatus::Trusted,
                }),
            },
            nix_settings: Ok(NixSettings {
                substituters: vec!["https://cache.example".into()],
                trusted_public_keys: vec!["cache.example-1:AAAA".into()],
            }),
            containerd_version: Ok(
                "containerd github.com/containerd/containerd 1.6.20~ds1 x\n".into()
            ),
            containerd_config: (
                PathBuf::from("/etc/containerd/config.toml"),
                Ok(GOOD_CONFIG.into()),
            ),
            containerd_socket: (PathBuf::from("/run/containerd/containerd.sock"), Ok(())),
            runc_version: Ok("runc version 1.1.5\n".into()),
            shim: ShimFacts::Found {
                binary: PathBuf::from("/usr/local/bin/containerd-shim-containix-v1"),
                version: Ok("containerd-shim-containix-v1 0.1.0\n".into()),
                searched: ShimSearch::Containerd {
                    pid: 4242,
                    dirs: vec![PathBuf::from("/usr/local/bin"), PathBuf::from("/usr/bin")],
                },
            },
            cgroup_v2: true,
            policy: Ok(PolicyFacts {
                source: None,
                state_dir: PathBuf::from("/var/lib/containix"),
            }),
            free_space: vec![FreeSpace {
                name: "store space",
                path: PathBuf::from("/nix/store"),
                available: Ok(10 << 30),
            }],
            can_lower_oom_score_adj: Ok(false),
            store_view: None,
        }
    }

    fn find<'a>(results: &'a [CheckResult], name: &str) -> &'a CheckResult {
        results.iter().find(|r| r.name == name).unwrap()
    }

    #[test]
    fn a_healthy_node_passes_every_check() {
        let results = evaluate(&healthy());
        for result in &results {
            assert_eq!(result.status, Status::Pass, "{result:?}");
            assert_eq!(result.fix, None);
        }
        assert!(!blocks_pods(&results));
        assert!(find(&results, "shim").detail.contains("version 0.1.0"));
        assert!(find(&results, "nix-daemon").detail.contains("Nix 2.8.0"));
    }

    #[test]
    fn warnings_do_not_block_pods() {
        let mut facts = healthy();
        facts.nix_settings = Ok(NixSettings::default());
        facts.cgroup_v2 = false;
        facts.free_space[0].available = Ok(100 << 20);
        facts.daemon.handshake.as_mut().unwrap().trust = TrustStatus::NotTrusted;
        let results = evaluate(&facts);
        for name in ["substituters", "cgroups", "store space", "nix trust"] {
            let result = find(&results, name);
            assert_eq!(result.status, Status::Warn, "{result:?}");
            assert!(result.fix.is_some());
        }
        assert!(find(&results, "store space").detail.contains("100.0 MiB"));
        assert!(!blocks_pods(&results));
    }

    #[test]
    fn an_unreachable_daemon_fails_with_a_fix() {
        let mut facts = healthy();
        facts.daemon.handshake = Err("connection refused".into());
        let results = evaluate(&facts);
        let daemon = find(&results, "nix-daemon");
        assert_eq!(daemon.status, Status::Fail);
        assert!(daemon.detail.contains("connection refused"));
        assert!(
            daemon
                .fix
                .as_ref()
                .unwrap()
                .contains("NIX_DAEMON_SOCKET_PATH")
        );
        assert!(results.iter().all(|r| r.name != "nix trust"));
        assert!(blocks_pods(&results));
    }

    #[test]
    fn a_config_without_the_handler_fails_naming_the_table() {
        let mut facts = healthy();
        facts.containerd_config.1 = Ok("version = 2\n".into());
        let results = evaluate(&facts);
        let config = find(&results, "containerd config");
        assert_eq!(config.status, Status::Fail);
        assert!(config.detail.contains("no `containix` runtime handler"));
        assert!(
            config
                .fix
                .as_ref()
                .unwrap()
                .contains("io.containerd.containix.v1")
        );
        // Without a readable config the oom hint cannot see restrict_oom_score_adj.
        assert_eq!(find(&results, "oom_score_adj").status, Status::Warn);
        assert!(blocks_pods(&results));
    }

    #[test]
    fn missing_tools_fail() {
        let mut facts = healthy();
        facts.containerd_version = Err("cannot run containerd: not found".into());
        facts.runc_version = Err("cannot run runc: not found".into());
        facts.shim = ShimFacts::NotFound {
            searched: ShimSearch::Containerd {
                pid: 4242,
                dirs: vec![PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")],
            },
        };
        facts.containerd_socket.1 = Err("connection refused".into());
        facts.policy = Err("node policy /etc/containix/policy.toml: unknown field `x`".into());
        let results = evaluate(&facts);
        for name in [
            "containerd",
            "runc",
            "shim",
            "containerd socket",
            "node policy",
        ] {
            assert_eq!(find(&results, name).status, Status::Fail, "{name}");
        }
        assert!(find(&results, "node policy").detail.contains("policy.toml"));
    }

    #[test]
    fn the_shim_check_says_whose_path_was_searched() {
        let results = evaluate(&healthy());
        let found = find(&results, "shim");
        assert!(
            found.detail.contains("PATH: containerd's (pid 4242)"),
            "{found:?}"
        );

        let mut facts = healthy();
        facts.shim = ShimFacts::NotFound {
            searched: ShimSearch::Containerd {
                pid: 4242,
                dirs: vec![PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")],
            },
        };
        let missing = evaluate(&facts);
        let missing = find(&missing, "shim");
        assert_eq!(
            missing.detail,
            "containerd-shim-containix-v1 is not on PATH: containerd (pid 4242) looks in \
             /usr/sbin:/usr/bin"
        );
        assert!(
            missing
                .fix
                .as_ref()
                .unwrap()
                .contains("containix node install")
        );

        facts.shim = ShimFacts::NotFound {
            searched: ShimSearch::OwnPath {
                dirs: vec![PathBuf::from("/bin")],
            },
        };
        let own = evaluate(&facts);
        let own = find(&own, "shim");
        assert!(
            own.detail.contains("(/bin; no running containerd"),
            "{own:?}"
        );
        assert!(
            own.detail.contains("this shell's PATH was searched"),
            "{own:?}"
        );
    }

    #[test]
    fn oom_hint_depends_on_the_host_and_the_cri_config() {
        let mut facts = healthy();
        let config = GOOD_CONFIG.replace("restrict_oom_score_adj = true", "");
        facts.containerd_config.1 = Ok(config);
        let results = evaluate(&facts);
        let hint = find(&results, "oom_score_adj");
        assert_eq!(hint.status, Status::Warn);
        assert!(
            hint.fix
                .as_ref()
                .unwrap()
                .contains("restrict_oom_score_adj = true")
        );
        facts.can_lower_oom_score_adj = Ok(true);
        assert_eq!(
            find(&evaluate(&facts), "oom_score_adj").status,
            Status::Pass
        );
    }

    #[test]
    fn human_sizes_use_binary_units() {
        assert_eq!(human(512), "512.0 B");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }

    #[test]
    fn store_views_pass_as_link_farms_and_warn_as_a_fallback_bind_tree() {
        use containix_core::assemble::view::ViewMechanism;
        use containix_core::assemble::view::mechanism::Probe;
        let mut facts = healthy();
        let case = |setting, mechanism, works| StoreViewFacts {
            setting,
            probe: Probe {
                mechanism,
                reason: "because".into(),
                works,
            },
        };
        for (setting, mechanism, works, expected) in [
            (
                ViewSetting::Auto,
                ViewMechanism::LinkFarm,
                true,
                Status::Pass,
            ),
            (
                ViewSetting::Auto,
                ViewMechanism::BindTree,
                true,
                Status::Warn,
            ),
            (
                ViewSetting::BindTree,
                ViewMechanism::BindTree,
                true,
                Status::Pass,
            ),
            (
                ViewSetting::LinkFarm,
                ViewMechanism::LinkFarm,
                false,
                Status::Fail,
            ),
        ] {
            facts.store_view = Some(case(setting, mechanism, works));
            let results = evaluate(&facts);
            let check = find(&results, "store views");
            assert_eq!(
                check.status, expected,
                "{setting:?} {mechanism:?}: {check:?}"
            );
            assert!(check.detail.starts_with(mechanism.as_str()), "{check:?}");
        }
    }
}
