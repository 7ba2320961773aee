//! `containix node install|uninstall`: set up (or remove) containix on a node that is not
//! NixOS, from a shell on the node or from the installer DaemonSet.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use serde_json::json;

use crate::doctor::tool_output::containerd_version;
use crate::host::Host;
use crate::line_diff;
use containix_core::image::oci_image::{EMPTY_IMAGE_NAME, empty_image};
use containix_core::node::containerd_config::{
    self, DEFAULT_ADDRESS, DEFAULT_CONFIG_PATH, SHIM_BINARY, version_for_containerd_major,
};
use containix_core::node::install::{
    DEFAULT_SHIM_DIR, NodePaths, NodePlan, NodeState, NodeStep, apply, plan_install,
    plan_uninstall, under_root,
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
    /// config (keeping every other setting and comment), write the default node policy if there
    /// is none, and restart containerd if its config changed. Running it again changes nothing.
    #[command(after_help = format!(
        "Examples:\n  containix node install --dry-run\n  containix node install --containerd-config /etc/containerd/config.toml --shim-dir /usr/local/bin\n  containix node install --host-root /host --wait     # in the installer DaemonSet\n\n{EXIT_STATUS}"
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
    /// containerd's config file (a node path).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONFIG_PATH)]
    pub containerd_config: PathBuf,
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
    /// config's grpc.address, else /run/containerd/containerd.sock].
    #[arg(long, value_name = "PATH")]
    pub containerd_address: Option<PathBuf>,
    /// containerd's systemd unit.
    #[arg(long, value_name = "NAME", default_value = "containerd")]
    pub containerd_unit: String,
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
    /// 3 for 2.x) [default: from `containerd --version`].
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
    let (host, paths) = node(common)?;
    let shim = match &args.shim {
        Some(shim) => shim.clone(),
        None => std::env::current_exe()
            .context("finding this program to locate the shim next to it (pass --shim)")?
            .with_file_name(SHIM_BINARY),
    };
    let state = NodeState::read(&paths, Some(&shim))?;
    let version = match (args.config_version, &state.containerd_config) {
        (Some(version), _) => version,
        (None, Some(_)) => 2, // unused: the file's own version decides
        (None, None) => detect_config_version(&host)?,
    };
    let plan = plan_install(&paths, &state, &shim, version)?;
    finish("install", common, &host, &paths, &plan, true)
}

fn uninstall(args: &UninstallArgs) -> Result<()> {
    let common = &args.common;
    let (host, paths) = node(common)?;
    let state = NodeState::read(&paths, None)?;
    let plan = plan_uninstall(&paths, &state, args.purge)?;
    finish("uninstall", common, &host, &paths, &plan, false)
}

/// Where programs run and where the node's files are, from the flags.
fn node(common: &Common) -> Result<(Host, NodePaths)> {
    let paths = NodePaths {
        containerd_config: common.containerd_config.clone(),
        shim_dir: common.shim_dir.clone(),
        policy: common.policy.clone(),
    };
    match &common.host_root {
        None => Ok((Host::local(), paths)),
        Some(root) => {
            if !root.is_dir() {
                bail!("--host-root {}: not a directory", root.display());
            }
            Ok((Host::through_pid1(root)?, paths.under_root(root)?))
        }
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
    host: &Host,
    paths: &NodePaths,
    plan: &NodePlan,
    with_image: bool,
) -> Result<()> {
    if !common.dry_run {
        apply(plan)?;
    }
    let restart = if !plan.restart_containerd {
        ContainerdRestart::NotNeeded
    } else if common.dry_run {
        ContainerdRestart::WouldRestart
    } else if common.restart == Restart::Never {
        ContainerdRestart::Needed
    } else {
        host.run("systemctl", &["restart", &common.containerd_unit])
            .with_context(|| {
                format!(
                    "containerd's config changed but restarting it failed; restart containerd \
                     yourself (`systemctl restart {}`) so it loads the containix handler",
                    common.containerd_unit
                )
            })?;
        ContainerdRestart::Restarted
    };
    let image = if with_image {
        ensure_empty_image(common, host, paths)?
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
            "dry_run": common.dry_run,
            "changed": !plan.is_empty(),
            "steps": steps,
            "containerd": restart.label(),
            "empty_image": image.label(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    print!("{}", report(action, common, plan, restart));
    if let Some(line) = image.describe() {
        println!("{line}");
    }
    Ok(())
}

/// What happened to containerd.
#[derive(Clone, Copy)]
enum ContainerdRestart {
    /// Its config did not change.
    NotNeeded,
    /// A dry run would restart it.
    WouldRestart,
    /// Its config changed and `--restart never` left it to the operator.
    Needed,
    /// Restarted with `systemctl`.
    Restarted,
}

impl ContainerdRestart {
    fn label(self) -> &'static str {
        match self {
            ContainerdRestart::NotNeeded => "not-needed",
            ContainerdRestart::WouldRestart => "would-restart",
            ContainerdRestart::Needed => "needed",
            ContainerdRestart::Restarted => "restarted",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ContainerdRestart::NotNeeded => "containerd: no restart needed",
            ContainerdRestart::WouldRestart => "containerd: would be restarted (--restart auto)",
            ContainerdRestart::Needed => {
                "containerd: restart it to load its new config (`systemctl restart containerd`)"
            }
            ContainerdRestart::Restarted => {
                "containerd: restarted to load its new config (running containers keep running)"
            }
        }
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

/// Imports the empty image (`containix/empty:<version>`) into CRI's namespace unless it is
/// there, with the node's own `ctr`: pods name it, and no registry serves it.
fn ensure_empty_image(common: &Common, host: &Host, paths: &NodePaths) -> Result<ImageState> {
    let address = match &common.containerd_address {
        Some(address) => address.clone(),
        None => std::fs::read_to_string(&paths.containerd_config)
            .ok()
            .and_then(|text| containerd_config::grpc_address(&text))
            .map_or_else(|| PathBuf::from(DEFAULT_ADDRESS), PathBuf::from),
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
        host.run("ctr", &all).context(
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
fn report(action: &str, common: &Common, plan: &NodePlan, restart: ContainerdRestart) -> String {
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
    out.push_str(restart.describe());
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
