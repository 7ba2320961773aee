//! Bundles on disk: planning a CLI bundle's spec, writing `config.json` and `rootfs/`, and
//! removing a bundle again.
//!
//! A bundle directory holds:
//! - `config.json`: the base spec ([`crate::base_spec`]) with the plan applied (image kind
//!   Empty, state directory `<bundle>/.containix`);
//! - `rootfs/`, whose `nix/store` holds exactly the closure ([`containix_core::assemble::rootfs`]);
//! - `.containix/`: the marker [`MARKER_FILE`], the plan's state files (`passwd`, `group`) and
//!   the bundle layer's manifest, plus `gcroots/bundle/` (the closure's GC roots, held with
//!   [`containix_core::store::gc_roots::GcRoots`] for the consumer [`GC_CONSUMER`], keeping it in the
//!   store while the bundle exists; [`remove_bundle`] releases them).
//!
//! How the closure reaches the container depends on the link mode:
//! - hardlink and copy: the files are already in `rootfs/nix/store`, so the plan's per-member
//!   binds are dropped and `rootfs/nix/store` is bound read-only onto `/nix/store` instead.
//!   Hardlinks share inodes with the host store: a writable view would let the container's root
//!   change the host's store files, so the bind is read-only (and `root.readonly` is set as in
//!   `runc spec`).
//! - bind: `config.json` keeps the node's per-member read-only binds from the host store, so the
//!   container sees exactly what it sees on the node; `rootfs/nix/store` additionally holds
//!   read-only bind mounts of the members on the host, so the bundle also works with tools that
//!   only read the rootfs.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use containix_core::assemble::bundle::prepare_bundle;
use containix_core::assemble::plan::mounts::{CLOSURE_BIND_OPTIONS, bind};
use containix_core::assemble::plan::{ImageKind, PlanInput, SpecPlan, apply, plan};
use containix_core::assemble::rootfs::{self, LinkMode, Populated, RootfsError};
use containix_core::assemble::store_facts::HostStore;
use containix_core::request::container_request::Entrypoint;
use containix_core::resolve::Resolution;
use containix_core::resolve::resolved::Resolved;
use containix_core::store::gc_roots::GcRoots;
use containix_core::store::store_path::STORE_DIR;
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::base_spec::base_spec;
use crate::progress::Reporter;

/// The bundle's containix directory (the plan's state directory).
pub const STATE_DIR: &str = ".containix";

/// The consumer a bundle holds its closure's GC roots for, under `<bundle>/.containix/gcroots/`.
pub const GC_CONSUMER: &str = "bundle";

/// The marker that makes a directory a containix bundle, inside [`STATE_DIR`].
pub const MARKER_FILE: &str = "bundle.json";

/// What the marker records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    /// The containix version that assembled the bundle.
    pub containix: String,
    /// How the closure was placed.
    pub link: LinkMode,
    /// The closure's roots.
    pub roots: Vec<String>,
}

/// The spec plan for a bundle at `bundle` (absolute), adjusted for `link`.
pub fn bundle_plan(
    resolved: &Resolved,
    bundle: &Path,
    link: LinkMode,
    entrypoint: Option<&Entrypoint>,
    args: &[String],
) -> Result<(Spec, SpecPlan)> {
    let base = base_spec(args)?;
    // Arguments after `--` go to the program: without --entrypoint, that is the main program.
    let main_program;
    let entrypoint = match entrypoint {
        Some(entrypoint) => Some(entrypoint.as_str()),
        None if !args.is_empty() => {
            main_program = resolved.main_program.clone().ok_or_else(|| {
                anyhow!(
                    "the package declares no main program to pass the arguments to; name one \
                     with --entrypoint"
                )
            })?;
            Some(main_program.as_str())
        }
        None => None,
    };
    let state_dir = bundle.join(STATE_DIR);
    let mut spec_plan = plan(
        &PlanInput::for_resolved(resolved, &base, entrypoint, ImageKind::Empty, &state_dir),
        &HostStore,
    )?;
    if link != LinkMode::Bind {
        let closure = &resolved.closure;
        spec_plan.mounts.retain(|mount| {
            let is_member_bind = mount.typ().as_deref() == Some("bind")
                && mount.source().as_deref() == Some(mount.destination().as_path())
                && closure
                    .paths()
                    .any(|member| member.as_path() == mount.destination());
            !is_member_bind
        });
        let store_in_rootfs = rootfs::store_dir_in(&bundle.join("rootfs"));
        spec_plan.mounts.insert(
            0,
            bind(
                &store_in_rootfs,
                Path::new(STORE_DIR),
                &CLOSURE_BIND_OPTIONS,
            )?,
        );
    }
    Ok((base, spec_plan))
}

/// The resulting spec of a plan.
pub fn resulting_spec(base: Spec, spec_plan: &SpecPlan) -> Spec {
    apply(spec_plan, base)
}

/// `dir` as an absolute, normalised path (relative to the current directory), without `..`.
pub fn absolute_dir(dir: &Path, what: &str) -> Result<PathBuf> {
    let joined = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .context("reading the current directory")?
            .join(dir)
    };
    let mut normal = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !normal.pop() {
                    bail!("{what} {}: leaves the file system root", dir.display());
                }
            }
            other => normal.push(other),
        }
    }
    if normal.parent().is_none() {
        bail!(
            "{what} {}: expected a directory of its own, not /",
            dir.display()
        );
    }
    Ok(normal)
}

/// Checks that `out` can receive a bundle: missing (its parent must exist) or an empty
/// directory. Returns whether it exists.
pub fn check_out_dir(out: &Path) -> Result<bool> {
    match fs::symlink_metadata(out) {
        Ok(meta) if meta.is_dir() => {
            let mut entries =
                fs::read_dir(out).with_context(|| format!("--out {}", out.display()))?;
            if entries.next().is_some() {
                bail!(
                    "--out {}: the directory is not empty; expected a new or empty directory",
                    out.display()
                );
            }
            Ok(true)
        }
        Ok(_) => bail!("--out {}: exists and is not a directory", out.display()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let parent = out.parent().unwrap_or(Path::new("/"));
            if !parent.is_dir() {
                bail!(
                    "--out {}: the parent directory {} does not exist",
                    out.display(),
                    parent.display()
                );
            }
            Ok(false)
        }
        Err(err) => Err(err).with_context(|| format!("--out {}", out.display())),
    }
}

/// Plans and writes a bundle at `out` (checked with [`check_out_dir`]) in `link` mode; with
/// `fallback`, a rootfs that cannot be hardlinked is copied instead. Returns the mode used, what
/// was placed and the plan. Roots nothing: the caller keeps the closure alive meanwhile (its
/// resolution's connection) and may root it for the bundle with [`hold_closure`].
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    out: &Path,
    existed: bool,
    resolved: &Resolved,
    link: LinkMode,
    fallback: bool,
    entrypoint: Option<&Entrypoint>,
    args: &[String],
    reporter: &Reporter,
) -> Result<(LinkMode, Populated, SpecPlan)> {
    let (_, spec_plan) = bundle_plan(resolved, out, link, entrypoint, args)?;
    let first = write_bundle(out, existed, resolved, &spec_plan, link, reporter);
    match first {
        Ok(populated) => Ok((link, populated, spec_plan)),
        Err(WriteError::Rootfs(RootfsError::Hardlink { .. })) if fallback => {
            let (_, spec_plan) = bundle_plan(resolved, out, LinkMode::Copy, entrypoint, args)?;
            let populated =
                write_bundle(out, existed, resolved, &spec_plan, LinkMode::Copy, reporter)?;
            Ok((LinkMode::Copy, populated, spec_plan))
        }
        Err(err) => Err(err.into()),
    }
}

/// Writes a bundle at `out` (checked with [`check_out_dir`]). On failure everything written is
/// removed again, and `out` too when this call created it.
pub fn write_bundle(
    out: &Path,
    existed: bool,
    resolved: &Resolved,
    spec_plan: &SpecPlan,
    link: LinkMode,
    reporter: &Reporter,
) -> Result<Populated, WriteError> {
    let result = write_inner(out, existed, resolved, spec_plan, link, reporter);
    if result.is_err() {
        undo_bundle(out, existed);
    }
    result
}

/// Roots the resolution's closure for the bundle at `out` (see [`GC_CONSUMER`]) over the
/// connection that kept it alive so far, then closes that connection. On failure the bundle is
/// undone like a failed [`write_bundle`].
pub async fn hold_closure(out: &Path, existed: bool, resolution: Resolution) -> Result<Resolved> {
    match resolution.hold(&bundle_gc_roots(out), GC_CONSUMER).await {
        Ok(resolved) => Ok(resolved),
        Err(err) => {
            undo_bundle(out, existed);
            Err(err.into())
        }
    }
}

/// The GC roots of the bundle at `bundle`, in its state directory.
pub fn bundle_gc_roots(bundle: &Path) -> GcRoots {
    GcRoots::new(bundle.join(STATE_DIR))
}

/// Removes what was written at `out`: its contents, and `out` itself unless it `existed`.
fn undo_bundle(out: &Path, existed: bool) {
    let undo = if existed {
        clear_dir(out)
    } else {
        rootfs::unmount_under(out).and_then(|_| rootfs::remove_tree(out))
    };
    if let Err(err) = undo {
        eprintln!("containix: warning: undoing the partial bundle: {err}");
    }
}

/// Why writing a bundle failed; [`WriteError::Rootfs`] lets callers retry another link mode.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Populating the rootfs failed.
    #[error(transparent)]
    Rootfs(RootfsError),
    /// Anything else.
    #[error("{}", crate::error_chain::said_once(.0))]
    Other(#[from] anyhow::Error),
}

fn write_inner(
    out: &Path,
    existed: bool,
    resolved: &Resolved,
    spec_plan: &SpecPlan,
    link: LinkMode,
    reporter: &Reporter,
) -> Result<Populated, WriteError> {
    if !existed {
        fs::create_dir(out).with_context(|| format!("creating {}", out.display()))?;
    }
    let state_dir = out.join(STATE_DIR);
    fs::create_dir(&state_dir).with_context(|| format!("creating {}", state_dir.display()))?;
    let marker = Marker {
        containix: containix_core::VERSION.into(),
        link,
        roots: resolved.roots.iter().map(|r| r.to_string()).collect(),
    };
    let marker_path = state_dir.join(MARKER_FILE);
    fs::write(
        &marker_path,
        serde_json::to_vec_pretty(&marker).expect("a marker serialises"),
    )
    .with_context(|| format!("writing {}", marker_path.display()))?;
    let base = base_spec(&[])?;
    let config = out.join(containix_core::assemble::bundle::CONFIG_FILE);
    fs::write(
        &config,
        serde_json::to_vec_pretty(&base).expect("a spec serialises"),
    )
    .with_context(|| format!("writing {}", config.display()))?;
    let rootfs_dir = out.join("rootfs");
    fs::create_dir(&rootfs_dir).with_context(|| format!("creating {}", rootfs_dir.display()))?;

    let populated = rootfs::populate(&rootfs_dir, &resolved.closure, link, &mut |progress| {
        reporter.rootfs(progress)
    })
    .map_err(WriteError::Rootfs)?;
    prepare_bundle(out, &state_dir, |_| Ok(spec_plan.clone()))
        .map_err(|err| anyhow!("writing {}: {err}", config.display()))?;
    Ok(populated)
}

/// Removes everything inside `dir`, keeping `dir`.
fn clear_dir(dir: &Path) -> Result<(), RootfsError> {
    rootfs::unmount_under(dir)?;
    let entries = fs::read_dir(dir).map_err(|source| RootfsError::Io {
        action: "reading",
        path: dir.into(),
        source,
    })?;
    for entry in entries.flatten() {
        rootfs::remove_tree(&entry.path())?;
    }
    Ok(())
}

/// Removes a bundle made by [`write_bundle`]: unmounts what is mounted below it, then removes
/// it. Refuses a directory without the marker.
pub fn remove_bundle(dir: &Path) -> Result<()> {
    let marker_path = dir.join(STATE_DIR).join(MARKER_FILE);
    let text = fs::read(&marker_path).map_err(|err| {
        anyhow!(
            "--remove {}: not a containix bundle (no readable {}: {err}); refusing to remove it",
            dir.display(),
            marker_path.display()
        )
    })?;
    serde_json::from_slice::<Marker>(&text).map_err(|err| {
        anyhow!(
            "--remove {}: {} is not a containix bundle marker ({err}); refusing to remove it",
            dir.display(),
            marker_path.display()
        )
    })?;
    bundle_gc_roots(dir).release(GC_CONSUMER)?;
    rootfs::unmount_under(dir)?;
    rootfs::remove_tree(dir)?;
    Ok(())
}
