//! `containix node install|uninstall`: set up (or remove) containix on a node that is not
//! NixOS, from a shell on the node or from the installer DaemonSet.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use serde_json::json;

use crate::doctor::tool_output::containerd_version;
use crate::host::Host;
use crate::line_diff;
use containix_core::image::oci_image::{EMPTY_IMAGE_NAME, empty_image};
use containix_core::node::containerd_config::{self, SHIM_BINARY, version_for_containerd_major};
use containix_core::node::install::{
    ConfigForm, ContainerdFlavor, DEFAULT_SHIM_DIR, NodePaths, NodePlan, NodeState, NodeStep,
    TemplateDir, apply, choose_template, detect_flavor, plan_install, plan_uninstall,
    standalone_config, under_root,
};
use containix_core::request::policy::DEFAULT_POLICY_PATH;

const EXIT_STATUS: &str = "\
Exit status:
  0  done (or nothing to do)
  1  failure: nothing was changed, or the changes made so far are safe to complete by running
     the command again (the error says which step failed)
  2  usage error (bad or missing arguments)";

/// Install containix on this node, or remove it (for nodes that are not NixOS).
#[derive(clap::Args)]
#[command(after_help = format!(
    "Examples:\n  containix node install --dry-run\n  containix node install\n  containix node uninstall\n\n{EXIT_STATUS}"
))]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Put the shim on containerd's PATH, add the `containix` runtime handler to containerd's
    /// config (keeping every other setting and comment; on k3s and RKE2, to the config template
    /// they render it from), write the default node policy if there is none, and restart
    /// containerd if its config changed. Running it again changes nothing.
    #[command(after_help = format!(
        "Examples:\n  containix node install --dry-run\n  containix node install --containerd-config /etc/containerd/config.toml --shim-dir /usr/local/bin\n  containix node install --flavor k3s --dry-run   # k3s: the handler goes into config-v3.toml.tmpl\n  containix node install --host-root /host --wait     # in the installer DaemonSet\n\n{EXIT_STATUS}"
    ))]
    Install(InstallArgs),
    /// Remove the runtime handler from containerd's config and the shim from its PATH (and with
    /// --purge the node policy), restarting containerd if its config changed. The state dir
    /// (/var/lib/containix: GC roots of running containers) is left for you to remove.
    #[command(after_help = format!(
        "Examples:\n  containix node uninstall --dry-run\n  containix node uninstall --purge\n\n{EXIT_STATUS}"
    ))]
    Uninstall(UninstallArgs),
}

/// Where things are on the node, and how to apply changes.
#[derive(clap::Args)]
pub struct Common {
    /// Which containerd the node runs: a standalone one, or k3s's or RKE2's (whose config is
    /// rendered from a template at every start). auto: k3s or RKE2 when its agent's containerd
    /// folder (/var/lib/rancher/{k3s,rke2}/agent/etc/containerd) exists, else containerd.
    #[arg(long, value_enum, default_value_t = Flavor::Auto)]
    pub flavor: Flavor,
    /// containerd's config file, or the k3s/RKE2 template (`*.tmpl`) to edit (a node path)
    /// [default: /etc/containerd/config.toml; on k3s and RKE2 the template they read,
    /// config-v3.toml.tmpl or config.toml.tmpl in the agent's containerd folder].
    #[arg(long, value_name = "PATH")]
    pub containerd_config: Option<PathBuf>,
    /// The directory the shim goes into; must be on containerd's PATH (a node path).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_SHIM_DIR)]
    pub shim_dir: PathBuf,
    /// The node policy file (a node path).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_POLICY_PATH)]
    pub policy: PathBuf,
    /// The host's `/` is mounted here (running in the installer pod, which needs hostPID):
    /// node paths are read under it and containerd is restarted in the host's namespace.
    #[arg(long, value_name = "DIR")]
    pub host_root: Option<PathBuf>,
    /// Whether to restart containerd when its config changed.
    #[arg(long, value_enum, default_value_t = Restart::Auto)]
    pub restart: Restart,
    /// containerd's gRPC socket, used to import the empty image (a node path) [default: the
    /// config's grpc.address, else /run/containerd/containerd.sock; k3s and RKE2:
    /// /run/k3s/containerd/containerd.sock].
    #[arg(long, value_name = "PATH")]
    pub containerd_address: Option<PathBuf>,
    /// The systemd unit to restart [default: containerd; k3s: k3s or k3s-agent, RKE2:
    /// rke2-server or rke2-agent, whichever is active].
    #[arg(long, value_name = "NAME")]
    pub containerd_unit: Option<String>,
    /// Print what would change (with a diff of containerd's config) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON: the steps, whether anything changed, and what happened to
    /// containerd.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub common: Common,
    /// The shim binary to install [default: containerd-shim-containix-v1 next to this program].
    #[arg(long, value_name = "PATH")]
    pub shim: Option<PathBuf>,
    /// The config version to write when containerd has no config file (2 for containerd 1.x,
    /// 3 for 2.x) [default: from `containerd --version`; on k3s and RKE2 with no template yet,
    /// the version of the config they rendered].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(2..=3))]
    pub config_version: Option<i64>,
    /// After installing, keep running until SIGTERM or SIGINT (the DaemonSet's container).
    #[arg(long)]
    pub wait: bool,
}

#[derive(clap::Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub common: Common,
    /// Also remove the node policy file, and its directory once empty.
    #[arg(long)]
    pub purge: bool,
    /// After uninstalling, keep running until SIGTERM or SIGINT (the uninstall DaemonSet).
    #[arg(long)]
    pub wait: bool,
}

/// Which containerd the node runs.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Flavor {
    /// Detect it.
    Auto,
    /// A standalone containerd with its own config file.
    Containerd,
    /// The containerd k3s runs.
    K3s,
    /// The containerd RKE2 runs.
    Rke2,
}

/// When to restart containerd.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Restart {
    /// `systemctl restart <unit>` when the config changed (running containers keep running).
    Auto,
    /// Never; say that a restart is needed.
    Never,
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.action {
        Action::Install(args) => {
            install(&args)?;
            if args.wait {
                wait_for_termination()?;
            }
        }
        Action::Uninstall(args) => {
            uninstall(&args)?;
            if args.wait {
                wait_for_termination()?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn install(args: &InstallArgs) -> Result<()> {
    let common = &args.common;
    let node = node(common, args.config_version)?;
    let shim = match &args.shim {
        Some(shim) => shim.clone(),
        None => std::env::current_exe()
            .context("finding this program to locate the shim next to it (pass --shim)")?
            .with_file_name(SHIM_BINARY),
    };
    let state = NodeState::read(&node.paths, Some(&shim))?;
    let version = match (
        args.config_version,
        &state.containerd_config,
        node.paths.config_form,
    ) {
        (Some(version), _, _) => version,
        // Unused: the file's own version, or the template's, decides.
        (None, Some(_), _) | (None, None, ConfigForm::Template { .. }) => 2,
        (None, None, ConfigForm::Toml) => detect_config_version(&node.host)?,
    };
    let plan = plan_install(&node.paths, &state, &shim, version)?;
    finish("install", common, &node, &plan, true)
}

fn uninstall(args: &UninstallArgs) -> Result<()> {
    let common = &args.common;
    // With no template at all there is nothing to remove; any name will do.
    let node = node(common, Some(3))?;
    let state = NodeState::read(&node.paths, None)?;
    let plan = plan_uninstall(&node.paths, &state, args.purge)?;
    finish("uninstall", common, &node, &plan, false)
}

/// The node being set up: where programs run, which containerd it has, where its files are.
struct Node {
    host: Host,
    flavor: ContainerdFlavor,
    paths: NodePaths,
}

/// The node from the flags. `config_version` picks a new k3s/RKE2 template's version.
fn node(common: &Common, config_version: Option<i64>) -> Result<Node> {
    if let Some(root) = &common.host_root
        && !root.is_dir()
    {
        bail!("--host-root {}: not a directory", root.display());
    }
    let seen = |path: &Path| -> Result<PathBuf> {
        Ok(match &common.host_root {
            Some(root) => under_root(root, path)?,
            None => path.to_owned(),
        })
    };
    let flavor = match common.flavor {
        Flavor::Auto => {
            let dirs: Vec<(PathBuf, bool)> = ContainerdFlavor::ALL
                .iter()
                .filter_map(|flavor| flavor.template_dir())
                .map(|dir| Ok((dir.to_owned(), seen(dir)?.is_dir())))
                .collect::<Result<_>>()?;
            detect_flavor(|dir| dirs.iter().any(|(known, exists)| known == dir && *exists))
        }
        Flavor::Containerd => ContainerdFlavor::Standalone,
        Flavor::K3s => ContainerdFlavor::K3s,
        Flavor::Rke2 => ContainerdFlavor::Rke2,
    };
    let (containerd_config, config_form) = match (&common.containerd_config, flavor.template_dir())
    {
        (Some(path), _) => (path.clone(), ConfigForm::of_path(path)),
        (None, None) => standalone_config(),
        (None, Some(dir)) => {
            choose_template(dir, &TemplateDir::read(&seen(dir)?)?, config_version)?
        }
    };
    let paths = NodePaths {
        containerd_config,
        config_form,
        shim_dir: common.shim_dir.clone(),
        policy: common.policy.clone(),
    };
    match &common.host_root {
        None => Ok(Node {
            host: Host::local(),
            flavor,
            paths,
        }),
        Some(root) => Ok(Node {
            host: Host::through_pid1(root),
            flavor,
            paths: paths.under_root(root)?,
        }),
    }
}

/// The config version containerd writes by default, from `containerd --version`.
fn detect_config_version(host: &Host) -> Result<i64> {
    let output = host
        .run("containerd", &["--version"])
        .context("there is no containerd config file, so its version must come from `containerd --version` (or pass --config-version 2|3)")?;
    let version = containerd_version(&String::from_utf8_lossy(&output.stdout));
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|major| major.parse::<u64>().ok())
        .with_context(|| {
            format!("containerd --version printed {version:?}; pass --config-version 2|3")
        })?;
    Ok(version_for_containerd_major(major))
}

/// Prints the plan, applies it unless `--dry-run`, restarts containerd if needed, and (for an
/// install) makes sure containerd has the empty image.
fn finish(
    action: &str,
    common: &Common,
    node: &Node,
    plan: &NodePlan,
    with_image: bool,
) -> Result<()> {
    if !common.dry_run {
        apply(plan)?;
    }
    let units: Vec<String> = match &common.containerd_unit {
        Some(unit) => vec![unit.clone()],
        None => node
            .flavor
            .units()
            .iter()
            .map(|u| (*u).to_owned())
            .collect(),
    };
    let restart = if !plan.restart_containerd {
        ContainerdRestart::NotNeeded
    } else if common.restart == Restart::Never {
        ContainerdRestart::Needed {
            units,
            dry_run: common.dry_run,
        }
    } else if common.dry_run {
        ContainerdRestart::WouldRestart { units }
    } else {
        ContainerdRestart::Restarted {
            unit: restart_containerd(&node.host, &units)?,
        }
    };
    let image = if with_image {
        ensure_empty_image(common, node)?
    } else {
        ImageState::NotChecked
    };
    if common.json {
        let steps: Vec<_> = plan
            .steps
            .iter()
            .map(|step| {
                json!({
                    "action": step.action(),
                    "path": step.path(),
                    "detail": step.describe(),
                })
            })
            .collect();
        let value = json!({
            "action": action,
            "flavor": node.flavor.id(),
            "dryRun": common.dry_run,
            "changed": !plan.is_empty(),
            "steps": steps,
            "containerd": restart.label(),
            "emptyImage": image.label(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    if let ConfigForm::Template { .. } = node.paths.config_form {
        println!(
            "{}: containerd's config is rendered from {} at every start",
            node.flavor.name(),
            node.paths.containerd_config.display()
        );
    }
    print!("{}", report(action, common, plan, &restart));
    if let Some(line) = image.describe() {
        println!("{line}");
    }
    Ok(())
}

/// Restarts the first of `units` that is active (the only one when there is one), and says
/// which.
fn restart_containerd(host: &Host, units: &[String]) -> Result<String> {
    let unit = match units {
        [unit] => unit.clone(),
        _ => units
            .iter()
            .find(|unit| {
                host.output("systemctl", &["is-active", "--quiet", unit])
                    .is_ok_and(|output| output.status.success())
            })
            .cloned()
            .with_context(|| {
                format!(
                    "containerd's config changed, but none of {} is active to restart; restart \
                     the one that runs containerd yourself (or pass --containerd-unit)",
                    units.join(", ")
                )
            })?,
    };
    host.run("systemctl", &["restart", &unit])
        .with_context(|| {
            format!(
                "containerd's config changed but restarting it failed; restart it yourself \
             (`systemctl restart {unit}`) so it loads the containix handler"
            )
        })?;
    Ok(unit)
}

/// What happened to containerd.
enum ContainerdRestart {
    /// Its config did not change.
    NotNeeded,
    /// A dry run would restart it with one of these units.
    WouldRestart { units: Vec<String> },
    /// Its config changed (or, in a dry run, would), and `--restart never` leaves the restart
    /// to the operator.
    Needed { units: Vec<String>, dry_run: bool },
    /// Restarted with `systemctl restart <unit>`.
    Restarted { unit: String },
}

impl ContainerdRestart {
    fn label(&self) -> &'static str {
        match self {
            ContainerdRestart::NotNeeded => "not-needed",
            ContainerdRestart::WouldRestart { .. } => "would-restart",
            ContainerdRestart::Needed { .. } => "needed",
            ContainerdRestart::Restarted { .. } => "restarted",
        }
    }

    fn describe(&self) -> String {
        match self {
            ContainerdRestart::NotNeeded => "containerd: no restart needed".to_owned(),
            ContainerdRestart::WouldRestart { units } => format!(
                "containerd: would be restarted (--restart auto): {}",
                restart_command(units)
            ),
            ContainerdRestart::Needed {
                units,
                dry_run: true,
            } => format!(
                "containerd: its config would change; --restart never leaves the restart to you: {}",
                restart_command(units)
            ),
            ContainerdRestart::Needed {
                units,
                dry_run: false,
            } => format!(
                "containerd: restart it to load its new config: {}",
                restart_command(units)
            ),
            ContainerdRestart::Restarted { unit } => format!(
                "containerd: restarted (`systemctl restart {unit}`) to load its new config \
                 (running containers keep running)"
            ),
        }
    }
}

/// `systemctl restart <unit>`, naming the alternatives when the node may run either.
fn restart_command(units: &[String]) -> String {
    match units {
        [] => "restart containerd".to_owned(),
        [unit] => format!("`systemctl restart {unit}`"),
        [first, rest @ ..] => format!(
            "`systemctl restart {first}` (or {}, whichever runs)",
            rest.join(", ")
        ),
    }
}

/// Whether containerd has the empty image pods name.
enum ImageState {
    /// Uninstalling: not looked at.
    NotChecked,
    /// containerd's socket does not exist (containerd is not running).
    NoContainerd(PathBuf),
    /// Already imported.
    Present(String),
    /// Imported now.
    Imported(String),
    /// Missing; a dry run does not import it.
    WouldImport(String),
}

impl ImageState {
    fn label(&self) -> &'static str {
        match self {
            ImageState::NotChecked => "not-checked",
            ImageState::NoContainerd(_) => "skipped",
            ImageState::Present(_) => "present",
            ImageState::Imported(_) => "imported",
            ImageState::WouldImport(_) => "would-import",
        }
    }

    fn describe(&self) -> Option<String> {
        Some(match self {
            ImageState::NotChecked => return None,
            ImageState::NoContainerd(socket) => format!(
                "empty image: not imported, containerd is not running ({} does not exist); run \
                 the install again once it is",
                socket.display()
            ),
            ImageState::Present(name) => format!("empty image: {name} is present"),
            ImageState::Imported(name) => format!("empty image: imported {name}"),
            ImageState::WouldImport(name) => format!("empty image: would import {name}"),
        })
    }
}

/// Imports the empty image ([`EMPTY_IMAGE_NAME`]) into CRI's namespace unless it is there,
/// with the node's own `ctr`: pods name it, and no registry serves it.
fn ensure_empty_image(common: &Common, node: &Node) -> Result<ImageState> {
    let (host, paths) = (&node.host, &node.paths);
    let configured = match paths.config_form {
        ConfigForm::Toml => std::fs::read_to_string(&paths.containerd_config)
            .ok()
            .and_then(|text| containerd_config::grpc_address(&text)),
        ConfigForm::Template { .. } => None,
    };
    let address = match &common.containerd_address {
        Some(address) => address.clone(),
        None => configured.map_or_else(|| PathBuf::from(node.flavor.address()), PathBuf::from),
    };
    let seen = match &common.host_root {
        Some(root) => under_root(root, &address)?,
        None => address.clone(),
    };
    if !seen.exists() {
        return Ok(ImageState::NoContainerd(address));
    }
    let image = empty_image(EMPTY_IMAGE_NAME)?;
    let name = image.reference().to_string();
    let address_arg = address.to_string_lossy();
    let ctr = |args: &[&str]| -> Result<std::process::Output> {
        let mut all = vec!["--address", &address_arg, "--namespace", "k8s.io"];
        all.extend_from_slice(args);
        host.run(node.flavor.ctr(), &all).context(
            "importing the empty image with the node's `ctr` (or run `containix image empty --out \
             empty.tar && ctr -n k8s.io images import empty.tar` yourself)",
        )
    };
    let filter = format!("name=={name}");
    let listed = ctr(&["images", "ls", "-q", &filter])?;
    if String::from_utf8_lossy(&listed.stdout)
        .lines()
        .any(|line| line.trim() == name)
    {
        return Ok(ImageState::Present(name));
    }
    if common.dry_run {
        return Ok(ImageState::WouldImport(name));
    }
    // The archive must be readable by `ctr` on the host: under the host root's /tmp.
    let (dir, host_dir) = match &common.host_root {
        Some(root) => (root.join("tmp"), PathBuf::from("/tmp")),
        None => (std::env::temp_dir(), std::env::temp_dir()),
    };
    let mut archive = tempfile::Builder::new()
        .prefix("containix-empty-image.")
        .suffix(".tar")
        .tempfile_in(&dir)
        .with_context(|| format!("creating the empty image archive in {}", dir.display()))?;
    std::io::Write::write_all(&mut archive, image.tar())
        .with_context(|| format!("writing {}", archive.path().display()))?;
    let host_path = host_dir.join(archive.path().file_name().unwrap_or_default());
    ctr(&["images", "import", &host_path.to_string_lossy()])?;
    Ok(ImageState::Imported(name))
}

/// The human report: what changed (or would), the config diff on a dry run, and containerd.
fn report(action: &str, common: &Common, plan: &NodePlan, restart: &ContainerdRestart) -> String {
    let mut out = String::new();
    if plan.is_empty() {
        out.push_str(&format!(
            "nothing to do: containix is already {}\n",
            if action == "install" {
                "installed"
            } else {
                "uninstalled"
            }
        ));
        return out;
    }
    let verb = if common.dry_run { "would" } else { "done" };
    for step in &plan.steps {
        out.push_str(&format!("{verb}: {}\n", step.describe()));
        if common.dry_run {
            let diff = match step {
                NodeStep::WriteContainerdConfig {
                    path,
                    before,
                    after,
                    ..
                } => line_diff::unified(
                    &path.display().to_string(),
                    before.as_deref().unwrap_or(""),
                    after,
                ),
                NodeStep::RemoveContainerdConfig { path, before } => {
                    line_diff::unified(&path.display().to_string(), before, "")
                }
                _ => None,
            };
            if let Some(diff) = diff {
                out.push_str(&diff);
            }
        }
    }
    out.push_str(&restart.describe());
    out.push('\n');
    out
}

/// Blocks until SIGTERM or SIGINT, so the DaemonSet's pod stays running after the install.
fn wait_for_termination() -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals
        .thread_block()
        .context("blocking SIGTERM and SIGINT")?;
    eprintln!("containix: waiting for SIGTERM (the node stays as it is when this pod stops)");
    let signal = signals.wait().context("waiting for SIGTERM")?;
    eprintln!("containix: {signal}, exiting");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn the_restart_line_says_what_the_flags_do() {
        let never_dry = ContainerdRestart::Needed {
            units: units(&["containerd"]),
            dry_run: true,
        };
        let line = never_dry.describe();
        assert!(!line.contains("--restart auto"), "{line}");
        assert!(line.contains("--restart never"), "{line}");
        assert!(line.contains("`systemctl restart containerd`"), "{line}");
        assert_eq!(never_dry.label(), "needed");

        let auto_dry = ContainerdRestart::WouldRestart {
            units: units(&["k3s", "k3s-agent"]),
        };
        assert_eq!(
            auto_dry.describe(),
            "containerd: would be restarted (--restart auto): `systemctl restart k3s` (or \
             k3s-agent, whichever runs)"
        );
        let restarted = ContainerdRestart::Restarted {
            unit: "rke2-agent".into(),
        };
        assert!(
            restarted
                .describe()
                .contains("`systemctl restart rke2-agent`")
        );
    }
}
