//! `containix assemble`: a runnable OCI bundle (`config.json` + `rootfs/`) holding exactly a
//! closure, and `--remove` to take it apart again.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use containix_core::assemble::rootfs::LinkMode;
use serde_json::json;

use crate::assembly::{self, absolute_dir, check_out_dir, remove_bundle};
use crate::cli_policy::cli_policy;
use crate::progress::Reporter;
use crate::resolution::resolve;
use crate::source::SourceArgs;

/// How closure members get into `rootfs/nix/store`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// hardlink when the bundle is on the store's filesystem and the kernel allows it, else copy.
    Auto,
    /// Recreate directories and symlinks, hardlink files (same filesystem; no privilege, no mounts).
    Hardlink,
    /// Recreate directories and symlinks, copy files (any filesystem).
    Copy,
    /// Read-only bind mount of each member, as on the node (needs root; undo with --remove).
    Bind,
}

/// Write a runnable OCI bundle whose rootfs holds exactly a closure.
///
/// DIR gets `config.json` (a `runc spec`-like base with the containix plan applied: the program,
/// PATH, /etc/passwd and /etc/group, a read-only /nix/store) and `rootfs/`, whose `nix/store`
/// holds the closure and nothing else. Arguments after `--` are passed to the program (the
/// --entrypoint, else the package's main program). Run the bundle with
/// `runc run --bundle DIR <id>`; remove it with `containix assemble --remove DIR`, which
/// unmounts bind mounts first. Bad inputs leave nothing behind; DIR must be new or empty.
///
/// With hardlink and copy, the files are in the rootfs and `config.json` binds
/// `rootfs/nix/store` read-only onto `/nix/store` (hardlinks share inodes with the host store,
/// so the container must never write them). With bind, `config.json` keeps the node's own
/// read-only bind of each closure member, so the container sees exactly what it sees on the
/// node, and the members are also bind-mounted into `rootfs/nix/store` on the host. The bundle
/// holds GC roots in DIR/.containix/gcroots/bundle, keeping the closure in the store until
/// `--remove` releases them.
#[derive(clap::Args)]
#[command(after_help = format!(
    "Examples:\n  containix assemble path:./examples/hello --out /tmp/hello\n  runc run --bundle /tmp/hello hello-1\n  containix assemble --store-paths /nix/store/<hash>-app --out /tmp/app --link copy --entrypoint /bin/app -- --port 8080\n  containix assemble --remove /tmp/hello\n\n{}",
    crate::exit_status::EXIT_CODES
))]
pub struct Args {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The bundle directory to create (new, or empty).
    #[arg(long, value_name = "DIR", required_unless_present = "remove")]
    pub out: Option<PathBuf>,
    /// How closure members get into the rootfs.
    #[arg(long, value_enum, default_value_t = Link::Auto)]
    pub link: Link,
    /// The program to run: an absolute path in the root output (`/bin/app`) or a name on PATH.
    #[arg(long, value_name = "PROGRAM")]
    pub entrypoint: Option<String>,
    /// Remove a bundle made by `containix assemble` (unmounting bind mounts first).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["out", "source", "entrypoint", "args"])]
    pub remove: Option<PathBuf>,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
    /// Show progress on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// Arguments for the program.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(dir) = &args.remove {
        let dir = absolute_dir(dir, "--remove")?;
        remove_bundle(&dir)?;
        if !args.json {
            eprintln!("removed {}", dir.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    args.source.require()?;
    let out = args
        .out
        .as_deref()
        .expect("clap requires --out without --remove");
    let out = absolute_dir(out, "--out")?;
    let existed = check_out_dir(&out)?;
    let request = args.source.request(args.entrypoint.as_deref())?;
    let policy = cli_policy(&args.source.policy)?;
    let reporter: &'static Reporter = Box::leak(Box::new(Reporter::new(args.progress)));
    let runtime = crate::runtime::runtime()?;
    let resolution = runtime.block_on(resolve(&request, &policy, reporter))?;
    let (link, fallback) = match args.link {
        Link::Auto => (LinkMode::for_target(&out), true),
        Link::Hardlink => (LinkMode::Hardlink, false),
        Link::Copy => (LinkMode::Copy, false),
        Link::Bind => (LinkMode::Bind, false),
    };
    let (link, populated, spec_plan) = assembly::assemble(
        &out,
        existed,
        resolution.resolved(),
        link,
        fallback,
        request.entrypoint.as_ref(),
        &args.args,
        reporter,
    )?;
    let resolved = runtime.block_on(assembly::hold_closure(&out, existed, resolution))?;
    if args.json {
        let value = json!({
            "bundle": out,
            "link": link.as_str(),
            "paths": populated.paths,
            "files": populated.files,
            "fileBytes": populated.file_bytes,
            "mounts": populated.mounts.len(),
            "args": spec_plan.args,
            "roots": resolved.roots,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "assembled {} ({} paths, {} mode); run it with: runc run --bundle {} <container-id>",
            out.display(),
            populated.paths,
            link.as_str(),
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
