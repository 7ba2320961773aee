//! The Task service: containerd's task API (v2 and v3 alike) on top of the
//! [`OciRuntime`](crate::spawner::OciRuntime) seam.
//!
//! One mutex guards all containers. Every call that talks to runc holds it for the whole
//! runc call, so an exit reported by the reaper is applied only after the call that learned
//! the pid has recorded it (no lost early exits). Nothing slow runs under it: Task.Create
//! resolves a closure (which may take minutes) holding only a reservation of its container
//! id, and Task.Delete drains output and cleans up with the container marked as deleting,
//! so the exits, kills, waits and states of the pod's other containers are never held up.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::Arc,
};

use async_trait::async_trait;
use containerd_shim::{
    ExitSignal, TtrpcContext, TtrpcResult,
    api::{
        CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
        DeleteRequest, Empty, ExecProcessRequest, KillRequest, PauseRequest, PidsRequest,
        PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest,
        StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse, UpdateTaskRequest,
        WaitRequest, WaitResponse,
    },
    protos::{
        api::{DeleteResponse, ProcessInfo},
        events::task::{
            TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM,
            TaskPaused, TaskResumed, TaskStart,
        },
        protobuf::well_known_types::{any::Any, timestamp::Timestamp},
        shim::oci::ProcessDetails,
    },
};
use oci_spec::runtime::{LinuxResources, Process as OciProcess};
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use crate::{
    container::{self, Container},
    containix_step::{ContainixStep, StepOutcome},
    error::{Result, ShimError},
    events::{EventSink, emit},
    io::{PreparedIo, Stdio, pid_file},
    oom::OomWatcher,
    process::{ExitInfo, Process, Status, wait_exit},
    spawner::{CreateSpec, ExecSpec, RuntimeConfig, RuntimeErrorKind, Spawner},
    stats::Cgroup,
};

/// The exit status containerd's runc shim reports for a process it had to SIGKILL.
const KILLED_STATUS: u32 = 128 + 9;

/// The task service of one shim process (every container of one pod).
#[derive(Clone)]
pub struct TaskService {
    inner: Arc<Inner>,
}

struct Inner {
    namespace: String,
    containers: Mutex<HashMap<String, Container>>,
    /// Ids whose Task.Create is under way (checked and changed with `containers` locked).
    creating: std::sync::Mutex<HashSet<String>>,
    spawner: Arc<dyn Spawner>,
    step: Arc<dyn ContainixStep>,
    events: Arc<dyn EventSink>,
    exit: Arc<ExitSignal>,
}

fn now() -> Timestamp {
    containerd_shim::util::timestamp().unwrap_or_default()
}

fn not_found(id: &str) -> ShimError {
    ShimError::NotFound(format!("container {id:?} not found"))
}

impl TaskService {
    /// A service for `namespace` that runs containers through `spawner`, prepares bundles
    /// with `step`, reports to `events` and signals `exit` when Task.Shutdown may end the shim.
    pub fn new(
        namespace: &str,
        spawner: Arc<dyn Spawner>,
        step: Arc<dyn ContainixStep>,
        events: Arc<dyn EventSink>,
        exit: Arc<ExitSignal>,
    ) -> Self {
        TaskService {
            inner: Arc::new(Inner {
                namespace: namespace.to_owned(),
                containers: Mutex::new(HashMap::new()),
                creating: std::sync::Mutex::new(HashSet::new()),
                spawner,
                step,
                events,
                exit,
            }),
        }
    }

    /// Task.Create: mount the rootfs, run the containix step, `runc create`, attach stdio.
    /// Creates the task; the containix step answers by `deadline` (the caller's) if there is
    /// one.
    pub async fn create_task(
        &self,
        req: &CreateTaskRequest,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<CreateTaskResponse> {
        if req.id.is_empty() {
            return Err(ShimError::InvalidArgument(
                "id: expected a container id, got \"\"".into(),
            ));
        }
        if req.bundle.is_empty() {
            return Err(ShimError::InvalidArgument(
                "bundle: expected a bundle path, got \"\"".into(),
            ));
        }
        if !req.checkpoint.is_empty() {
            return Err(ShimError::Unimplemented("checkpoint restore"));
        }
        let _reservation = self.reserve(&req.id).await?;
        let bundle = PathBuf::from(&req.bundle);
        let options = container::create_options(req.options.as_ref())?;
        let spec = container::read_spec(&bundle).await?;
        containerd_shim::util::write_options(&bundle, &options).await?;
        containerd_shim::util::write_runtime(&bundle, &options.binary_name).await?;
        let annotations = spec.annotations().clone().unwrap_or_default();
        let stdio = Stdio {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };

        let rootfs_mounted = container::mount_rootfs(&bundle, &req.rootfs).await?;
        // From here on, a failure must undo the mounts and whatever the step did.
        let undo = || self.undo_create(&req.id, &bundle, rootfs_mounted);

        match self
            .inner
            .step
            .prepare(&bundle, &req.id, &annotations, deadline)
            .await
        {
            Ok(StepOutcome::Passthrough) => debug!("containix step passed {} through", req.id),
            Ok(StepOutcome::Prepared) => info!("containix step prepared the bundle of {}", req.id),
            Err(e) => {
                undo().await;
                return Err(e.into());
            }
        }
        // The step may have rewritten config.json.
        let spec = match container::read_spec(&bundle).await {
            Ok(spec) => spec,
            Err(e) => {
                undo().await;
                return Err(e.into());
            }
        };
        let config = RuntimeConfig::for_bundle(
            &options.binary_name,
            &options.root,
            &self.inner.namespace,
            &bundle,
            options.systemd_cgroup,
        );
        let runtime = match self.inner.spawner.runtime(&config) {
            Ok(runtime) => runtime,
            Err(e) => {
                undo().await;
                return Err(e.into());
            }
        };
        let prepared = match PreparedIo::new(&stdio, options.io_uid, options.io_gid) {
            Ok(prepared) => prepared,
            Err(e) => {
                undo().await;
                return Err(e);
            }
        };
        let pid_path = pid_file(&bundle, None);
        // From `runc create` on, the reaper may report init's exit: hold the lock until the
        // container is recorded, so that exit waits for it.
        let mut containers = self.inner.containers.lock().await;
        let created = runtime
            .create(&CreateSpec {
                id: &req.id,
                bundle: &bundle,
                pid_file: &pid_path,
                stdio: &prepared.runtime_stdio(),
                no_pivot_root: options.no_pivot_root,
                no_new_keyring: options.no_new_keyring,
            })
            .await;
        let pid = match created {
            Ok(pid) => pid,
            Err(e) => {
                // runc normally cleans up after itself; make sure nothing is left behind.
                let _ = runtime.delete(&req.id, true).await;
                drop(containers);
                undo().await;
                return Err(e.into());
            }
        };
        let io = match prepared.attach(&stdio).await {
            Ok(io) => io,
            Err(e) => {
                let _ = runtime.delete(&req.id, true).await;
                drop(containers);
                undo().await;
                return Err(e);
            }
        };
        let mut init = Process::new(None, stdio.clone());
        init.pid = pid;
        init.io = io;
        let cgroup = Cgroup::of_pid(pid).ok();
        // Watch from now on: init sits paused in its cgroup, nothing has run yet.
        let oom = cgroup.as_ref().and_then(|cgroup| {
            OomWatcher::start(&req.id, cgroup, self.inner.events.clone())
                .map_err(|e| warn!("no live OOM events for {}: {e}", req.id))
                .ok()
        });
        let container = Container {
            id: req.id.clone(),
            bundle: bundle.clone(),
            runtime,
            init,
            execs: HashMap::new(),
            rootfs_mounted,
            cgroup,
            oom,
            pending_init_exit: None,
            deleting: false,
            kill_all_on_exit: container::kill_all_on_exit(&spec),
            io_owner: (options.io_uid, options.io_gid),
        };
        containers.insert(req.id.clone(), container);
        info!("created container {} (pid {pid})", req.id);
        emit(
            &*self.inner.events,
            TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: Some(TaskIO {
                    stdin: stdio.stdin,
                    stdout: stdio.stdout,
                    stderr: stdio.stderr,
                    terminal: stdio.terminal,
                    ..Default::default()
                })
                .into(),
                checkpoint: req.checkpoint.clone(),
                pid: pid as u32,
                ..Default::default()
            },
        )
        .await;
        Ok(CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    /// Reserves `id` for a Task.Create; the reservation ends when the guard drops (also when
    /// the call is cancelled).
    async fn reserve(&self, id: &str) -> Result<Reservation> {
        let containers = self.inner.containers.lock().await;
        let mut creating = self.inner.creating.lock().expect("creating set poisoned");
        if containers.contains_key(id) || !creating.insert(id.to_owned()) {
            return Err(ShimError::AlreadyExists(format!(
                "container {id:?} already exists"
            )));
        }
        Ok(Reservation {
            inner: self.inner.clone(),
            id: id.to_owned(),
        })
    }

    async fn undo_create(&self, id: &str, bundle: &Path, rootfs_mounted: bool) {
        if rootfs_mounted {
            container::unmount_rootfs(bundle).await;
        }
        if let Err(e) = self.inner.step.cleanup(id).await {
            warn!("containix cleanup of {id} failed: {e}");
        }
    }

    /// Task.Start of init (`runc start`) or of an exec (`runc exec --detach`).
    pub async fn start_task(&self, req: &StartRequest) -> Result<StartResponse> {
        let mut containers = self.inner.containers.lock().await;
        let container = containers
            .get_mut(&req.id)
            .filter(|c| !c.deleting)
            .ok_or_else(|| not_found(&req.id))?;
        if req.exec_id.is_empty() {
            if container.init.status != Status::Created {
                return Err(ShimError::FailedPrecondition(format!(
                    "container {:?} is {:?}, not created",
                    req.id, container.init.status
                )));
            }
            container.runtime.start(&req.id).await?;
            container.init.status = Status::Running;
            let pid = container.init.pid as u32;
            emit(
                &*self.inner.events,
                TaskStart {
                    container_id: req.id.clone(),
                    pid,
                    ..Default::default()
                },
            )
            .await;
            return Ok(StartResponse {
                pid,
                ..Default::default()
            });
        }

        if !matches!(container.init.status, Status::Running) {
            return Err(ShimError::FailedPrecondition(format!(
                "cannot exec in container {:?}: it is {:?}, not running",
                req.id, container.init.status
            )));
        }
        let (uid, gid) = container.io_owner;
        let bundle = container.bundle.clone();
        let runtime = container.runtime.clone();
        let exec = container.process_mut(&req.exec_id)?;
        if exec.status != Status::Created {
            return Err(ShimError::FailedPrecondition(format!(
                "exec {:?} is {:?}, not created",
                req.exec_id, exec.status
            )));
        }
        let spec = exec.spec.clone().ok_or_else(|| {
            ShimError::Other(format!("exec {:?} has no process spec", req.exec_id))
        })?;
        let prepared = PreparedIo::new(&exec.stdio, uid, gid)?;
        let pid_path = pid_file(&bundle, Some(&req.exec_id));
        let pid = runtime
            .exec(&ExecSpec {
                container_id: &req.id,
                process: &spec,
                pid_file: &pid_path,
                stdio: &prepared.runtime_stdio(),
            })
            .await?;
        exec.pid = pid;
        exec.status = Status::Running;
        match prepared.attach(&exec.stdio).await {
            Ok(io) => exec.io = io,
            Err(e) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                return Err(e);
            }
        }
        emit(
            &*self.inner.events,
            TaskExecStarted {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                pid: pid as u32,
                ..Default::default()
            },
        )
        .await;
        Ok(StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    /// Task.Delete: remove an exited exec, or the container with its runc state and mounts.
    pub async fn delete_task(&self, req: &DeleteRequest) -> Result<DeleteResponse> {
        let mut containers = self.inner.containers.lock().await;
        let container = containers
            .get_mut(&req.id)
            .filter(|c| !c.deleting)
            .ok_or_else(|| not_found(&req.id))?;
        if !req.exec_id.is_empty() {
            let exec = container.process(&req.exec_id)?;
            if matches!(exec.status, Status::Running | Status::Paused) {
                return Err(ShimError::FailedPrecondition(format!(
                    "cannot delete exec {:?}: it is still running",
                    req.exec_id
                )));
            }
            let mut exec = container
                .execs
                .remove(&req.exec_id)
                .expect("looked up above");
            let _ = tokio::fs::remove_file(pid_file(&container.bundle, Some(&req.exec_id))).await;
            let copies = exec.io.take_copies();
            drop(containers);
            drain(copies).await;
            let exit = exec.exit();
            return Ok(delete_response(exec.pid, exit));
        }

        if matches!(container.init.status, Status::Running | Status::Paused) {
            return Err(ShimError::FailedPrecondition(format!(
                "cannot delete container {:?}: it is still running",
                req.id
            )));
        }
        if let Err(e) = container.runtime.delete(&req.id, true).await
            && e.kind != RuntimeErrorKind::NotFound
        {
            return Err(e.into());
        }
        // The container stays listed, as deleting, until everything below is done: while
        // the delete runs, containerd still finds the task (stopped), so a CRI StopContainer
        // in that time waits for the exit to be recorded instead of returning early.
        container.deleting = true;
        container.oom = None;
        let mut copies = container.init.io.take_copies();
        for exec in container.execs.values_mut() {
            copies.extend(exec.io.take_copies());
        }
        let teardown = Teardown {
            id: req.id.clone(),
            bundle: container.bundle.clone(),
            rootfs_mounted: container.rootfs_mounted,
            copies,
        };
        drop(containers);
        // A task of its own, so a cancelled call still finishes the delete.
        let service = self.clone();
        tokio::spawn(async move { service.finish_delete(teardown).await })
            .await
            .map_err(|e| ShimError::Other(format!("delete task failed: {e}")))
    }

    /// The slow half of deleting a container: output, mounts, containix state; then the
    /// container goes from the list and `TaskDelete` is published.
    async fn finish_delete(&self, teardown: Teardown) -> DeleteResponse {
        let Teardown {
            id,
            bundle,
            rootfs_mounted,
            copies,
        } = teardown;
        drain(copies).await;
        if rootfs_mounted {
            container::unmount_rootfs(&bundle).await;
        }
        if let Err(e) = self.inner.step.cleanup(&id).await {
            warn!("containix cleanup of {id} failed: {e}");
        }
        let mut containers = self.inner.containers.lock().await;
        let container = containers
            .remove(&id)
            .expect("a deleting container stays listed");
        let exit = container.init.exit().unwrap_or(ExitInfo {
            status: KILLED_STATUS,
            at: now(),
        });
        emit(
            &*self.inner.events,
            TaskDelete {
                container_id: id.clone(),
                pid: container.init.pid as u32,
                exit_status: exit.status,
                exited_at: Some(exit.at.clone()).into(),
                id: id.clone(),
                ..Default::default()
            },
        )
        .await;
        info!("deleted container {id}");
        delete_response(container.init.pid, Some(exit))
    }

    /// Task.Exec: register an exec process (started by Task.Start).
    pub async fn exec_task(&self, req: &ExecProcessRequest) -> Result<()> {
        if req.exec_id.is_empty() {
            return Err(ShimError::InvalidArgument(
                "exec_id: expected an exec id, got \"\"".into(),
            ));
        }
        let spec = req.spec.as_ref().ok_or_else(|| {
            ShimError::InvalidArgument("spec: expected an OCI process, got none".into())
        })?;
        let mut process: OciProcess = serde_json::from_slice(&spec.value).map_err(|e| {
            ShimError::InvalidArgument(format!("spec: expected an OCI process as JSON: {e}"))
        })?;
        process.set_terminal(Some(req.terminal));
        // CRI builds an exec's process from the container spec it stored, not from the bundle
        // containix rewrote: give it the container's closure environment (PATH and friends).
        let mut env = process.env().clone().unwrap_or_default();
        self.inner.step.exec_env(&req.id, &mut env);
        process.set_env(Some(env));
        let mut containers = self.inner.containers.lock().await;
        let container = containers
            .get_mut(&req.id)
            .ok_or_else(|| not_found(&req.id))?;
        if container.execs.contains_key(&req.exec_id) {
            return Err(ShimError::AlreadyExists(format!(
                "exec {:?} already exists in container {:?}",
                req.exec_id, req.id
            )));
        }
        if container.init.status == Status::Stopped || container.deleting {
            return Err(ShimError::FailedPrecondition(format!(
                "cannot exec in container {:?}: it has stopped",
                req.id
            )));
        }
        let stdio = Stdio {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let mut exec = Process::new(Some(req.exec_id.clone()), stdio);
        exec.spec = Some(process);
        container.execs.insert(req.exec_id.clone(), exec);
        emit(
            &*self.inner.events,
            TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            },
        )
        .await;
        Ok(())
    }

    /// Task.Kill: signal init (through runc, optionally every process) or an exec.
    pub async fn kill_task(&self, req: &KillRequest) -> Result<()> {
        let containers = self.inner.containers.lock().await;
        let container = containers.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let process = container.process(&req.exec_id)?;
        if process.exit().is_some() {
            return Err(ShimError::NotFound("process already finished".into()));
        }
        if req.exec_id.is_empty() {
            return container
                .runtime
                .kill(&req.id, req.signal, req.all)
                .await
                .map_err(|e| match e.kind {
                    RuntimeErrorKind::NotFound => {
                        ShimError::NotFound("process already finished".into())
                    }
                    RuntimeErrorKind::Failed => e.into(),
                });
        }
        if process.pid <= 0 {
            return Err(ShimError::FailedPrecondition(format!(
                "exec {:?} has not been started",
                req.exec_id
            )));
        }
        let signal = nix::sys::signal::Signal::try_from(req.signal as i32).map_err(|_| {
            ShimError::InvalidArgument(format!(
                "signal: expected a signal number, got {}",
                req.signal
            ))
        })?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(process.pid), signal).map_err(|e| {
            if e == nix::errno::Errno::ESRCH {
                ShimError::NotFound("process already finished".into())
            } else {
                ShimError::Other(format!("kill exec {:?}: {e}", req.exec_id))
            }
        })
    }

    /// Task.Wait: resolves when the process has exited.
    pub async fn wait_task(&self, req: &WaitRequest) -> Result<WaitResponse> {
        let watch = {
            let containers = self.inner.containers.lock().await;
            let container = containers.get(&req.id).ok_or_else(|| not_found(&req.id))?;
            container.process(&req.exec_id)?.exit_watch()
        };
        let exit = wait_exit(watch).await.ok_or_else(|| {
            ShimError::NotFound(format!(
                "process {:?}/{:?} was deleted while waiting",
                req.id, req.exec_id
            ))
        })?;
        Ok(WaitResponse {
            exit_status: exit.status,
            exited_at: Some(exit.at).into(),
            ..Default::default()
        })
    }

    /// Task.State.
    pub async fn state_task(&self, req: &StateRequest) -> Result<StateResponse> {
        let containers = self.inner.containers.lock().await;
        let container = containers.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let process = container.process(&req.exec_id)?;
        let exit = process.exit();
        Ok(StateResponse {
            id: req.id.clone(),
            bundle: container.bundle.display().to_string(),
            pid: process.pid.max(0) as u32,
            status: containerd_shim::protos::api::Status::from(process.status).into(),
            stdin: process.stdio.stdin.clone(),
            stdout: process.stdio.stdout.clone(),
            stderr: process.stdio.stderr.clone(),
            terminal: process.stdio.terminal,
            exit_status: exit.as_ref().map(|e| e.status).unwrap_or(0),
            exited_at: exit.map(|e| e.at).into(),
            exec_id: process.exec_id_str().to_owned(),
            ..Default::default()
        })
    }

    /// Task.Pause / Task.Resume.
    pub async fn set_paused(&self, id: &str, paused: bool) -> Result<()> {
        let mut containers = self.inner.containers.lock().await;
        let container = containers.get_mut(id).ok_or_else(|| not_found(id))?;
        let expected = if paused {
            Status::Running
        } else {
            Status::Paused
        };
        if container.init.status != expected {
            return Err(ShimError::FailedPrecondition(format!(
                "container {id:?} is {:?}, not {expected:?}",
                container.init.status
            )));
        }
        if paused {
            container.runtime.pause(id).await?;
            container.init.status = Status::Paused;
            emit(
                &*self.inner.events,
                TaskPaused {
                    container_id: id.to_owned(),
                    ..Default::default()
                },
            )
            .await;
        } else {
            container.runtime.resume(id).await?;
            container.init.status = Status::Running;
            emit(
                &*self.inner.events,
                TaskResumed {
                    container_id: id.to_owned(),
                    ..Default::default()
                },
            )
            .await;
        }
        Ok(())
    }

    /// Task.Pids: every process of the container (runc's list), an exec process with its
    /// exec id in `info`, as containerd's runc shim answers.
    pub async fn pids_task(&self, req: &PidsRequest) -> Result<PidsResponse> {
        let containers = self.inner.containers.lock().await;
        let container = containers.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let pids = container.runtime.ps(&req.id).await?;
        let processes = pids
            .into_iter()
            .map(|pid| {
                let info = container.exec_id_of(pid).map(exec_details).transpose()?;
                Ok(ProcessInfo {
                    pid,
                    info: info.into(),
                    ..Default::default()
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    /// Task.ResizePty.
    pub async fn resize_pty_task(&self, req: &ResizePtyRequest) -> Result<()> {
        let containers = self.inner.containers.lock().await;
        let container = containers.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        container
            .process(&req.exec_id)?
            .io
            .resize(req.width, req.height)
    }

    /// Task.CloseIO: let the process see EOF on stdin.
    pub async fn close_io_task(&self, req: &CloseIORequest) -> Result<()> {
        let mut containers = self.inner.containers.lock().await;
        let container = containers
            .get_mut(&req.id)
            .ok_or_else(|| not_found(&req.id))?;
        let process = container.process_mut(&req.exec_id)?;
        if req.stdin {
            process.io.close_stdin();
        }
        Ok(())
    }

    /// Task.Update: new resource limits (the request carries OCI LinuxResources as JSON).
    pub async fn update_task(&self, req: &UpdateTaskRequest) -> Result<()> {
        let resources = req.resources.as_ref().ok_or_else(|| {
            ShimError::InvalidArgument("resources: expected OCI LinuxResources, got none".into())
        })?;
        let resources: LinuxResources = serde_json::from_slice(&resources.value).map_err(|e| {
            ShimError::InvalidArgument(format!(
                "resources: expected OCI LinuxResources as JSON: {e}"
            ))
        })?;
        let containers = self.inner.containers.lock().await;
        let container = containers.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        container.runtime.update(&req.id, &resources).await?;
        Ok(())
    }

    /// Task.Stats: cgroup metrics of the container.
    pub async fn stats_task(&self, req: &StatsRequest) -> Result<StatsResponse> {
        let containers = self.inner.containers.lock().await;
        let container = containers.get(&req.id).ok_or_else(|| not_found(&req.id))?;
        let cgroup = match &container.cgroup {
            Some(cgroup) => cgroup.clone(),
            None => Cgroup::of_pid(container.init.pid)?,
        };
        drop(containers);
        let stats = tokio::task::spawn_blocking(move || cgroup.metrics())
            .await
            .map_err(|e| ShimError::Other(format!("stats task failed: {e}")))??;
        Ok(StatsResponse {
            stats: Some(stats).into(),
            ..Default::default()
        })
    }

    /// Task.Connect.
    pub async fn connect_task(&self, req: &ConnectRequest) -> Result<ConnectResponse> {
        let containers = self.inner.containers.lock().await;
        let task_pid = containers
            .get(&req.id)
            .map(|c| c.init.pid.max(0) as u32)
            .unwrap_or(0);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: containix_core::VERSION.to_owned(),
            ..Default::default()
        })
    }

    /// Task.Shutdown: ends the shim once it manages no container.
    pub async fn shutdown_task(&self, _req: &ShutdownRequest) -> Result<()> {
        let containers = self.inner.containers.lock().await;
        if containers.is_empty() {
            info!("no containers left, shutting down");
            self.inner.exit.signal();
        }
        Ok(())
    }

    /// Applies an exit the reaper reported for `pid`. Pids of no known process (runc's own
    /// commands) are ignored.
    ///
    /// An exit is recorded (State says stopped, Wait answers) before its `TaskExit` is
    /// published, so whoever acts on the event finds the task stopped. Init's exit is the
    /// container's last: while execs still run (they die with init's pid namespace, or by
    /// the `kill --all` below), it is held back until the last of them has exited.
    pub async fn handle_exit(&self, pid: i32, status: i32) {
        let mut containers = self.inner.containers.lock().await;
        let info = ExitInfo {
            status: status as u32,
            at: now(),
        };
        for container in containers.values_mut() {
            if container.init.pid == pid
                && container.init.exit().is_none()
                && container.pending_init_exit.is_none()
            {
                if container.kill_all_on_exit
                    && let Err(e) = container.runtime.kill(&container.id, 9, true).await
                {
                    debug!("kill --all after init exit of {}: {e}", container.id);
                }
                if container.has_running_execs() {
                    debug!(
                        "container {} exited; publishing once its execs have",
                        container.id
                    );
                    container.pending_init_exit = Some(info);
                } else {
                    self.finish_init_exit(container, info).await;
                }
                return;
            }
            let Some((exec_id, exec)) = container
                .execs
                .iter_mut()
                .find(|(_, exec)| exec.pid == pid && exec.exit().is_none())
            else {
                continue;
            };
            exec.set_exited(info.clone());
            let exec_id = exec_id.clone();
            self.emit_exit(&container.id, &exec_id, pid, &info).await;
            if !container.has_running_execs()
                && let Some(init_exit) = container.pending_init_exit.take()
            {
                self.finish_init_exit(container, init_exit).await;
            }
            return;
        }
    }

    /// Records and publishes init's exit, after a last look for OOM kills.
    async fn finish_init_exit(&self, container: &mut Container, info: ExitInfo) {
        match container.oom.take() {
            Some(watcher) => watcher.stop().await,
            // No live watcher (it could not start): look once, as the exit is known.
            None => {
                if container.cgroup.as_ref().is_some_and(|c| c.oom_kills() > 0) {
                    emit(
                        &*self.inner.events,
                        TaskOOM {
                            container_id: container.id.clone(),
                            ..Default::default()
                        },
                    )
                    .await;
                }
            }
        }
        container.init.set_exited(info.clone());
        info!(
            "container {} exited with status {}",
            container.id, info.status
        );
        let pid = container.init.pid;
        self.emit_exit(&container.id, &container.id, pid, &info)
            .await;
    }

    async fn emit_exit(&self, container_id: &str, id: &str, pid: i32, info: &ExitInfo) {
        emit(
            &*self.inner.events,
            TaskExit {
                container_id: container_id.to_owned(),
                id: id.to_owned(),
                pid: pid as u32,
                exit_status: info.status,
                exited_at: Some(info.at.clone()).into(),
                ..Default::default()
            },
        )
        .await;
    }

    /// How many containers the shim manages.
    #[cfg(test)]
    pub async fn container_count(&self) -> usize {
        self.inner.containers.lock().await.len()
    }
}

/// What [`TaskService::finish_delete`] tears down.
struct Teardown {
    id: String,
    bundle: PathBuf,
    rootfs_mounted: bool,
    copies: Vec<tokio::task::JoinHandle<()>>,
}

/// A container id taken by a Task.Create under way; dropping it frees the id.
struct Reservation {
    inner: Arc<Inner>,
    id: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Ok(mut creating) = self.inner.creating.lock() {
            creating.remove(&self.id);
        }
    }
}

/// The `info` of a Task.Pids entry for an exec process: its exec id, as containerd's runc
/// shim packs it (`containerd.runc.v1.ProcessDetails`).
fn exec_details(exec_id: &str) -> Result<Any> {
    let details = ProcessDetails {
        exec_id: exec_id.to_owned(),
        ..Default::default()
    };
    containerd_shim::util::convert_to_any(Box::new(details)).map_err(ShimError::from)
}

fn delete_response(pid: i32, exit: Option<ExitInfo>) -> DeleteResponse {
    DeleteResponse {
        pid: pid.max(0) as u32,
        exit_status: exit.as_ref().map(|e| e.status).unwrap_or(0),
        exited_at: exit.map(|e| e.at).into(),
        ..Default::default()
    }
}

/// Waits for output copies to finish, so no output is lost; a copy still held open by a
/// leftover process is abandoned after a grace period.
async fn drain(copies: Vec<tokio::task::JoinHandle<()>>) {
    let all = futures_join(copies);
    if tokio::time::timeout(std::time::Duration::from_secs(2), all)
        .await
        .is_err()
    {
        warn!("stdio copy still open after the process exited; leaving it behind");
    }
}

async fn futures_join(copies: Vec<tokio::task::JoinHandle<()>>) {
    for copy in copies {
        let _ = copy.await;
    }
}

fn log_err<T>(method: &str, result: Result<T>) -> TtrpcResult<T> {
    result.map_err(|e| {
        warn!("{method} failed: {e}");
        e.into()
    })
}

#[async_trait]
impl containerd_shim::Task for TaskService {
    async fn create(
        &self,
        ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        // ttrpc drops this call when the caller's deadline passes (the kubelet's CRI deadline,
        // through containerd): answer before that, leaving a long resolution running.
        let deadline = u64::try_from(ctx.timeout_nano)
            .ok()
            .filter(|&nanos| nanos > 0)
            .map(|nanos| tokio::time::Instant::now() + std::time::Duration::from_nanos(nanos));
        let result = self.create_task(&req, deadline).await;
        // Create parsed the spec and maybe a closure: what it freed need not stay resident.
        containix_core::node::process_heap::give_back_free_pages();
        log_err("create", result)
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let result = self.start_task(&req).await;
        containix_core::node::process_heap::give_back_free_pages();
        log_err("start", result)
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let result = self.delete_task(&req).await;
        containix_core::node::process_heap::give_back_free_pages();
        log_err("delete", result)
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        log_err("exec", self.exec_task(&req).await).map(|()| Empty::new())
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        log_err("kill", self.kill_task(&req).await).map(|()| Empty::new())
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        log_err("wait", self.wait_task(&req).await)
    }

    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        log_err("state", self.state_task(&req).await)
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        log_err("pause", self.set_paused(&req.id, true).await).map(|()| Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        log_err("resume", self.set_paused(&req.id, false).await).map(|()| Empty::new())
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        log_err("pids", self.pids_task(&req).await)
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        log_err("resize_pty", self.resize_pty_task(&req).await).map(|()| Empty::new())
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        log_err("close_io", self.close_io_task(&req).await).map(|()| Empty::new())
    }

    async fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        log_err("update", self.update_task(&req).await).map(|()| Empty::new())
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        log_err("stats", self.stats_task(&req).await)
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> TtrpcResult<ConnectResponse> {
        log_err("connect", self.connect_task(&req).await)
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, req: ShutdownRequest) -> TtrpcResult<Empty> {
        log_err("shutdown", self.shutdown_task(&req).await).map(|()| Empty::new())
    }
}
