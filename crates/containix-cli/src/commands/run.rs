//! `containix run`: assemble a temporary bundle, run it with runc, clean up.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use containix_core::assemble::rootfs::{self, LinkMode};
use tokio::process::Command;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::assembly::{self, remove_bundle};
use crate::cli_policy::cli_policy;
use crate::progress::Reporter;
use crate::resolution::resolve;
use crate::source::SourceArgs;

/// Environment variable naming the runc binary (default: `runc` on PATH).
pub const RUNC_ENV: &str = "CONTAINIX_RUNC";

/// Run a closure as a container with runc, and return the program's exit status.
///
/// Assembles a temporary bundle (hardlink mode, copy when hardlinks are not possible), runs it
/// with `runc run` under a private runc state directory and a unique container id, streams the
/// program's stdin, stdout and stderr, and removes everything afterwards, also on Ctrl-C or
/// SIGTERM (the container is killed first). Arguments after `--` are passed to the program.
/// Needs root, as runc does.
#[derive(clap::Args)]
#[command(after_help = format!(
    "Examples:\n  containix run path:./examples/hello\n  containix run --entrypoint sh path:./examples/hello -- -c 'echo hi'\n\n\
     Exit status:\n  the program's exit status (128+N when killed by signal N)\n  1  failure before the program ran (printed as `containix: <message>`)\n  2  usage error (bad or missing arguments)",
))]
pub struct Args {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The program to run: an absolute path in the root output (`/bin/app`) or a name on PATH.
    #[arg(long, value_name = "PROGRAM")]
    pub entrypoint: Option<String>,
    /// Show progress on stderr even when it is not a terminal.
    #[arg(long)]
    pub progress: bool,
    /// Arguments for the program.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// The temporary directory of one run: the bundle and runc's state.
struct Workspace {
    dir: PathBuf,
}

impl Workspace {
    fn create() -> Result<Workspace> {
        let dir = tempfile::Builder::new()
            .prefix("containix-run-")
            .tempdir()
            .context("creating a temporary directory")?
            .keep();
        Ok(Workspace { dir })
    }

    fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }

    fn runc_root(&self) -> PathBuf {
        self.dir.join("runc")
    }

    /// Removes the bundle (unmounting first) and the directory.
    fn remove(&self) -> Result<()> {
        if self.bundle().join(assembly::STATE_DIR).exists() {
            remove_bundle(&self.bundle())?;
        }
        rootfs::unmount_under(&self.dir)?;
        rootfs::remove_tree(&self.dir)?;
        Ok(())
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    args.source.require()?;
    let request = args.source.request(args.entrypoint.as_deref())?;
    let policy = cli_policy(&args.source.policy)?;
    let reporter: &'static Reporter = Box::leak(Box::new(Reporter::new(args.progress)));
    let runtime = crate::runtime::runtime()?;
    runtime.block_on(async {
        // From here on SIGINT and SIGTERM no longer kill containix: they stop the run, and
        // everything made so far is removed.
        let mut stop = Stop::install()?;
        let resolution = tokio::select! {
            resolution = resolve(&request, &policy, reporter) => resolution?,
            signal = stop.recv() => return Ok(ExitCode::from(128 + signal)),
        };
        let workspace = Workspace::create()?;
        let result = async {
            assembly::assemble(
                &workspace.bundle(),
                false,
                resolution.resolved(),
                LinkMode::Hardlink,
                true,
                request.entrypoint.as_ref(),
                &args.args,
                reporter,
            )?;
            if let Some(signal) = stop.pending().await {
                return Ok(ExitCode::from(128 + signal));
            }
            run_container(&workspace.bundle(), &workspace.runc_root(), &mut stop).await
        }
        .await;
        let removed = workspace.remove();
        // The connection held the closure's temporary GC roots until the container was gone.
        drop(resolution);
        let code = result?;
        removed.context("removing the temporary bundle")?;
        Ok(code)
    })
}

/// SIGINT and SIGTERM, caught for the whole run.
struct Stop {
    interrupt: Signal,
    terminate: Signal,
}

impl Stop {
    fn install() -> Result<Stop> {
        Ok(Stop {
            interrupt: signal(SignalKind::interrupt()).context("handling SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("handling SIGTERM")?,
        })
    }

    /// Waits for a signal; returns its number.
    async fn recv(&mut self) -> u8 {
        tokio::select! {
            _ = self.interrupt.recv() => 2,
            _ = self.terminate.recv() => 15,
        }
    }

    /// A signal that already arrived, without waiting.
    async fn pending(&mut self) -> Option<u8> {
        tokio::select! {
            biased;
            signal = self.recv() => Some(signal),
            () = std::future::ready(()) => None,
        }
    }
}

fn runc_program() -> OsString {
    std::env::var_os(RUNC_ENV)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "runc".into())
}

/// Runs the bundle until the program exits or a signal asks to stop; returns its status.
async fn run_container(bundle: &Path, runc_root: &Path, stop: &mut Stop) -> Result<ExitCode> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let id = format!("containix-run-{}-{nanos:x}", std::process::id());
    let runc = runc_program();
    let mut child = Command::new(&runc)
        .arg("--root")
        .arg(runc_root)
        .arg("run")
        .arg("--bundle")
        .arg(bundle)
        .arg(&id)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", runc.to_string_lossy()))?;
    let stopped_by = tokio::select! {
        status = child.wait() => {
            let status = status.context("waiting for runc")?;
            delete_container(&runc, runc_root, &id).await;
            return Ok(exit_code(status));
        }
        signal = stop.recv() => signal,
    };
    let _ = Command::new(&runc)
        .arg("--root")
        .arg(runc_root)
        .args(["kill", &id, "KILL"])
        .stderr(Stdio::null())
        .status()
        .await;
    let _ = child.wait().await;
    delete_container(&runc, runc_root, &id).await;
    Ok(ExitCode::from(128 + stopped_by))
}

/// Removes the container's runc state, whatever it is in.
async fn delete_container(runc: &OsString, runc_root: &Path, id: &str) {
    let _ = Command::new(runc)
        .arg("--root")
        .arg(runc_root)
        .args(["delete", "--force", id])
        .stderr(Stdio::null())
        .status()
        .await;
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
