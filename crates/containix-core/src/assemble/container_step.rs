//! The containix step of creating a container, as a container runtime performs it.
//!
//! Between "containerd wrote the bundle" and "runc create", a runtime calls
//! [`ContainerStep::prepare`]: it reads the container's annotations from `config.json`, decides
//! whether containix has anything to do ([`decide`], pure), and if so resolves the request, holds a
//! GC root for the container, and rewrites the bundle so the closure is bind-mounted and the
//! program is the one asked for. [`ContainerStep::cleanup`] undoes every host-side effect; it is
//! idempotent, so a runtime can call it on delete, after a crash, or after a failed prepare.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use thiserror::Error;

use crate::assemble::bundle::{self, BundleError, CONFIG_FILE};
use crate::assemble::detached_worker::{InProcessSpawner, WorkerSpawner};
use crate::assemble::plan::{ImageKind, PlanInput, SpecPlan, plan};
use crate::assemble::store_facts::HostStore;
use crate::assemble::view::error::ViewError;
use crate::assemble::view::record::{boot_id, boot_started};
use crate::assemble::view::registry::{StoreViews, View};
use crate::request::annotations::{AnnotationError, PREFIX, PodAnnotations};
use crate::request::container_request::Request;
use crate::request::duration::millis;
use crate::request::policy::node_policy::NodePolicy;
use crate::resolve::inflight::board::{InflightBoard, WaitOutcome};
use crate::resolve::inflight::status::InflightState;
use crate::resolve::inflight::work_request::WorkRequest;
use crate::resolve::known_roots::KnownRoots;
use crate::resolve::{error::ResolveError, resolver::Resolver};
use crate::store::gc_roots::{GcRootError, GcRoots};

/// Annotation CRI sets to `sandbox` or `container`.
pub const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";

/// Annotation CRI sets to the container's name in the pod spec.
pub const CONTAINER_NAME_ANNOTATION: &str = "io.kubernetes.cri.container-name";

/// Annotation CRI sets to the pod sandbox id on every container of a pod.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

/// Annotation CRI sets to the pod's Kubernetes namespace on every container of a pod. containerd
/// writes it after the pod annotations it forwards, so a pod cannot set it; it picks the node
/// policy's settings for that namespace.
pub const SANDBOX_NAMESPACE_ANNOTATION: &str = "io.kubernetes.cri.sandbox-namespace";

/// The container name requests use when the runtime gives none (e.g. `ctr run`): only
/// pod-level annotations apply then.
pub const DEFAULT_CONTAINER_NAME: &str = "main";

/// Where per-container state lives, under the node's state dir.
const CONTAINERS_DIR: &str = "containers";

/// What containix does with a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run it exactly as runc would.
    Passthrough(PassthroughReason),
    /// Resolve this request and assemble the container from its closure.
    Prepare(Box<Request>),
}

/// Why a container runs untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassthroughReason {
    /// It is a pod's sandbox (pause) container.
    Sandbox,
    /// No `containix.dev/` annotation is present.
    NotContainix,
    /// It is listed in `containix.dev/passthrough`, or has no source.
    NoRequest,
}

impl PassthroughReason {
    /// A short phrase for logs.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Sandbox => "pod sandbox",
            Self::NotContainix => "no containix annotations",
            Self::NoRequest => "listed in passthrough or without a source",
        }
    }
}

/// Why the containix step failed. The messages are meant to follow `containix: ` in a pod event.
#[derive(Debug, Error)]
pub enum StepError {
    /// The bundle's `config.json` could not be read.
    #[error("reading the container spec {path:?}: {message}")]
    Spec {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The annotations are invalid.
    #[error(transparent)]
    Annotations(#[from] AnnotationError),
    /// Resolving the closure failed.
    #[error(transparent)]
    Resolve(Box<ResolveError>),
    /// The node's detached resolution of the request is still running at the caller's deadline.
    #[error("{summary}; kubelet will retry")]
    StillResolving {
        /// Where it stands, e.g. `still building /nix/store/...-app.drv (3 of 7 ..., 1 m 40 s)`.
        summary: String,
    },
    /// The node's detached resolution of the request failed.
    #[error("{0}")]
    Detached(String),
    /// The node's board of detached resolutions could not be used.
    #[error("the node's in-flight resolutions in {}: {source}", path.display())]
    Inflight {
        /// The board's directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The closure's store view could not be taken or released.
    #[error(transparent)]
    View(Box<ViewError>),
    /// The GC root could not be taken or released.
    #[error("GC root for container {container}: {source}")]
    GcRoot {
        /// The container id.
        container: String,
        /// What went wrong.
        source: Box<GcRootError>,
    },
    /// The bundle could not be edited or cleaned up.
    #[error("container {container}: {source}")]
    Bundle {
        /// The container id.
        container: String,
        /// What went wrong.
        source: Box<BundleError>,
    },
    /// The container's state directory could not be created.
    #[error("creating {path:?}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

impl From<ResolveError> for StepError {
    fn from(error: ResolveError) -> Self {
        Self::Resolve(Box::new(error))
    }
}

impl From<ViewError> for StepError {
    fn from(error: ViewError) -> Self {
        Self::View(Box::new(error))
    }
}

/// What [`ContainerStep::prepare`] did.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing: the container runs untouched.
    Passthrough(PassthroughReason),
    /// The bundle now runs the closure.
    Prepared(Box<Prepared>),
}

/// A container containix prepared.
#[derive(Debug)]
pub struct Prepared {
    /// The request read from the annotations.
    pub request: Request,
    /// What it resolved to: the closure's roots and the package's program, name and version.
    /// The closure itself is the view's (see [`View::members`] and [`View::closure`]).
    pub resolution: KnownRoots,
    /// The store view the container mounts at `/nix/store`.
    pub view: View,
    /// The edits made to the spec.
    pub plan: SpecPlan,
    /// Whether the rootfs was the empty image or a normal one.
    pub image: ImageKind,
    /// How long each stage took, in order: `resolve` and `view`, or only `view` when the
    /// node already had the closure's view (no daemon, no evaluation), then `assemble`, then
    /// `plan`, the part of `assemble` spent planning the spec (the rest writes the bundle).
    pub stages: Vec<(&'static str, Duration)>,
}

impl Prepared {
    /// How long `stage` took, in milliseconds to a tenth (0 for a stage not run).
    pub fn stage_ms(&self, stage: &str) -> f64 {
        self.stages
            .iter()
            .find(|(name, _)| *name == stage)
            .map_or(0.0, |(_, took)| millis(*took))
    }

    /// Logs what was prepared and how long each stage took (one info event), and every
    /// closure member that got no mount (a warning each).
    fn log(&self, container_id: &str) {
        let root = self.resolution.roots.first();
        tracing::info!(
            container_id,
            container = %self.request.container,
            root = root.map(tracing::field::display),
            paths = self.view.member_count,
            nar_size = self.view.nar_size,
            view = %self.view.id,
            mechanism = %self.view.mechanism,
            resolve_ms = self.stage_ms("resolve"),
            view_ms = self.stage_ms("view"),
            assemble_ms = self.stage_ms("assemble"),
            plan_ms = self.stage_ms("plan"),
            "container prepared"
        );
        for skipped in &self.plan.skipped {
            tracing::warn!(container_id, ?skipped, "closure member not mounted");
        }
    }
}

/// Decides what to do with a container from its spec annotations. Pure.
///
/// A pod sandbox runs untouched, but its spec carries the pod's `containix.dev/*` annotations
/// too: bad ones are refused there already, so RunPodSandbox fails with the error (the
/// earliest call of a pod that reaches the shim; CRI's CreateContainer never does).
pub fn decide(annotations: &BTreeMap<String, String>) -> Result<Decision, AnnotationError> {
    let asks_containix = annotations.keys().any(|key| key.starts_with(PREFIX));
    if annotations
        .get(CONTAINER_TYPE_ANNOTATION)
        .is_some_and(|kind| kind == "sandbox")
    {
        if asks_containix {
            PodAnnotations::parse(annotations)?;
        }
        return Ok(Decision::Passthrough(PassthroughReason::Sandbox));
    }
    if !asks_containix {
        return Ok(Decision::Passthrough(PassthroughReason::NotContainix));
    }
    let pod = PodAnnotations::parse(annotations)?;
    let name = annotations
        .get(CONTAINER_NAME_ANNOTATION)
        .map_or(DEFAULT_CONTAINER_NAME, String::as_str);
    Ok(match pod.request_for(name)? {
        Some(mut request) => {
            request.namespace = annotations
                .get(SANDBOX_NAMESPACE_ANNOTATION)
                .filter(|namespace| !namespace.is_empty())
                .cloned();
            Decision::Prepare(Box::new(request))
        }
        None => Decision::Passthrough(PassthroughReason::NoRequest),
    })
}

/// Whether a rootfs is the empty image's: nothing in it but empty directories.
pub fn image_kind_of(rootfs: &Path) -> ImageKind {
    fn only_empty_dirs(dir: &Path) -> bool {
        let Ok(entries) = fs::read_dir(dir) else {
            return false;
        };
        entries.into_iter().all(|entry| {
            entry.is_ok_and(|entry| {
                entry.file_type().is_ok_and(|kind| kind.is_dir()) && only_empty_dirs(&entry.path())
            })
        })
    }
    match fs::symlink_metadata(rootfs) {
        Ok(meta) if meta.is_dir() && only_empty_dirs(rootfs) => ImageKind::Empty,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => ImageKind::Empty,
        _ => ImageKind::Normal,
    }
}

/// The containix step, with everything it needs: a resolver, the node's store views, its board
/// of detached resolutions and the way to start their workers, and its GC roots.
pub struct ContainerStep {
    resolver: Resolver,
    views: StoreViews,
    board: InflightBoard,
    spawner: Arc<dyn WorkerSpawner>,
    gc_roots: GcRoots,
    containers_dir: PathBuf,
}

/// How long a shim waits for a worker it started to show up on the board.
const WORKER_START_LIMIT: Duration = Duration::from_secs(10);

/// How often a shim waiting for a detached resolution logs its progress.
const PROGRESS_REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// How often a prepare asks the node for a detached resolution whose result went away before
/// it was taken (a burst of pods, or a worker that finished meanwhile).
const DETACHED_ATTEMPTS: u32 = 3;

/// How much of its caller's deadline a prepare leaves for the answer to travel back.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// How many times a container resolves again when the view its resolution made went before
/// the container took it (the worker let go of it in that moment).
const VIEW_TAKE_ATTEMPTS: usize = 3;

impl ContainerStep {
    /// A step using `policy` (state dir, daemon socket, allowed refs, deadlines).
    pub fn new(policy: NodePolicy) -> Self {
        Self::with_resolver(Resolver::new(policy))
    }

    /// A step using an already configured resolver (tests pass daemon settings this way).
    pub fn with_resolver(resolver: Resolver) -> Self {
        let policy = resolver.policy();
        let state_dir = policy.state_dir.clone();
        let gc_roots = GcRoots::new(&state_dir);
        Self {
            views: StoreViews::new(policy.view_dir(), gc_roots.clone(), policy.store_view),
            board: InflightBoard::new(&state_dir),
            spawner: Arc::new(InProcessSpawner::new(resolver.clone())),
            gc_roots,
            containers_dir: state_dir.join(CONTAINERS_DIR),
            resolver,
        }
    }

    /// Starts detached resolutions with `spawner` (the shim starts worker processes) instead
    /// of as tasks of this process.
    pub fn with_spawner(mut self, spawner: Arc<dyn WorkerSpawner>) -> Self {
        self.spawner = spawner;
        self
    }

    /// The node's board of detached resolutions.
    pub fn board(&self) -> &InflightBoard {
        &self.board
    }

    /// The node's store views.
    pub fn views(&self) -> &StoreViews {
        &self.views
    }

    /// The resolver in use.
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// The per-container state directory of `container_id`.
    pub fn state_dir(&self, container_id: &str) -> PathBuf {
        self.containers_dir.join(container_id)
    }

    /// Runs the step for container `container_id` whose bundle is `bundle`; the rootfs must
    /// already be mounted at `bundle/rootfs` (or be named by the spec's `root.path`). On
    /// failure, nothing is left behind.
    pub async fn prepare(&self, container_id: &str, bundle: &Path) -> Result<Outcome, StepError> {
        self.prepare_until(container_id, bundle, None).await
    }

    /// [`prepare`](Self::prepare), answering by `deadline` (the caller's, e.g. the kubelet's
    /// CRI deadline as ttrpc carries it): a resolution still running then goes on, detached, and
    /// the error says how far it got; a later call for the same request attaches to it.
    pub async fn prepare_until(
        &self,
        container_id: &str,
        bundle: &Path,
        deadline: Option<Instant>,
    ) -> Result<Outcome, StepError> {
        let annotations = read_annotations(&bundle.join(CONFIG_FILE))?;
        let pod = annotations
            .get(SANDBOX_ID_ANNOTATION)
            .map_or(container_id, String::as_str)
            .to_owned();
        let request = match decide(&annotations)? {
            Decision::Passthrough(reason) => return Ok(Outcome::Passthrough(reason)),
            Decision::Prepare(request) => request,
        };
        crate::store::gc_roots::validate_consumer(container_id).map_err(|source| {
            StepError::GcRoot {
                container: container_id.to_owned(),
                source: Box::new(source),
            }
        })?;
        let answer_by = deadline.map(|d| d.checked_sub(ANSWER_MARGIN).unwrap_or(d));
        let result = self
            .prepare_request(container_id, &pod, bundle, *request, answer_by)
            .await;
        if result.is_err() {
            // The error that stopped the step matters more than a failed undo.
            let _ = self.cleanup(container_id).await;
        }
        result
    }

    async fn prepare_request(
        &self,
        container_id: &str,
        pod: &str,
        bundle: &Path,
        request: Request,
        answer_by: Option<Instant>,
    ) -> Result<Outcome, StepError> {
        let mut stages = Vec::with_capacity(3);
        let started = Instant::now();
        let (view, resolution) = match self.reuse_view(&request, container_id).await? {
            Some(reused) => {
                stages.push(("view", started.elapsed()));
                reused
            }
            None => {
                let mut attempts = 0;
                loop {
                    let known = self.resolve_detached(&request, pod, answer_by).await?;
                    stages.push(("resolve", started.elapsed()));
                    let started = Instant::now();
                    let taken = self.view_of(known, container_id).await?;
                    self.board
                        .forget_pod(pod)
                        .map_err(|source| self.inflight_error(source))?;
                    stages.push(("view", started.elapsed()));
                    attempts += 1;
                    match taken {
                        Some(reused) => break reused,
                        // The worker let go of the view it made, and no one else held it, just
                        // before this container took it (it read the result as the worker was
                        // finishing): resolve again, which makes the view again.
                        None if attempts < VIEW_TAKE_ATTEMPTS => {
                            tracing::info!(
                                container = container_id,
                                "the resolved closure's view went before this container took it; \
                                 resolving again"
                            );
                            self.until_finished_worker_leaves(&request).await;
                        }
                        None => {
                            return Err(StepError::Detached(format!(
                                "container {}: the node resolved the request, but its store view \
                                 was removed before this container took it; kubelet will retry",
                                request.container
                            )));
                        }
                    }
                }
            }
        };

        let started = Instant::now();
        let state_dir = self.state_dir(container_id);
        fs::create_dir_all(&self.containers_dir).map_err(|source| StepError::StateDir {
            path: self.containers_dir.clone(),
            source,
        })?;
        let image = image_kind_of(&rootfs_of(bundle)?);
        let entrypoint = request.entrypoint.as_ref().map(|e| e.as_str().to_owned());
        let mut planned_in = Duration::ZERO;
        let members = view.members();
        let prepared = bundle::prepare_bundle(bundle, &state_dir, |base| {
            let planning = Instant::now();
            let planned = plan(
                &PlanInput {
                    roots: &resolution.roots,
                    members: &members,
                    main_program: resolution.main_program.as_deref(),
                    base,
                    entrypoint: entrypoint.as_deref(),
                    image,
                    state_dir: &state_dir,
                    store_view: Some(&view.store),
                    ca_bundles: view.ca_bundles.as_deref(),
                },
                &HostStore,
            );
            planned_in = planning.elapsed();
            planned
        })
        .map_err(|source| StepError::Bundle {
            container: container_id.to_owned(),
            source: Box::new(source),
        })?;
        stages.push(("assemble", started.elapsed()));
        stages.push(("plan", planned_in));
        let prepared = Prepared {
            request,
            resolution,
            view,
            plan: prepared.plan,
            image,
            stages,
        };
        prepared.log(container_id);
        Ok(Outcome::Prepared(Box::new(prepared)))
    }

    /// The view of a request whose roots this node knows without the daemon (see
    /// [`Resolver::resolve_offline`]) and whose view is already made: a repeat start with no
    /// daemon round trip. `None` when a full resolution is needed.
    async fn reuse_view(
        &self,
        request: &Request,
        consumer: &str,
    ) -> Result<Option<(View, KnownRoots)>, StepError> {
        let Some(known) = self.resolver.resolve_offline(request)? else {
            return Ok(None);
        };
        let Some(view) = self.views.acquire_existing(&known.roots, consumer).await? else {
            return Ok(None);
        };
        Ok(Some((view, known)))
    }

    /// The view a finished detached resolution made, taken for `consumer`; `None` when it is
    /// gone already.
    async fn view_of(
        &self,
        known: KnownRoots,
        consumer: &str,
    ) -> Result<Option<(View, KnownRoots)>, StepError> {
        let view = self.views.acquire_existing(&known.roots, consumer).await?;
        Ok(view.map(|view| (view, known)))
    }

    /// Waits (for at most [`WORKER_START_LIMIT`]) until the finished resolution of `request`
    /// is off the board, as its worker takes it off before letting go of the view it held: a
    /// new post then starts a new resolution rather than reading the old result again.
    async fn until_finished_worker_leaves(&self, request: &Request) {
        let key = WorkRequest::of(request, &self.resolver.policy().system).key();
        let limit = Instant::now() + WORKER_START_LIMIT;
        while self
            .board
            .status(&key)
            .is_some_and(|status| status.state == InflightState::Done)
            && Instant::now() < limit
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the node's detached resolution of `request` (starting one if none runs) until
    /// `answer_by`, with `pod` among its waiters.
    async fn resolve_detached(
        &self,
        request: &Request,
        pod: &str,
        answer_by: Option<Instant>,
    ) -> Result<KnownRoots, StepError> {
        let policy = self.resolver.policy();
        let work = WorkRequest::of(request, &policy.system);
        let key = self
            .board
            .post(&work, pod)
            .map_err(|source| self.inflight_error(source))?;
        // Never longer than the resolution itself may take, plus the time to start a worker.
        let own_limit = Instant::now()
            + policy
                .scope(request.namespace.as_deref())
                .effective_timeout(request.timeout)
            + WORKER_START_LIMIT;
        let until = answer_by.map_or(own_limit, |d| d.min(own_limit));
        let mut spawned = 0;
        loop {
            // Wake up now and then to report progress to the shim's log.
            let report_at = (Instant::now() + PROGRESS_REPORT_INTERVAL).min(until);
            match self.board.wait(&key, report_at).await {
                WaitOutcome::Pending(Some(status)) if report_at < until => {
                    tracing::info!(
                        key,
                        request = %status.request,
                        progress = %status.summary(now_ms()),
                        "waiting for the node's resolution"
                    );
                }
                WaitOutcome::Pending(None) if report_at < until => {}
                WaitOutcome::Done(result) => return Ok(result.into()),
                WaitOutcome::Failed(message) => {
                    self.board
                        .withdraw(&key, pod)
                        .map_err(|source| self.inflight_error(source))?;
                    return Err(StepError::Detached(message));
                }
                WaitOutcome::Pending(status) => {
                    let summary = status.map_or_else(
                        || "waiting for the node's resolution to start".to_owned(),
                        |s| s.summary(now_ms()),
                    );
                    return Err(StepError::StillResolving { summary });
                }
                WaitOutcome::NoWorker if spawned >= DETACHED_ATTEMPTS => {
                    return Err(StepError::Detached(format!(
                        "container {}: the node's resolution of {} did not start within {} s",
                        request.container,
                        work.describe(),
                        WORKER_START_LIMIT.as_secs()
                    )));
                }
                WaitOutcome::NoWorker => {
                    // A worker that finished meanwhile removed the request with its waiters:
                    // post again before starting one.
                    self.board
                        .post(&work, pod)
                        .map_err(|source| self.inflight_error(source))?;
                    self.spawner
                        .spawn(&key)
                        .map_err(|source| self.inflight_error(source))?;
                    spawned += 1;
                    let limit = Instant::now() + WORKER_START_LIMIT;
                    let mut poll = Duration::from_millis(1);
                    while !self.board.worker_running(&key)
                        && self.board.status(&key).is_none()
                        && Instant::now() < limit
                    {
                        tokio::time::sleep(poll).await;
                        poll = (poll * 2).min(Duration::from_millis(10));
                    }
                }
            }
        }
    }

    /// Cleans up after every container prepared in an earlier boot (its manifest says so): a
    /// reboot ends containers without a Task.Delete, and containerd, whose state is on a tmpfs,
    /// no longer knows them. Returns their ids. Containers of this boot, and those of
    /// containix 0.1 (whose manifests record no boot), are left alone.
    pub async fn sweep_containers(&self) -> Result<Vec<String>, StepError> {
        let entries = match fs::read_dir(&self.containers_dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StepError::StateDir {
                    path: self.containers_dir.clone(),
                    source,
                });
            }
        };
        let this_boot = boot_id();
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let Ok(id) = entry.file_name().into_string() else {
                continue;
            };
            let prepared_in = match bundle::prepared_in_boot(&entry.path()) {
                Ok(prepared_in) => prepared_in,
                Err(source @ BundleError::Manifest { .. })
                    if changed_before(&entry.path(), boot_started()) =>
                {
                    // Torn by a power loss (nothing is synced): the container is gone anyway.
                    tracing::warn!(container = id, %source, "discarding state of an earlier boot");
                    self.clean_up(&id, StateRemoval::Whole).await?;
                    removed.push(id);
                    continue;
                }
                Err(source) => {
                    return Err(StepError::Bundle {
                        container: id.clone(),
                        source: Box::new(source),
                    });
                }
            };
            if prepared_in.is_some_and(|boot| boot != this_boot) {
                self.cleanup(&id).await?;
                removed.push(id);
            }
        }
        removed.sort();
        Ok(removed)
    }

    fn inflight_error(&self, source: std::io::Error) -> StepError {
        StepError::Inflight {
            path: self.board.work_dir(""),
            source,
        }
    }

    /// Removes every host-side effect of [`prepare`](Self::prepare) for `container_id`: its use
    /// of the store view (and the view itself, with its GC root, when it was the last user),
    /// a GC root of its own (held by containers made before store views), and its state
    /// directory. Succeeds when there is nothing to remove.
    pub async fn cleanup(&self, container_id: &str) -> Result<(), StepError> {
        self.clean_up(container_id, StateRemoval::ByManifest).await
    }

    async fn clean_up(&self, container_id: &str, state: StateRemoval) -> Result<(), StepError> {
        if crate::store::gc_roots::validate_consumer(container_id).is_err() {
            return Ok(());
        }
        // A pod's sandbox is deleted last: it waits for no resolution any more.
        self.board
            .forget_pod(container_id)
            .map_err(|source| self.inflight_error(source))?;
        let view_result = self.views.release(container_id).await.map(drop);
        let gc_result = self
            .gc_roots
            .release(container_id)
            .map_err(|source| StepError::GcRoot {
                container: container_id.to_owned(),
                source: Box::new(source),
            });
        let state_dir = self.state_dir(container_id);
        match state {
            StateRemoval::ByManifest => bundle::cleanup(&state_dir),
            StateRemoval::Whole => bundle::discard(&state_dir),
        }
        .map_err(|source| StepError::Bundle {
            container: container_id.to_owned(),
            source: Box::new(source),
        })?;
        view_result?;
        gc_result
    }
}

/// How [`ContainerStep::clean_up`] removes a container's state directory.
#[derive(Debug, Clone, Copy)]
enum StateRemoval {
    /// What its manifest records, then the directory if containix made it.
    ByManifest,
    /// The whole directory: its manifest cannot be read.
    Whole,
}

/// Whether `path` was last changed before `boot` began (never, when the boot time is unknown).
fn changed_before(path: &Path, boot: Option<std::time::SystemTime>) -> bool {
    let changed = fs::symlink_metadata(path).and_then(|meta| meta.modified());
    matches!((changed, boot), (Ok(changed), Some(boot)) if changed < boot)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The annotations of the spec at `config`, as a map.
pub fn read_annotations(config: &Path) -> Result<BTreeMap<String, String>, StepError> {
    let error = |message: String| StepError::Spec {
        path: config.to_owned(),
        message,
    };
    let text = fs::read(config).map_err(|err| error(err.to_string()))?;
    annotations_of_spec(&text).map_err(error)
}

/// The annotations of the OCI spec `text` (a `config.json`), as a map; absent or `null`
/// annotations are an empty map. The error says what was wrong, for a [`StepError::Spec`].
pub fn annotations_of_spec(text: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let spec: serde_json::Value = serde_json::from_slice(text).map_err(|err| err.to_string())?;
    match spec.get("annotations") {
        None | Some(serde_json::Value::Null) => Ok(BTreeMap::new()),
        Some(value) => {
            serde_json::from_value(value.clone()).map_err(|err| format!("`annotations`: {err}"))
        }
    }
}

/// The rootfs directory of a bundle: the spec's `root.path`, relative to the bundle.
fn rootfs_of(bundle: &Path) -> Result<PathBuf, StepError> {
    let config = bundle.join(CONFIG_FILE);
    let error = |message: String| StepError::Spec {
        path: config.clone(),
        message,
    };
    let text = fs::read(&config).map_err(|err| error(err.to_string()))?;
    let spec: serde_json::Value =
        serde_json::from_slice(&text).map_err(|err| error(err.to_string()))?;
    let root = spec
        .pointer("/root/path")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("rootfs");
    Ok(bundle.join(root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::container_request::Source;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const FLAKE: (&str, &str) = ("containix.dev/flake", "github:org/app#default");

    #[test]
    fn sandboxes_and_plain_containers_pass_through() {
        let sandbox = annotations(&[(CONTAINER_TYPE_ANNOTATION, "sandbox"), FLAKE]);
        assert_eq!(
            decide(&sandbox).unwrap(),
            Decision::Passthrough(PassthroughReason::Sandbox)
        );
        let bare_sandbox = annotations(&[(CONTAINER_TYPE_ANNOTATION, "sandbox")]);
        assert_eq!(
            decide(&bare_sandbox).unwrap(),
            Decision::Passthrough(PassthroughReason::Sandbox)
        );
        let plain = annotations(&[(CONTAINER_TYPE_ANNOTATION, "container")]);
        assert_eq!(
            decide(&plain).unwrap(),
            Decision::Passthrough(PassthroughReason::NotContainix)
        );
        let listed = annotations(&[
            (CONTAINER_TYPE_ANNOTATION, "container"),
            (CONTAINER_NAME_ANNOTATION, "sidecar"),
            ("containix.dev/passthrough", "sidecar"),
            FLAKE,
        ]);
        assert_eq!(
            decide(&listed).unwrap(),
            Decision::Passthrough(PassthroughReason::NoRequest)
        );
    }

    #[test]
    fn containix_containers_get_their_request() {
        let pod = annotations(&[
            (CONTAINER_TYPE_ANNOTATION, "container"),
            (CONTAINER_NAME_ANNOTATION, "app"),
            FLAKE,
            ("containix.dev/entrypoint", "/bin/app"),
        ]);
        let Decision::Prepare(request) = decide(&pod).unwrap() else {
            panic!("expected a request")
        };
        assert_eq!(request.container, "app");
        assert!(matches!(request.source, Source::Flake(_)));
        assert_eq!(request.entrypoint.unwrap().as_str(), "/bin/app");

        // Without CRI (`ctr run --annotation ...`) the pod-level annotations apply.
        let Decision::Prepare(request) = decide(&annotations(&[FLAKE])).unwrap() else {
            panic!("expected a request")
        };
        assert_eq!(request.container, DEFAULT_CONTAINER_NAME);
        assert_eq!(request.namespace, None);
    }

    #[test]
    fn the_namespace_comes_from_the_runtime_s_annotation_only() {
        let pod = annotations(&[
            (CONTAINER_TYPE_ANNOTATION, "container"),
            (SANDBOX_NAMESPACE_ANNOTATION, "team-a"),
            FLAKE,
        ]);
        let Decision::Prepare(request) = decide(&pod).unwrap() else {
            panic!("expected a request")
        };
        assert_eq!(request.namespace.as_deref(), Some("team-a"));
        let empty = annotations(&[(SANDBOX_NAMESPACE_ANNOTATION, ""), FLAKE]);
        let Decision::Prepare(request) = decide(&empty).unwrap() else {
            panic!("expected a request")
        };
        assert_eq!(request.namespace, None);
        // A pod cannot name one through the annotations containix reads.
        let spoof = annotations(&[FLAKE, ("containix.dev/namespace", "kube-system")]);
        let err = decide(&spoof).unwrap_err().to_string();
        assert!(
            err.contains("unknown annotation `containix.dev/namespace`"),
            "{err}"
        );
    }

    #[test]
    fn bad_annotations_are_errors_naming_the_key() {
        let typo = annotations(&[("containix.dev/flak", "github:org/app")]);
        let err = decide(&typo).unwrap_err().to_string();
        assert!(err.contains("containix.dev/flak"), "{err}");
        let option_like = annotations(&[("containix.dev/flake", "--impure")]);
        let err = decide(&option_like).unwrap_err().to_string();
        assert!(err.contains("containix.dev/flake"), "{err}");
    }

    #[tokio::test]
    async fn containers_of_an_earlier_boot_are_cleaned_up_and_the_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let policy = NodePolicy {
            state_dir: dir.path().to_owned(),
            ..NodePolicy::default()
        };
        let step = ContainerStep::new(policy);
        let prepared = |id: &str, boot: Option<String>| {
            let state = step.state_dir(id);
            fs::create_dir_all(&state).unwrap();
            fs::write(state.join("passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
            let manifest = bundle::Manifest {
                created_state_dir: true,
                files: vec![state.join("passwd")],
                boot_id: boot,
            };
            fs::write(
                state.join(bundle::MANIFEST_FILE),
                serde_json::to_vec(&manifest).unwrap(),
            )
            .unwrap();
        };
        // A power loss can leave a manifest torn: the sweep discards such a directory when it
        // is older than the boot, and refuses to guess about one of this boot.
        let torn = |id: &str, age: Duration| {
            let state = step.state_dir(id);
            fs::create_dir_all(&state).unwrap();
            fs::write(state.join("passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
            fs::write(state.join(bundle::MANIFEST_FILE), "{\"createdSt").unwrap();
            let when = boot_started().unwrap() - age;
            fs::File::open(&state).unwrap().set_modified(when).unwrap();
        };
        torn("torn-now", Duration::ZERO);
        let err = step.sweep_containers().await.unwrap_err().to_string();
        assert!(err.contains("manifest"), "{err}");
        assert!(step.state_dir("torn-now").join("passwd").exists());
        fs::remove_dir_all(step.state_dir("torn-now")).unwrap();

        prepared("before-reboot", Some("an earlier boot".into()));
        prepared("running", Some(boot_id()));
        prepared("from-0.1", None);
        torn("torn", Duration::from_secs(1));
        assert_eq!(
            step.sweep_containers().await.unwrap(),
            ["before-reboot", "torn"]
        );
        assert!(!step.state_dir("torn").exists());
        assert!(!step.state_dir("before-reboot").exists());
        assert!(step.state_dir("running").join("passwd").exists());
        assert!(step.state_dir("from-0.1").join("passwd").exists());
        assert_eq!(step.sweep_containers().await.unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_sandbox_refuses_the_pods_bad_annotations() {
        let typo = annotations(&[
            (CONTAINER_TYPE_ANNOTATION, "sandbox"),
            ("containix.dev/flak", "github:org/app"),
        ]);
        let err = decide(&typo).unwrap_err().to_string();
        assert!(err.contains("containix.dev/flak"), "{err}");
        let two_sources = annotations(&[
            (CONTAINER_TYPE_ANNOTATION, "sandbox"),
            FLAKE,
            ("containix.dev/store-paths", "/nix/store/x"),
        ]);
        let err = decide(&two_sources).unwrap_err().to_string();
        assert!(err.contains("containix.dev/store-paths"), "{err}");
    }

    #[test]
    fn empty_rootfs_means_the_empty_image() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        assert_eq!(image_kind_of(&rootfs), ImageKind::Empty);
        fs::create_dir_all(rootfs.join("dev/pts")).unwrap();
        assert_eq!(image_kind_of(&rootfs), ImageKind::Empty);
        fs::write(rootfs.join("dev/null-ish"), b"").unwrap();
        assert_eq!(image_kind_of(&rootfs), ImageKind::Normal);
    }

    #[test]
    fn reads_annotations_from_a_spec() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join(CONFIG_FILE);
        fs::write(
            &config,
            br#"{"ociVersion":"1.0.2","annotations":{"a":"b"}}"#,
        )
        .unwrap();
        assert_eq!(
            read_annotations(&config).unwrap(),
            annotations(&[("a", "b")])
        );
        fs::write(&config, br#"{"ociVersion":"1.0.2"}"#).unwrap();
        assert!(read_annotations(&config).unwrap().is_empty());
        fs::write(&config, br#"{"annotations":{"a":1}}"#).unwrap();
        let err = read_annotations(&config).unwrap_err().to_string();
        assert!(err.contains("`annotations`"), "{err}");
        let err = read_annotations(&dir.path().join("missing.json")).unwrap_err();
        assert!(err.to_string().contains("missing.json"), "{err}");
    }
}
