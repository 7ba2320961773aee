//! The resolver: from a typed [`Request`] to a [`Resolved`] closure that is valid in the local
//! store, held by the daemon until the caller has rooted it.
//!
//! - `Source::Flake`: the node policy (the settings of the request's namespace) checks the
//!   parsed flake ref against its allowed prefixes, resolving local paths on the node; `nix
//!   eval` gives the derivation and outputs of the ref the policy checked (local paths written
//!   as resolved), and the daemon builds (`Realise::Build`) or only substitutes
//!   (`Realise::Substitute`) them, as the namespace's settings allow.
//! - `Source::StorePaths`: the daemon substitutes whatever is missing; nothing is evaluated or
//!   built.
//! - `Source::Packages`: each name is evaluated in the policy's package set and realised like
//!   a flake; the roots are every package's outputs.
//!
//! One deadline covers the whole resolution; an expired one names the step that was running.
//!
//! **Lock, then evaluate once per lock.** A flake ref that may move (a branch, a folder) is
//! first locked (`nix flake metadata`; the lock is cached, see [`super::lock_cache`]), and the
//! locked installable is evaluated once per node: a file lock per lock or installable
//! serialises concurrent resolutions in any process, an on-disk cache remembers the result
//! (and, briefly, a failure), and at most `max-concurrent-evaluations` `nix` processes run at
//! once. A ref whose lock changed drops the evaluations of its old lock.
//!
//! **No GC window.** Every root is registered as a temp root (`AddTempRoot`) on the resolution's
//! daemon connection *before* it is realised, so from the moment it becomes valid until that
//! connection closes, the garbage collector keeps it and its closure. The connection is owned
//! by the returned [`Resolution`]; [`Resolution::hold`] creates the permanent, per-consumer roots
//! over that same connection and only then closes it. A derivation from `nix eval` is
//! temp-rooted the same way, and checked to still be valid before it is built (if a collection
//! removed it in between, it is evaluated again).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::request::container_request::{PackageName, Request, Source};
use crate::request::flake_ref::{AttrPath, FlakeInstallable, FlakeRef};
use crate::request::policy::node_policy::{NodePolicy, Realise};
use crate::store::daemon::{client::DaemonClient, error::DaemonError};
use crate::store::drv_name::parse_drv_name;
use crate::store::gc_roots::{GcRootError, GcRoots};
use crate::store::store_path::StorePath;

use super::cache::{
    CacheKey, CachedEvaluation, EvaluationRecord, FAILURE_TTL, ResolutionCache, stale_entries,
};
use super::error::ResolveError;
use super::flake_eval::{self, EvalError, FlakeEvaluation};
use super::flake_lock;
use super::known_roots::KnownRoots;
use super::lock_cache::{LockCache, LockEntry, LockReuse, is_fresh, lock_reuse};
use super::process_runner::{ProcessRunner, TokioRunner};
use super::progress::ResolveProgress;
use super::realise::{self, Target};
use super::resolved::Resolved;
use super::run::{Run, StepError};
use super::single_flight::{KeyLock, LockDir, LockError};
use super::source_fingerprint;
use super::step::{Deadline, Step};

/// The name of the node's evaluation slots in the lock directory.
const EVALUATION_SLOT: &str = "evaluation-slot";

/// Resolves requests under one node policy. Cheap to share: it holds no connection, and
/// concurrent calls are independent (except that they share the cache and the locks).
#[derive(Debug, Clone)]
pub struct Resolver {
    policy: NodePolicy,
    daemon_settings: BTreeMap<String, String>,
    cache: ResolutionCache,
    lock_cache: LockCache,
    locks: LockDir,
    runner: Arc<dyn ProcessRunner>,
}

/// A resolved request whose paths the daemon keeps alive (as temp roots of this resolution's
/// connection) until the caller roots them with [`Resolution::hold`] or lets them go.
#[derive(Debug)]
pub struct Resolution {
    resolved: Resolved,
    client: DaemonClient,
}

impl Resolution {
    /// What the request resolved to.
    pub fn resolved(&self) -> &Resolved {
        &self.resolved
    }

    /// The daemon connection holding the temp roots, for further operations that must happen
    /// before they lapse.
    pub fn client(&mut self) -> &mut DaemonClient {
        &mut self.client
    }

    /// Roots the closure for `consumer` (see [`GcRoots::hold`]) over the connection that holds
    /// the temp roots, then closes it: the closure is protected without a gap.
    pub async fn hold(
        mut self,
        gc_roots: &GcRoots,
        consumer: &str,
    ) -> Result<Resolved, GcRootError> {
        gc_roots
            .hold(consumer, &self.resolved.roots, &mut self.client)
            .await?;
        Ok(self.resolved)
    }

    /// Closes the connection without rooting anything: from now on the garbage collector may
    /// collect the closure. For callers that only report what a request resolves to.
    pub fn into_unrooted(self) -> Resolved {
        self.resolved
    }
}

impl Resolver {
    /// A resolver for `policy`. The daemon's own configuration (`nix.conf`) decides
    /// substituters and keys.
    pub fn new(policy: NodePolicy) -> Self {
        Self {
            cache: ResolutionCache::new(&policy.state_dir),
            lock_cache: LockCache::new(&policy.state_dir),
            locks: LockDir::new(&policy.state_dir),
            policy,
            daemon_settings: BTreeMap::new(),
            runner: Arc::new(TokioRunner),
        }
    }

    /// Runs `nix eval` through `runner` instead of letting tokio reap it (a containerd shim,
    /// whose reaper collects every child, needs this).
    pub fn with_process_runner(mut self, runner: Arc<dyn ProcessRunner>) -> Self {
        self.runner = runner;
        self
    }

    /// Daemon settings sent with `SetOptions` on each resolution's connection, e.g.
    /// `substituters` and `trusted-public-keys` (the daemon honours most of them only for
    /// trusted users). Empty by default, and then `SetOptions` is never sent. When it is sent,
    /// the protocol's fixed fields are sent too, with [`crate::store::daemon::options::DaemonOptions`]'s
    /// defaults (for instance one build job), which replace `nix.conf`'s for this connection,
    /// except the log verbosity, which is `Warn` so that the daemon still reports warnings.
    pub fn with_daemon_settings<K, V>(mut self, settings: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.daemon_settings = settings
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self
    }

    /// The node policy.
    pub fn policy(&self) -> &NodePolicy {
        &self.policy
    }

    /// The cache of locked resolutions.
    pub fn cache(&self) -> &ResolutionCache {
        &self.cache
    }

    /// Resolves `request` to a closure valid in the local store.
    pub async fn resolve(&self, request: &Request) -> Result<Resolution, ResolveError> {
        self.resolve_inner(request, None).await
    }

    /// As [`Resolver::resolve`], publishing the running step and the daemon's progress on
    /// `progress`.
    pub async fn resolve_with_progress(
        &self,
        request: &Request,
        progress: &watch::Sender<ResolveProgress>,
    ) -> Result<Resolution, ResolveError> {
        let result = self.resolve_inner(request, Some(progress)).await;
        progress.send_modify(|p| p.step = None);
        result
    }

    /// What `request` resolves to when that is known without the daemon or an evaluation:
    /// store paths, or a locked flake (or locked package set) whose evaluation is cached. The
    /// node policy is checked first, as for [`Resolver::resolve`]: a cached request the policy
    /// now refuses is refused. `Ok(None)` means only a full resolution can tell.
    pub fn resolve_offline(&self, request: &Request) -> Result<Option<KnownRoots>, ResolveError> {
        let installables = match &request.source {
            Source::StorePaths(paths) => {
                let Some(first) = paths.first() else {
                    return Err(ResolveError::Empty {
                        container: request.container.clone(),
                    });
                };
                let (name, version) = parse_drv_name(first.name());
                return Ok(Some(KnownRoots {
                    roots: paths.clone(),
                    main_program: None,
                    package_name: Some(name.to_owned()),
                    package_version: version.map(str::to_owned),
                }));
            }
            Source::Flake(installable) => vec![self.allowed_installable(request, installable)?],
            Source::Packages(names) => self.package_installables(request, names)?,
        };
        let mut roots = Vec::new();
        let mut first = None;
        for installable in &installables {
            let Some(locked) = self.cached_locked_installable(installable) else {
                return Ok(None);
            };
            let key = self.cache_key(&locked);
            let Some(evaluation) = self.cache.get(&key) else {
                return Ok(None);
            };
            for root in evaluation.roots() {
                if !roots.contains(&root) {
                    roots.push(root);
                }
            }
            first.get_or_insert(evaluation);
        }
        let Some(first) = first else {
            return Ok(None);
        };
        Ok(Some(KnownRoots {
            roots,
            main_program: first.main_program,
            package_name: first.package_name,
            package_version: first.package_version,
        }))
    }

    /// The installable to evaluate for `installable`, once the node policy (of the request's
    /// namespace) allows it: its flake ref as the rule resolved it (a local folder with its
    /// symlinks and `..` resolved), so Nix reads exactly what was checked.
    fn allowed_installable(
        &self,
        request: &Request,
        installable: &FlakeInstallable,
    ) -> Result<FlakeInstallable, ResolveError> {
        let scope = self.policy.scope(request.namespace.as_deref());
        let allowed = scope
            .check_flake_ref(&installable.flake)
            .map_err(|source| ResolveError::NotAllowed {
                container: request.container.clone(),
                source: Box::new(source),
            })?;
        tracing::debug!(
            flake = %installable.flake,
            rule = %allowed.rule,
            evaluated = %allowed.evaluated,
            "flake ref allowed"
        );
        Ok(FlakeInstallable {
            flake: allowed.evaluated,
            attr: installable.attr.clone(),
        })
    }

    async fn resolve_inner(
        &self,
        request: &Request,
        progress: Option<&watch::Sender<ResolveProgress>>,
    ) -> Result<Resolution, ResolveError> {
        let scope = self.policy.scope(request.namespace.as_deref());
        let run = Run {
            container: &request.container,
            deadline: Deadline::after(scope.effective_timeout(request.timeout)),
            progress,
        };
        let realise = scope.realise();
        match &request.source {
            Source::Flake(installable) => {
                let installable = self.allowed_installable(request, installable)?;
                self.resolve_installables(&run, realise, std::slice::from_ref(&installable))
                    .await
            }
            Source::Packages(names) => {
                let installables = self.package_installables(request, names)?;
                self.resolve_installables(&run, realise, &installables)
                    .await
            }
            Source::StorePaths(paths) => self.resolve_store_paths(&run, paths).await,
        }
    }

    /// One installable per package name, in the policy's package set.
    fn package_installables(
        &self,
        request: &Request,
        names: &[PackageName],
    ) -> Result<Vec<FlakeInstallable>, ResolveError> {
        let package_set = self.package_set(&request.container)?;
        let installables = names
            .iter()
            .map(|name| {
                let attr =
                    AttrPath::from_segments(name.segments()).map_err(|err| ResolveError::Eval {
                        container: request.container.clone(),
                        source: EvalError::Output {
                            installable: format!("{package_set}#{name}"),
                            message: err.to_string(),
                        },
                    })?;
                Ok(FlakeInstallable {
                    flake: package_set.clone(),
                    attr: Some(attr),
                })
            })
            .collect::<Result<Vec<_>, ResolveError>>()?;
        if installables.is_empty() {
            return Err(ResolveError::Empty {
                container: request.container.clone(),
            });
        }
        Ok(installables)
    }

    /// The policy's package set, parsed.
    fn package_set(&self, container: &str) -> Result<FlakeRef, ResolveError> {
        let Some(text) = &self.policy.package_set else {
            return Err(ResolveError::NoPackageSet {
                container: container.to_owned(),
                policy: self.policy.source.as_ref().map_or_else(
                    || "the built-in defaults".to_owned(),
                    |path| path.display().to_string(),
                ),
            });
        };
        FlakeRef::parse(text).map_err(|source| ResolveError::BadPackageSet {
            container: container.to_owned(),
            source,
        })
    }

    /// Evaluates and realises installables; the roots are their outputs, in order.
    async fn resolve_installables(
        &self,
        run: &Run<'_>,
        realise: Realise,
        installables: &[FlakeInstallable],
    ) -> Result<Resolution, ResolveError> {
        let mut targets = Vec::with_capacity(installables.len());
        for installable in installables {
            let (evaluation, cached) = self.evaluate(run, installable, true).await?;
            targets.push(Target {
                installable: installable.clone(),
                evaluation,
                cached,
            });
        }
        let mut client = self.connect(run).await?;
        for target in &mut targets {
            let realised = realise::realise_target(&mut client, run, realise, target).await?;
            if realised && let Some(key) = &target.cached {
                self.root_evaluation(&mut client, key, &target.evaluation.drv_path)
                    .await;
            }
            if !realised {
                // The derivation is gone (collected after evaluation, or a stale cache entry):
                // evaluate afresh, once.
                if let Some(key) = &target.cached {
                    let _ = self.cache.remove(key);
                }
                let (evaluation, cached) = self.evaluate(run, &target.installable, false).await?;
                target.evaluation = evaluation;
                target.cached = cached;
                if let Some(key) = &target.cached {
                    self.root_evaluation(&mut client, key, &target.evaluation.drv_path)
                        .await;
                }
                if !realise::realise_target(&mut client, run, realise, target).await? {
                    return Err(ResolveError::Daemon {
                        container: run.container.to_owned(),
                        step: Step::Building(vec![target.evaluation.drv_path.clone()]),
                        source: Box::new(DaemonError::InvalidRequest(format!(
                            "the derivation {} evaluation produced is no longer in the store",
                            target.evaluation.drv_path
                        ))),
                    });
                }
            }
        }
        // Two package names may name the same package: each root once, in order.
        let mut seen = std::collections::BTreeSet::new();
        let roots: Vec<StorePath> = targets
            .iter()
            .flat_map(|t| t.roots())
            .filter(|root| seen.insert(root.clone()))
            .collect();
        let first = &targets[0].evaluation;
        let resolved_meta = (
            first.main_program.clone(),
            first.package_name.clone(),
            first.package_version.clone(),
        );
        self.finish(run, client, roots, resolved_meta).await
    }

    /// Substitutes store paths as needed; never evaluates or builds.
    async fn resolve_store_paths(
        &self,
        run: &Run<'_>,
        paths: &[StorePath],
    ) -> Result<Resolution, ResolveError> {
        let Some(first) = paths.first() else {
            return Err(ResolveError::Empty {
                container: run.container.to_owned(),
            });
        };
        let (name, version) = parse_drv_name(first.name());
        let meta = (None, Some(name.to_owned()), version.map(str::to_owned));
        let mut client = self.connect(run).await?;
        realise::protect(&mut client, run, paths.iter()).await?;
        for path in paths {
            realise::substitute(&mut client, run, path).await?;
        }
        self.finish(run, client, paths.to_vec(), meta).await
    }

    /// Queries the closure and packages the result with the connection holding it.
    async fn finish(
        &self,
        run: &Run<'_>,
        mut client: DaemonClient,
        roots: Vec<StorePath>,
        (main_program, package_name, package_version): (
            Option<String>,
            Option<String>,
            Option<String>,
        ),
    ) -> Result<Resolution, ResolveError> {
        let first = roots[0].clone();
        let closure = run
            .step(Step::QueryingClosure(first.clone()), async {
                crate::store::closure_query::query_closure(&mut client, &roots)
                    .await
                    .map_err(|source| ResolveError::Closure {
                        container: run.container.to_owned(),
                        root: first.clone(),
                        source: Box::new(source),
                    })
            })
            .await?;
        Ok(Resolution {
            resolved: Resolved {
                roots,
                closure,
                main_program,
                package_name,
                package_version,
            },
            client,
        })
    }

    /// Connects to the daemon, sends the configured settings and forwards its progress.
    async fn connect(&self, run: &Run<'_>) -> Result<DaemonClient, ResolveError> {
        let socket = self.policy.daemon_socket.clone();
        let step = Step::Connecting(socket.clone());
        let client = run
            .step(step.clone(), async {
                let mut client = connect_retrying(&socket).await?;
                if !self.daemon_settings.is_empty() {
                    let options = crate::store::daemon::options::DaemonOptions {
                        overrides: self.daemon_settings.clone(),
                        // Warnings carry why a substitution failed (a bad signature, an
                        // unreachable cache); they end up in the error's log tail.
                        verbosity: crate::store::daemon::options::Verbosity::Warn,
                        ..Default::default()
                    };
                    client.set_options(&options).await?;
                }
                Ok(client)
            })
            .await
            .map_err(|source| match source {
                StepError::Daemon(source) => ResolveError::Daemon {
                    container: run.container.to_owned(),
                    step: step.clone(),
                    source: Box::new(source),
                },
                StepError::Resolve(err) => err,
            })?;
        if let Some(progress) = run.progress {
            forward_progress(client.progress(), progress.clone());
        }
        Ok(client)
    }

    /// The cache key of a locked installable under this policy.
    fn cache_key(&self, locked: &FlakeInstallable) -> CacheKey {
        CacheKey::new(
            flake_eval::installable_argument(locked, &self.policy),
            self.policy.system.clone(),
            self.policy.nix_command.display().to_string(),
        )
    }

    /// `installable` with its flake locked, when that is known without running `nix`: it is
    /// locked, or its cached lock may be reused now.
    fn cached_locked_installable(
        &self,
        installable: &FlakeInstallable,
    ) -> Option<FlakeInstallable> {
        let flake = if installable.flake.is_locked() {
            installable.flake.clone()
        } else {
            self.cached_lock(&installable.flake)?
        };
        Some(FlakeInstallable {
            flake,
            attr: installable.attr.clone(),
        })
    }

    /// The cached lock of the unlocked `flake`, if it may be reused now.
    fn cached_lock(&self, flake: &FlakeRef) -> Option<FlakeRef> {
        let reuse = lock_reuse(flake);
        if reuse == LockReuse::Never {
            return None;
        }
        let entry = self.lock_cache.get(&flake.to_string())?;
        let fingerprint = current_fingerprint(&reuse);
        is_fresh(
            &entry,
            &reuse,
            now_ms(),
            self.policy.lock_ttl,
            fingerprint.as_deref(),
        )
        .then(|| FlakeRef::parse(&entry.locked).ok())
        .flatten()
        .filter(FlakeRef::is_locked)
    }

    /// `installable` with its flake locked: as it is when locked, else with the cached lock or
    /// a new one (once per node at a time for each ref).
    async fn locked_installable(
        &self,
        run: &Run<'_>,
        installable: &FlakeInstallable,
    ) -> Result<FlakeInstallable, ResolveError> {
        if let Some(locked) = self.cached_locked_installable(installable) {
            return Ok(locked);
        }
        let flake = &installable.flake;
        let unlocked = flake.to_string();
        let step = Step::WaitingForLock(unlocked.clone());
        run.set_step(&step);
        let _single = self
            .locks
            .lock(
                &format!("lock-{}", LockCache::digest(&unlocked)),
                run.deadline.instant(),
            )
            .await
            .map_err(|err| lock_error(run, step, err))?;
        if let Some(locked) = self.cached_locked_installable(installable) {
            return Ok(locked);
        }
        let reuse = lock_reuse(flake);
        // Taken before Nix reads the folder: an edit meanwhile makes the entry stale.
        let fingerprint = current_fingerprint(&reuse);
        let _slot = self.evaluation_slot(run).await?;
        let step = Step::Locking(unlocked.clone());
        run.set_step(&step);
        let remaining = run.deadline.remaining();
        if remaining.is_zero() {
            return Err(run.timeout(step));
        }
        let started = Instant::now();
        let result = flake_lock::lock(flake, &self.policy, remaining, &*self.runner).await;
        self.record(
            "lock",
            &unlocked,
            result.as_ref().ok().map(|l| l.locked.to_string()),
            started,
        );
        let locked = match result {
            Ok(locked) => locked.locked,
            Err(EvalError::Timeout { .. }) => return Err(run.timeout(step)),
            Err(source) => {
                return Err(ResolveError::Eval {
                    container: run.container.to_owned(),
                    source,
                });
            }
        };
        let previous = self.lock_cache.get(&unlocked);
        let entry = LockEntry::new(unlocked.clone(), locked.to_string(), now_ms(), fingerprint);
        if let Err(err) = self.lock_cache.put(&entry) {
            tracing::warn!(flake = %unlocked, %err, "cannot cache the flake's lock");
        }
        if let Some(previous) = previous
            && previous.locked != entry.locked
        {
            tracing::info!(flake = %unlocked, old = %previous.locked, new = %entry.locked, "the flake changed");
            self.drop_evaluations_of(&previous.locked);
        }
        Ok(FlakeInstallable {
            flake: locked,
            attr: installable.attr.clone(),
        })
    }

    /// Drops the cached evaluations of `old_lock`, with their GC roots, unless another cached
    /// lock still points to it.
    fn drop_evaluations_of(&self, old_lock: &str) {
        let still = self.lock_cache.locked_refs();
        for key in stale_entries(old_lock, &still, &self.cache.keys()) {
            if let Err(err) = self.cache.remove(&key) {
                tracing::warn!(installable = key.installable(), %err, "cannot drop a stale evaluation");
            }
        }
    }

    /// One of the node's evaluation slots, held while `nix` runs.
    async fn evaluation_slot(&self, run: &Run<'_>) -> Result<KeyLock, ResolveError> {
        let slots = self.policy.max_concurrent_evaluations;
        let step = Step::WaitingForEvaluationSlot(slots);
        run.set_step(&step);
        self.locks
            .lock_slot(EVALUATION_SLOT, slots, run.deadline.instant())
            .await
            .map_err(|err| lock_error(run, step, err))
    }

    /// Keeps `key`'s derivation as a GC root of the cache, so it can be built again without
    /// evaluating. Best effort: a derivation that is gone is evaluated again when needed.
    async fn root_evaluation(&self, client: &mut DaemonClient, key: &CacheKey, drv: &StorePath) {
        let gc_roots = self.cache.gc_roots();
        let consumer = self.cache.root_consumer(key);
        let link = gc_roots.dir().join(&consumer).join(drv.base_name());
        if std::fs::read_link(&link).ok().as_deref() == Some(drv.as_path()) {
            return;
        }
        match client.is_valid_path(drv).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => {
                tracing::warn!(%drv, %err, "cannot check the evaluated derivation");
                return;
            }
        }
        if let Err(err) = gc_roots
            .hold(&consumer, std::slice::from_ref(drv), client)
            .await
        {
            tracing::warn!(%drv, %err, "cannot keep the evaluated derivation as a GC root");
        }
    }

    /// Appends a run of `nix` to the cache's evaluation log.
    fn record(&self, kind: &str, subject: &str, locked: Option<String>, started: Instant) {
        let record = EvaluationRecord {
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            ok: locked.is_some(),
            locked,
            millis: started.elapsed().as_millis() as u64,
            pid: std::process::id(),
            at_ms: now_ms(),
        };
        if let Err(err) = self.cache.record(&record) {
            tracing::warn!(%err, "cannot write the evaluation log");
        }
    }

    /// The evaluation of `installable`: its flake locked, then from the cache when `use_cache`,
    /// else by `nix eval`, once per node at a time for each locked installable, filling the
    /// cache (or, for a failure, remembering it for [`FAILURE_TTL`]).
    async fn evaluate(
        &self,
        run: &Run<'_>,
        installable: &FlakeInstallable,
        use_cache: bool,
    ) -> Result<(CachedEvaluation, Option<CacheKey>), ResolveError> {
        let shown = flake_eval::installable_argument(installable, &self.policy);
        let locked = self.locked_installable(run, installable).await?;
        let key = self.cache_key(&locked);
        if use_cache && let Some(hit) = self.cache.get(&key) {
            tracing::debug!(installable = %shown, "evaluation cache hit");
            return Ok((hit, Some(key)));
        }
        let step = Step::WaitingForLock(shown.clone());
        run.set_step(&step);
        let _single = self
            .locks
            .lock(&key.digest(), run.deadline.instant())
            .await
            .map_err(|err| lock_error(run, step, err))?;
        if use_cache && let Some(hit) = self.cache.get(&key) {
            tracing::debug!(installable = %shown, "evaluation cache filled while waiting");
            return Ok((hit, Some(key)));
        }
        if let Some(message) = self.cache.recent_failure(&key, now_ms(), FAILURE_TTL) {
            return Err(ResolveError::Eval {
                container: run.container.to_owned(),
                source: EvalError::Failed {
                    installable: shown,
                    message: format!(
                        "{message} (the node's evaluation of this lock failed less than {} s ago)",
                        FAILURE_TTL.as_secs()
                    ),
                },
            });
        }
        let slot = self.evaluation_slot(run).await?;
        let started = Instant::now();
        let result = self.evaluate_now(run, &locked, &shown).await;
        drop(slot);
        self.record(
            "eval",
            &shown,
            result.as_ref().ok().map(|_| key.installable().to_owned()),
            started,
        );
        match result {
            Ok(evaluation) => {
                if let Err(err) = self.cache.put(&key, &evaluation) {
                    tracing::warn!(
                        installable = %shown,
                        path = %self.cache.entry_path(&key).display(),
                        %err,
                        "cannot write the evaluation cache; the next resolution evaluates again"
                    );
                }
                Ok((evaluation, Some(key)))
            }
            Err(err) => {
                // Only what nix itself reported: a deadline or a missing nix is not the flake's.
                if let ResolveError::Eval {
                    source:
                        source @ (EvalError::Failed { .. }
                        | EvalError::Output { .. }
                        | EvalError::StorePath { .. }),
                    ..
                } = &err
                {
                    let message = match source {
                        EvalError::Failed { message, .. } => message.clone(),
                        other => other.to_string(),
                    };
                    if let Err(err) = self.cache.put_failure(&key, &message, now_ms()) {
                        tracing::warn!(installable = %shown, %err, "cannot remember the failure");
                    }
                }
                Err(err)
            }
        }
    }

    async fn evaluate_now(
        &self,
        run: &Run<'_>,
        installable: &FlakeInstallable,
        shown: &str,
    ) -> Result<CachedEvaluation, ResolveError> {
        let step = Step::Evaluating(shown.to_owned());
        run.set_step(&step);
        let remaining = run.deadline.remaining();
        if remaining.is_zero() {
            return Err(run.timeout(step));
        }
        match flake_eval::evaluate(installable, &self.policy, remaining, &*self.runner).await {
            Ok(evaluation) => Ok(from_evaluation(evaluation)),
            Err(EvalError::Timeout { .. }) => Err(run.timeout(step)),
            Err(source) => Err(ResolveError::Eval {
                container: run.container.to_owned(),
                source: shown_as(source, shown),
            }),
        }
    }
}

/// `error` naming `shown` (the installable as asked) rather than its locked form.
fn shown_as(error: EvalError, shown: &str) -> EvalError {
    let installable = shown.to_owned();
    match error {
        EvalError::Spawn {
            program, source, ..
        } => EvalError::Spawn {
            installable,
            program,
            source,
        },
        EvalError::Failed { message, .. } => EvalError::Failed {
            installable,
            message,
        },
        EvalError::Timeout { after, .. } => EvalError::Timeout { installable, after },
        EvalError::Output { message, .. } => EvalError::Output {
            installable,
            message,
        },
        EvalError::StorePath { source, .. } => EvalError::StorePath {
            installable,
            source,
        },
        other @ EvalError::Lock { .. } => other,
    }
}

/// The error of a lock or slot not taken while `step` waited for it.
fn lock_error(run: &Run<'_>, step: Step, err: LockError) -> ResolveError {
    match err {
        LockError::Expired => run.timeout(step),
        LockError::Io { path, source } => ResolveError::State {
            container: run.container.to_owned(),
            action: "locking",
            path,
            source,
        },
    }
}

/// The fingerprint of a folder whose lock is reused while it is unchanged.
fn current_fingerprint(reuse: &LockReuse) -> Option<String> {
    match reuse {
        LockReuse::Fingerprint(path) => source_fingerprint::fingerprint(path).ok().flatten(),
        _ => None,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Connects, retrying while the daemon's listen queue is full (`EAGAIN`: many resolutions
/// started at once); the caller's deadline bounds the retries.
async fn connect_retrying(socket: &std::path::Path) -> Result<DaemonClient, DaemonError> {
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        match DaemonClient::connect(socket).await {
            Err(DaemonError::Connect { source, .. })
                if source.kind() == std::io::ErrorKind::WouldBlock =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

fn from_evaluation(evaluation: FlakeEvaluation) -> CachedEvaluation {
    CachedEvaluation {
        main_program: evaluation.default_program(),
        package_name: evaluation.package_name(),
        package_version: evaluation.version.clone().or_else(|| {
            let name = evaluation.name.as_deref()?;
            parse_drv_name(name).1.map(str::to_owned)
        }),
        drv_path: evaluation.drv_path,
        outputs: evaluation.outputs,
    }
}

/// Copies the daemon's progress into the frontend's channel until either side goes away.
fn forward_progress(
    mut daemon: watch::Receiver<crate::store::daemon::stderr::Progress>,
    progress: watch::Sender<ResolveProgress>,
) {
    tokio::spawn(async move {
        // Ends when the connection (which owns the daemon's side) or the frontend goes away.
        while daemon.changed().await.is_ok() && !progress.is_closed() {
            let snapshot = daemon.borrow_and_update().clone();
            progress.send_modify(|p| p.daemon = snapshot);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::flake_ref::FlakeInstallable;
    use crate::resolve::process_runner::BoxFuture;
    use std::os::unix::process::ExitStatusExt;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU32;

    const HASH_ONE: &str = "sha256-XYSU8ZjNpcasPc+VY8vXBYxXBs5/Pxga7xq07eZoWbo=";
    const HASH_TWO: &str = "sha256-YYSU8ZjNpcasPc+VY8vXBYxXBs5/Pxga7xq07eZoWbo=";

    /// A `nix` that locks a folder to one of two hashes (by its `v` file) and evaluates any
    /// attribute but `broken`; it counts what it ran.
    #[derive(Debug, Default)]
    struct FakeNix {
        runs: Mutex<Vec<String>>,
    }

    impl FakeNix {
        fn count(&self, kind: &str) -> usize {
            self.runs
                .lock()
                .unwrap()
                .iter()
                .filter(|k| *k == kind)
                .count()
        }
    }

    impl ProcessRunner for FakeNix {
        fn output(
            &self,
            command: tokio::process::Command,
            _pid: Arc<AtomicU32>,
        ) -> BoxFuture<'static, std::io::Result<std::process::Output>> {
            let args: Vec<String> = command
                .as_std()
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let target = args.last().cloned().unwrap_or_default();
            let (kind, status, stdout) = if args[0] == "flake" {
                let dir = target.trim_start_matches("path:");
                let hash = match std::fs::read_to_string(format!("{dir}/v")).as_deref() {
                    Ok("2") => HASH_TWO,
                    _ => HASH_ONE,
                };
                let url = format!("{target}?narHash={}", hash.replace('/', "%2F"));
                ("lock", 0, format!(r#"{{"url":"{url}"}}"#))
            } else if target.ends_with("#broken") {
                ("eval", 1 << 8, String::new())
            } else {
                let hash = "ar25pqwqc1pfzvpw69sln376hqy1bn07";
                (
                    "eval",
                    0,
                    format!(
                        r#"{{"drvPath":"/nix/store/{hash}-app.drv","outputs":{{"out":"/nix/store/{hash}-app"}},"name":"app","pname":null,"version":null,"mainProgram":null}}"#
                    ),
                )
            };
            self.runs.lock().unwrap().push(kind.to_owned());
            Box::pin(async move {
                Ok(std::process::Output {
                    status: std::process::ExitStatus::from_raw(status),
                    stdout: stdout.into_bytes(),
                    stderr: b"error: attribute 'broken' is broken".to_vec(),
                })
            })
        }
    }

    struct Setup {
        _state: tempfile::TempDir,
        flake: tempfile::TempDir,
        policy: NodePolicy,
        nix: Arc<FakeNix>,
    }

    fn setup() -> Setup {
        let state = tempfile::tempdir().unwrap();
        let flake = tempfile::tempdir().unwrap();
        std::fs::write(flake.path().join("v"), "1").unwrap();
        let dir = flake.path().canonicalize().unwrap();
        let policy = NodePolicy::from_toml(
            &format!(
                "allowed-flake-prefixes = [\"path:{}\"]\nstate-dir = {:?}\n",
                dir.display(),
                state.path()
            ),
            std::path::Path::new("policy.toml"),
        )
        .unwrap();
        Setup {
            _state: state,
            flake,
            policy,
            nix: Arc::new(FakeNix::default()),
        }
    }

    impl Setup {
        fn resolver(&self, policy: &NodePolicy) -> Resolver {
            Resolver::new(policy.clone()).with_process_runner(self.nix.clone())
        }

        fn request(&self, attr: &str) -> Request {
            let dir = self.flake.path().canonicalize().unwrap();
            Request {
                container: "app".into(),
                source: Source::Flake(
                    FlakeInstallable::parse(&format!("path:{}#{attr}", dir.display())).unwrap(),
                ),
                namespace: None,
                entrypoint: None,
                timeout: None,
            }
        }

        /// Locks and evaluates `attr` as a resolution does (short of the daemon).
        async fn evaluate(
            &self,
            resolver: &Resolver,
            attr: &str,
        ) -> Result<CachedEvaluation, ResolveError> {
            let request = self.request(attr);
            let Source::Flake(installable) = &request.source else {
                unreachable!()
            };
            let installable = resolver.allowed_installable(&request, installable)?;
            let run = Run {
                container: "app",
                deadline: Deadline::after(std::time::Duration::from_secs(30)),
                progress: None,
            };
            resolver
                .evaluate(&run, &installable, true)
                .await
                .map(|(evaluation, _)| evaluation)
        }
    }

    #[tokio::test]
    async fn a_lock_is_evaluated_once_and_an_edit_evaluates_again() {
        let setup = setup();
        let resolver = setup.resolver(&setup.policy);
        assert_eq!(
            resolver.resolve_offline(&setup.request("app")).unwrap(),
            None
        );
        let first = setup.evaluate(&resolver, "app").await.unwrap();
        setup.evaluate(&resolver, "app").await.unwrap();
        assert_eq!((setup.nix.count("lock"), setup.nix.count("eval")), (1, 1));
        // Another process (a later shim) finds lock and evaluation on disk.
        let known = setup
            .resolver(&setup.policy)
            .resolve_offline(&setup.request("app"))
            .unwrap()
            .unwrap();
        assert_eq!(known.roots, first.roots());

        // An edit: locked again (a new hash), evaluated again, the old lock's entry dropped.
        std::fs::write(setup.flake.path().join("v"), "2").unwrap();
        assert_eq!(
            resolver.resolve_offline(&setup.request("app")).unwrap(),
            None
        );
        setup.evaluate(&resolver, "app").await.unwrap();
        assert_eq!((setup.nix.count("lock"), setup.nix.count("eval")), (2, 2));
        let keys = resolver.cache().keys();
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert!(keys[0].installable().contains("sha256-YYSU"), "{keys:?}");
    }

    #[tokio::test]
    async fn a_policy_change_refuses_or_re_evaluates_what_was_cached() {
        let setup = setup();
        let resolver = setup.resolver(&setup.policy);
        setup.evaluate(&resolver, "app").await.unwrap();
        assert!(
            resolver
                .resolve_offline(&setup.request("app"))
                .unwrap()
                .is_some()
        );

        // The folder is no longer allowed: refused, though its evaluation is cached.
        let refusing = NodePolicy {
            allowed_flake_prefixes: NodePolicy::default().allowed_flake_prefixes,
            ..setup.policy.clone()
        };
        let err = setup
            .resolver(&refusing)
            .resolve_offline(&setup.request("app"))
            .unwrap_err();
        assert!(matches!(err, ResolveError::NotAllowed { .. }), "{err}");
        let err = setup
            .evaluate(&setup.resolver(&refusing), "app")
            .await
            .unwrap_err();
        assert!(matches!(err, ResolveError::NotAllowed { .. }), "{err}");

        // Another system or evaluator: a miss, evaluated afresh.
        for changed in [
            NodePolicy {
                system: "aarch64-linux".into(),
                ..setup.policy.clone()
            },
            NodePolicy {
                nix_command: "/opt/nix/bin/nix".into(),
                ..setup.policy.clone()
            },
        ] {
            let resolver = setup.resolver(&changed);
            assert_eq!(
                resolver.resolve_offline(&setup.request("app")).unwrap(),
                None
            );
            setup.evaluate(&resolver, "app").await.unwrap();
        }
        assert_eq!((setup.nix.count("lock"), setup.nix.count("eval")), (1, 3));
    }

    #[tokio::test]
    async fn a_failure_is_remembered_briefly_and_never_served_as_success() {
        let setup = setup();
        let resolver = setup.resolver(&setup.policy);
        let first = setup.evaluate(&resolver, "broken").await.unwrap_err();
        assert!(first.to_string().contains("is broken"), "{first}");
        let second = setup.evaluate(&resolver, "broken").await.unwrap_err();
        let message = second.to_string();
        assert!(message.contains("is broken"), "{message}");
        assert!(message.contains("failed less than 10 s ago"), "{message}");
        assert_eq!(setup.nix.count("eval"), 1, "the failure was remembered");
        assert_eq!(
            resolver.resolve_offline(&setup.request("broken")).unwrap(),
            None
        );
        assert!(
            resolver.cache().keys().is_empty(),
            "no failure is a cache entry"
        );
    }
}
