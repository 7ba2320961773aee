//! A private containerd with CRI, for tests and benchmarks.
//!
//! [`Containerd::start`] runs `containerd` with its own root, state, sockets, runc root, CNI
//! directories and config under a fresh temp dir, so instances never touch a system containerd
//! or each other: every test can start its own. CRI is configured as a kubelet node would have it,
//! plus what these machines need (`restrict_oom_score_adj`), the test images are imported, and a
//! runtime handler [`CONTAINIX_RUNTIME_HANDLER`] runs `containerd-shim-containix-v1`.
//!
//! With [`BaseConfig::Stock`] the config is instead this containerd's own
//! `containerd config default`, made private by [`crate::stock_config::isolate`] and without the
//! containix handler. [`Containerd::prepare`] writes the instance's files without starting
//! anything, so a test can edit the config (e.g. run an installer on it) before
//! [`PreparedContainerd::start`].
//!
//! [`Containerd::stop`] removes every pod through CRI, stops containerd and then checks that
//! nothing of the instance is left (processes, mounts); whatever is left is killed or unmounted
//! and reported. Dropping an instance without `stop` does the forced part only.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use containix_core::image::oci_image::OciImage;
use containix_core::node::containerd_config;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::containerd_build::{ContainerdBuild, ContainerdVersion, ContainerdVersionError};
pub use crate::containerd_layout::ContainerdLayout;
use crate::cri::{CriClient, CriError};
use crate::images::{self, ImageError};
pub use crate::rendered_config::render_config;
use crate::stock_config::{self, StockConfigError};
use crate::workspace_binary::find_workspace_binary;

/// The CRI runtime handler (RuntimeClass `handler`) that runs containix pods.
pub const CONTAINIX_RUNTIME_HANDLER: &str = containerd_config::HANDLER;
/// The containerd runtime type of the containix handler.
pub const CONTAINIX_RUNTIME_TYPE: &str = containerd_config::RUNTIME_TYPE;
/// The shim binary containerd derives from [`CONTAINIX_RUNTIME_TYPE`] and looks up on its PATH.
pub const CONTAINIX_SHIM_BINARY: &str = containerd_config::SHIM_BINARY;
/// Pod annotations containerd copies into the OCI specs of the containix handler's containers.
pub const CONTAINIX_POD_ANNOTATIONS: &str = containerd_config::POD_ANNOTATIONS;
/// Environment variable naming the shim binary, overriding the lookup in the target dir.
pub const SHIM_BINARY_ENV: &str = "CONTAINIX_SHIM_BIN";

const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long CRI may take to list an image after it was imported.
const IMAGE_LISTED_LIMIT: Duration = Duration::from_secs(30);
const LOG_TAIL_LINES: usize = 30;

/// Why the test containerd could not be started or stopped cleanly.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory of the instance could not be created or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The containerd binary could not be executed.
    #[error("starting {program}: {source} (install the containerd package)")]
    Spawn {
        /// The binary.
        program: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// containerd exited while starting.
    #[error("containerd exited with {status} while starting; last log lines:\n{log_tail}")]
    ExitedEarly {
        /// Its exit status.
        status: ExitStatus,
        /// The end of its log.
        log_tail: String,
    },
    /// The CRI socket did not answer within the limit.
    #[error(
        "containerd's CRI did not answer within {waited:?} ({last_error}); last log lines:\n{log_tail}"
    )]
    NotReady {
        /// How long we waited.
        waited: Duration,
        /// The last connection or RPC error.
        last_error: String,
        /// The end of containerd's log.
        log_tail: String,
    },
    /// A test image could not be built or imported.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A CRI call failed.
    #[error(transparent)]
    Cri(#[from] CriError),
    /// CRI did not list an image that was imported.
    #[error("CRI did not list {image} within {waited:?} of importing it")]
    ImageNotListed {
        /// The image's name.
        image: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The stock containerd config could not be obtained or made private.
    #[error(transparent)]
    StockConfig(#[from] StockConfigError),
    /// The containerd binary's version could not be read.
    #[error(transparent)]
    Version(#[from] ContainerdVersionError),
    /// After stopping, processes or mounts of the instance remain even after forced cleanup.
    #[error(
        "containerd instance {dir} left {remaining_processes:?} and mounts {remaining_mounts:?} \
         behind even after forced cleanup"
    )]
    Leftovers {
        /// The instance directory (kept for inspection).
        dir: PathBuf,
        /// Processes still alive.
        remaining_processes: Vec<InstanceProcess>,
        /// Mount points still mounted.
        remaining_mounts: Vec<PathBuf>,
    },
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// Which containerd config an instance is written with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BaseConfig {
    /// The testkit's own config ([`render_config`]), with the containix handler registered.
    #[default]
    Rendered,
    /// `<containerd_binary> config default`, changed only where the instance must be private
    /// ([`stock_config::isolate`]). No containix handler is registered: that is the job of
    /// whatever the test runs on [`ContainerdLayout::config`] before starting.
    Stock,
}

/// How to start a test containerd.
#[derive(Debug, Clone)]
pub struct ContainerdOptions {
    /// The `containerd` binary (default: [`ContainerdBuild::under_test`], which is the one on
    /// PATH unless the version matrix names another). When it is a path, its folder goes first
    /// on containerd's PATH (after the instance's `bin`), so containerd runs its own build's
    /// `containerd-shim-runc-v2`.
    pub containerd_binary: PathBuf,
    /// The `ctr` binary used to import images (default: the one of the same build).
    pub ctr_binary: PathBuf,
    /// The static busybox the test images are built from.
    pub busybox: PathBuf,
    /// The `containerd-shim-containix-v1` binary to put on containerd's PATH, if any.
    ///
    /// Default: [`find_shim_binary`]. Without it the `containix` handler is still registered,
    /// but pods using it fail at RunPodSandbox.
    pub shim_binary: Option<PathBuf>,
    /// Where the instance's temp dir is created (default: the system temp dir).
    pub parent_dir: PathBuf,
    /// Upper bound on waiting for CRI to answer after start (a hang guard, not a benchmark).
    pub ready_limit: Duration,
    /// Upper bound on waiting for containerd to exit after SIGTERM before SIGKILL.
    pub stop_limit: Duration,
    /// Extra lines of the containix node policy the shim gets. The testkit always sets
    /// `state-dir` to a directory inside the instance, so the shim's GC roots and state go
    /// away with it; these lines add to that (e.g. `realise = "build"`).
    pub containix_policy: String,
    /// What the instance's containerd config starts from.
    pub base_config: BaseConfig,
}

impl Default for ContainerdOptions {
    fn default() -> Self {
        let build = ContainerdBuild::under_test();
        Self {
            containerd_binary: build.containerd,
            ctr_binary: build.ctr,
            busybox: PathBuf::from(images::HOST_BUSYBOX),
            shim_binary: find_shim_binary(),
            parent_dir: std::env::temp_dir(),
            ready_limit: Duration::from_secs(30),
            stop_limit: Duration::from_secs(10),
            containix_policy: String::new(),
            base_config: BaseConfig::default(),
        }
    }
}

/// Finds the built `containerd-shim-containix-v1`: `$CONTAINIX_SHIM_BIN`, else the cargo target
/// dir's, after `cargo build -p containix-shim` (or a workspace build).
pub fn find_shim_binary() -> Option<PathBuf> {
    find_workspace_binary(CONTAINIX_SHIM_BINARY, SHIM_BINARY_ENV)
}

/// A process that belongs to a test containerd instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceProcess {
    /// Its pid.
    pub pid: i32,
    /// Its command line, arguments joined with spaces.
    pub command: String,
}

impl fmt::Display for InstanceProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.pid, self.command)
    }
}

/// What [`Containerd::stop`] found and had to force.
#[derive(Debug, Default)]
pub struct StopReport {
    /// The first error removing pods and containers through CRI, if any.
    pub pod_removal_error: Option<String>,
    /// Whether containerd ignored SIGTERM within the limit and was killed.
    pub containerd_killed: bool,
    /// Processes of the instance (shims, containers) still alive after containerd stopped,
    /// which were killed.
    pub killed_processes: Vec<InstanceProcess>,
    /// Mounts under the instance directory still present after containerd stopped, which
    /// were unmounted.
    pub unmounted: Vec<PathBuf>,
}

impl StopReport {
    /// Whether everything stopped on its own: pods removed, containerd exited on SIGTERM,
    /// nothing left to kill or unmount.
    pub fn is_clean(&self) -> bool {
        self.pod_removal_error.is_none()
            && !self.containerd_killed
            && self.killed_processes.is_empty()
            && self.unmounted.is_empty()
    }
}

/// The images every instance imports, built once per process (gzip of busybox is slow in debug).
struct TestImages {
    pause: OciImage,
    busybox: OciImage,
    empty: OciImage,
}

fn test_images(busybox: &Path) -> Result<Arc<TestImages>> {
    static CACHE: Mutex<Option<(PathBuf, Arc<TestImages>)>> = Mutex::new(None);
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((path, images)) = cache.as_ref()
        && path == busybox
    {
        return Ok(images.clone());
    }
    let images = Arc::new(TestImages {
        pause: images::pause_image(busybox)?,
        busybox: images::busybox_image(busybox)?,
        empty: images::empty_image()?,
    });
    *cache = Some((busybox.to_owned(), images.clone()));
    Ok(images)
}

/// A running private containerd with CRI. Stop it with [`Containerd::stop`].
#[derive(Debug)]
pub struct Containerd {
    layout: ContainerdLayout,
    process: Option<Child>,
    cri: Option<CriClient>,
    ctr_binary: PathBuf,
    /// The version of the containerd binary, which decides the config layout.
    version: ContainerdVersion,
    stop_limit: Duration,
    finished: bool,
    /// What it was started with, for [`Containerd::restart`].
    options: Option<ContainerdOptions>,
}

/// An instance whose directory and files exist but whose containerd has not started yet.
///
/// Edit [`ContainerdLayout::config`] or add binaries to [`ContainerdLayout::bin`] (first on
/// containerd's PATH), then [`start`](Self::start) it. Dropping it removes its directory.
#[derive(Debug)]
pub struct PreparedContainerd {
    /// Not started yet; its `Drop` removes the directory if this is dropped.
    instance: Containerd,
    options: ContainerdOptions,
}

impl PreparedContainerd {
    /// The instance's paths.
    pub fn layout(&self) -> &ContainerdLayout {
        &self.instance.layout
    }

    /// The version of the containerd it will run.
    pub fn version(&self) -> &ContainerdVersion {
        &self.instance.version
    }

    /// Starts containerd with the files as they are now, waits until CRI answers, and imports
    /// the pause, busybox and empty images. On failure everything is removed again.
    pub async fn start(self) -> Result<Containerd> {
        let Self {
            mut instance,
            options,
        } = self;
        let images = test_images(&options.busybox)?;
        instance.spawn(&options)?;
        instance.wait_until_ready(options.ready_limit).await?;
        for image in [&images.pause, &images.busybox, &images.empty] {
            instance.import_image(image).await?;
        }
        instance.options = Some(options);
        Ok(instance)
    }
}

impl Containerd {
    /// Starts an instance: [`prepare`](Self::prepare), then [`PreparedContainerd::start`].
    /// On failure everything created so far is removed again.
    pub async fn start(options: ContainerdOptions) -> Result<Self> {
        Self::prepare(options)?.start().await
    }

    /// Creates the instance directory and writes its config, the containix policy and (if
    /// [`ContainerdOptions::shim_binary`] is set) the shim link, starting nothing. With
    /// [`BaseConfig::Stock`] this runs `<containerd_binary> config default` first; otherwise
    /// the config is [`render_config`] in the layout of the binary's version. The test images
    /// are built here too, so a bad busybox fails before anything is created.
    pub fn prepare(options: ContainerdOptions) -> Result<PreparedContainerd> {
        test_images(&options.busybox)?;
        let version = ContainerdBuild::at(&options.containerd_binary).version()?;
        let stock = match options.base_config {
            BaseConfig::Rendered => None,
            BaseConfig::Stock => Some(stock_config::containerd_config_default(
                &options.containerd_binary,
            )?),
        };
        let dir = tempfile::Builder::new()
            .prefix("containix-ctrd-")
            .tempdir_in(&options.parent_dir)
            .map_err(|source| Error::Io {
                what: "creating the instance directory in",
                path: options.parent_dir.clone(),
                source,
            })?
            .keep();
        // From here on, Drop cleans up if anything fails.
        let instance = Self {
            layout: ContainerdLayout::new(dir),
            process: None,
            cri: None,
            ctr_binary: options.ctr_binary.clone(),
            version,
            stop_limit: options.stop_limit,
            finished: false,
            options: None,
        };
        instance.prepare_files(&options, stock.as_deref())?;
        Ok(PreparedContainerd { instance, options })
    }

    /// Writes the instance's files; `stock` is the output of `containerd config default` when
    /// the config starts from it.
    fn prepare_files(&self, options: &ContainerdOptions, stock: Option<&str>) -> Result<()> {
        let layout = &self.layout;
        for dir in [layout.bin(), layout.pod_logs(), layout.scratch()] {
            std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                what: "creating",
                path: dir.clone(),
                source,
            })?;
        }
        if let Some(shim) = &options.shim_binary {
            let link = layout.bin().join(CONTAINIX_SHIM_BINARY);
            let target = std::path::absolute(shim).unwrap_or_else(|_| shim.clone());
            std::os::unix::fs::symlink(&target, &link).map_err(|source| Error::Io {
                what: "linking the containix shim at",
                path: link,
                source,
            })?;
        }
        let policy = format!(
            "state-dir = {:?}\n{}\n",
            layout.containix_state().display().to_string(),
            options.containix_policy
        );
        std::fs::write(layout.containix_policy(), policy).map_err(|source| Error::Io {
            what: "writing",
            path: layout.containix_policy(),
            source,
        })?;
        let config = match stock {
            None => render_config(layout, images::PAUSE_IMAGE, self.version.config_version()),
            Some(stock) => stock_config::isolate(stock, layout, images::PAUSE_IMAGE)?,
        };
        std::fs::write(layout.config(), config).map_err(|source| Error::Io {
            what: "writing",
            path: layout.config(),
            source,
        })
    }

    fn spawn(&mut self, options: &ContainerdOptions) -> Result<()> {
        use std::os::unix::process::CommandExt;

        let log_path = self.layout.log();
        // Appending: a restarted containerd keeps the log of its first run.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| Error::Io {
                what: "creating",
                path: log_path.clone(),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| Error::Io {
            what: "duplicating the handle of",
            path: log_path,
            source,
        })?;
        let child = std::process::Command::new(&options.containerd_binary)
            .arg("--config")
            .arg(self.layout.config())
            .env("PATH", self.containerd_path(&options.containerd_binary))
            .env("CONTAINIX_CONFIG", self.layout.containix_policy())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group: a Ctrl-C aimed at the test runner reaches us, and we stop it.
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Spawn {
                program: options.containerd_binary.clone(),
                source,
            })?;
        self.process = Some(child);
        Ok(())
    }

    /// The instance's `bin` dir, then the folder of `containerd_binary` when it is a path (its
    /// build's `containerd-shim-runc-v2`), then the inherited PATH, then the system dirs runc
    /// lives in.
    fn containerd_path(&self, containerd_binary: &Path) -> OsString {
        let build = ContainerdBuild::at(containerd_binary);
        let inherited = build.path_with(std::env::var_os("PATH").as_deref());
        let mut dirs = vec![self.layout.bin()];
        dirs.extend(std::env::split_paths(&inherited));
        for system in [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ] {
            let system = PathBuf::from(system);
            if !dirs.contains(&system) {
                dirs.push(system);
            }
        }
        std::env::join_paths(dirs).unwrap_or_default()
    }

    async fn wait_until_ready(&mut self, limit: Duration) -> Result<()> {
        let started = Instant::now();
        let socket = self.layout.socket();
        let mut last_error = String::from("socket not created yet");
        loop {
            if let Some(status) = self
                .process
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                return Err(Error::ExitedEarly {
                    status,
                    log_tail: self.log_tail(),
                });
            }
            if socket.exists() {
                match CriClient::connect(&socket).await {
                    Ok(client) => match client.version().await {
                        Ok(_) => {
                            self.cri = Some(client);
                            return Ok(());
                        }
                        Err(error) => last_error = error.to_string(),
                    },
                    Err(error) => last_error = error.to_string(),
                }
            }
            if started.elapsed() >= limit {
                return Err(Error::NotReady {
                    waited: limit,
                    last_error,
                    log_tail: self.log_tail(),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The last lines of containerd's log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.layout.log()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// The instance's paths.
    pub fn layout(&self) -> &ContainerdLayout {
        &self.layout
    }

    /// The version of the containerd this instance runs.
    pub fn version(&self) -> &ContainerdVersion {
        &self.version
    }

    /// The `ctr` of the containerd build this instance runs (use it with `--address`
    /// [`Containerd::socket`]).
    pub fn ctr_binary(&self) -> &Path {
        &self.ctr_binary
    }

    /// The containerd process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }

    /// The gRPC socket (containerd API and CRI), e.g. for `ctr --address`.
    pub fn socket(&self) -> PathBuf {
        self.layout.socket()
    }

    /// A CRI client connected to this instance.
    pub fn cri(&self) -> CriClient {
        self.cri
            .clone()
            .expect("a started instance has a CRI client")
    }

    /// The name to use as a container image for the busybox test image.
    pub fn busybox_image(&self) -> &'static str {
        images::BUSYBOX_IMAGE
    }

    /// The sandbox (pause) image.
    pub fn pause_image(&self) -> &'static str {
        images::PAUSE_IMAGE
    }

    /// Creates and returns a log directory for pod `name`, as a kubelet does under
    /// `/var/log/pods`.
    pub fn create_pod_log_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.layout.pod_logs().join(name);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            what: "creating",
            path: dir.clone(),
            source,
        })?;
        Ok(dir)
    }

    /// Imports an image into the CRI namespace (`ctr images import`) and waits until CRI lists
    /// it: containerd 2's CRI learns of an imported image from an event, a moment later.
    pub async fn import_image(&self, image: &OciImage) -> Result<()> {
        let socket = self.layout.socket();
        images::import_image(&self.ctr_binary, &socket, image, &self.layout.scratch()).await?;
        let name = image.reference().to_string();
        let cri = self.cri();
        let started = Instant::now();
        while cri.image_status(&name).await?.is_none() {
            if started.elapsed() >= IMAGE_LISTED_LIMIT {
                return Err(Error::ImageNotListed {
                    image: name,
                    waited: IMAGE_LISTED_LIMIT,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Ok(())
    }

    /// Imports an OCI archive file into the CRI namespace (`ctr images import`).
    pub async fn import_archive(&self, archive: &Path) -> Result<()> {
        images::import_archive(&self.ctr_binary, &self.layout.socket(), archive).await?;
        Ok(())
    }

    /// Mounts under the instance directory (overlay rootfs, sandbox shm, ...), in mount order.
    pub fn leftover_mounts(&self) -> Vec<PathBuf> {
        mounts_under(self.layout.dir())
    }

    /// Processes of the instance other than containerd itself: shims and everything they run.
    pub fn leftover_processes(&self) -> Vec<InstanceProcess> {
        let own = self.process.as_ref().map(|child| child.id() as i32);
        instance_processes(self.layout.dir())
            .into_iter()
            .filter(|process| Some(process.pid) != own)
            .collect()
    }

    /// Stops containerd (SIGTERM, then SIGKILL after the stop limit) and starts it again on the
    /// same root, state and config, as a node's service manager restarts it: shims and
    /// containers keep running, and containerd reconnects to them.
    pub async fn restart(&mut self) -> Result<()> {
        let options = self
            .options
            .clone()
            .expect("a started instance keeps its options");
        self.cri = None;
        if let Some(mut child) = self.process.take() {
            signal(child.id() as i32, Signal::SIGTERM);
            let deadline = Instant::now() + self.stop_limit;
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
        self.spawn(&options)?;
        self.wait_until_ready(options.ready_limit).await
    }

    /// Removes every container and pod through CRI, stops containerd (SIGTERM, then SIGKILL after
    /// the stop limit), kills and unmounts whatever the instance left, and removes its directory.
    ///
    /// The report says what had to be forced; an error means something could not be cleaned.
    pub async fn stop(mut self) -> Result<StopReport> {
        let mut report = StopReport::default();
        if let Some(cri) = self.cri.take()
            && let Err(error) = cri.remove_everything().await
        {
            report.pod_removal_error = Some(error.to_string());
        }
        if let Some(mut child) = self.process.take() {
            signal(child.id() as i32, Signal::SIGTERM);
            let deadline = Instant::now() + self.stop_limit;
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() >= deadline {
                    report.containerd_killed = true;
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
        let (killed, unmounted) = force_cleanup(&self.layout);
        report.killed_processes = killed;
        report.unmounted = unmounted;
        self.finished = true;
        finish(&self.layout)?;
        Ok(report)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        force_cleanup(&self.layout);
        let _ = finish(&self.layout);
    }
}

fn signal(pid: i32, signal: Signal) {
    let _ = kill(Pid::from_raw(pid), signal);
}

/// Kills the instance's remaining processes and unmounts its remaining mounts.
fn force_cleanup(layout: &ContainerdLayout) -> (Vec<InstanceProcess>, Vec<PathBuf>) {
    let killed = instance_processes(layout.dir());
    for process in &killed {
        signal(process.pid, Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !instance_processes(layout.dir()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mounted = mounts_under(layout.dir());
    for mount in mounted.iter().rev() {
        let _ = nix::mount::umount2(mount, nix::mount::MntFlags::MNT_DETACH);
    }
    (killed, mounted)
}

/// Removes the instance directory if nothing is left; otherwise keeps it and says what remains.
fn finish(layout: &ContainerdLayout) -> Result<()> {
    let remaining_processes = instance_processes(layout.dir());
    let remaining_mounts = mounts_under(layout.dir());
    if !remaining_processes.is_empty() || !remaining_mounts.is_empty() {
        // Never delete recursively through a mount: it could reach host files.
        return Err(Error::Leftovers {
            dir: layout.dir().to_owned(),
            remaining_processes,
            remaining_mounts,
        });
    }
    std::fs::remove_dir_all(layout.dir()).map_err(|source| Error::Io {
        what: "removing the instance directory",
        path: layout.dir().to_owned(),
        source,
    })
}

/// Mount points at or below `dir` in this process's mount namespace, in mount order.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|mount_point| mount_point.starts_with(dir))
        .collect()
}

/// Decodes the octal escapes (`\040` for space, ...) mountinfo uses in paths.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes.get(i + 1..i + 4).filter(|_| bytes[i] == b'\\');
        let decoded = escape
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Live processes whose command line mentions `dir` (containerd, shims, runc), plus all their
/// descendants (pause and container processes), excluding zombies and this process.
pub fn instance_processes(dir: &Path) -> Vec<InstanceProcess> {
    // Every command line of the instance names a path inside `dir` (config, socket, runc root).
    let needle = format!("{}/", dir.to_string_lossy());
    let processes = list_processes();
    let own = std::process::id() as i32;
    let mut members: Vec<i32> = processes
        .iter()
        .filter(|p| p.pid != own && p.command.contains(&needle))
        .map(|p| p.pid)
        .collect();
    // Close over the parent relation: children of members are members.
    let mut grew = true;
    while grew {
        grew = false;
        for process in &processes {
            if process.pid != own
                && !members.contains(&process.pid)
                && members.contains(&process.ppid)
            {
                members.push(process.pid);
                grew = true;
            }
        }
    }
    processes
        .into_iter()
        .filter(|p| members.contains(&p.pid))
        .map(|p| InstanceProcess {
            pid: p.pid,
            command: p.command,
        })
        .collect()
}

struct ProcessEntry {
    pid: i32,
    ppid: i32,
    command: String,
}

/// Every live (non-zombie) process with its parent and command line.
fn list_processes() -> Vec<ProcessEntry> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
            let state = fields.next()?;
            let ppid = fields.next()?.parse().ok()?;
            if state == "Z" || state == "X" {
                return None;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let command = cmdline
                .split(|&b| b == 0)
                .filter(|arg| !arg.is_empty())
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            Some(ProcessEntry { pid, ppid, command })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_octal_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b\134c"), r"/tmp/a b\c");
        assert_eq!(unescape_mountinfo(r"/plain\"), r"/plain\");
    }

    #[test]
    fn this_process_is_never_an_instance_process() {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap();
        let pids: Vec<i32> = instance_processes(dir).iter().map(|p| p.pid).collect();
        assert!(!pids.contains(&(std::process::id() as i32)));
    }
}
