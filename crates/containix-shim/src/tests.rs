//! Task state machine tests against a fake runc that records calls.

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI32, Ordering},
    },
};

use async_trait::async_trait;
use containerd_shim::{
    ExitSignal,
    api::{
        CreateTaskRequest, DeleteRequest, ExecProcessRequest, KillRequest, PidsRequest,
        ShutdownRequest, StartRequest, StateRequest, WaitRequest,
    },
    protos::{
        protobuf::{Message, MessageDyn, well_known_types::any::Any},
        shim::oci::ProcessDetails,
        ttrpc,
    },
};
use oci_spec::runtime::LinuxResources;
use tokio::sync::Notify;

use crate::{
    containix_step::{ContainixStep, StepError, StepOutcome},
    error::ShimError,
    events::EventSink,
    spawner::{CreateSpec, ExecSpec, OciRuntime, RuntimeConfig, RuntimeError, Spawner},
    task::TaskService,
};

#[derive(Default)]
struct FakeRunc {
    calls: Mutex<Vec<String>>,
    next_pid: AtomicI32,
    fail_create: Mutex<Option<String>>,
    gone: Mutex<bool>,
    /// What `runc ps` lists.
    ps: Mutex<Vec<u32>>,
}

impl FakeRunc {
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn pid(&self) -> i32 {
        // Far above any pid_max, so no real process is ever touched.
        90_000_000 + self.next_pid.fetch_add(1, Ordering::SeqCst)
    }
}

struct FakeRuntime(Arc<FakeRunc>);

#[async_trait]
impl OciRuntime for FakeRuntime {
    async fn create(&self, spec: &CreateSpec<'_>) -> Result<i32, RuntimeError> {
        self.0.record(format!("create {}", spec.id));
        if let Some(message) = self.0.fail_create.lock().unwrap().clone() {
            return Err(RuntimeError::failed("create", message));
        }
        Ok(self.0.pid())
    }
    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.0.record(format!("start {id}"));
        Ok(())
    }
    async fn exec(&self, spec: &ExecSpec<'_>) -> Result<i32, RuntimeError> {
        self.0.record(format!(
            "exec {} {}",
            spec.container_id,
            spec.process.args().clone().unwrap_or_default().join(" ")
        ));
        Ok(self.0.pid())
    }
    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError> {
        self.0.record(format!(
            "kill {id} {signal}{}",
            if all { " all" } else { "" }
        ));
        if *self.0.gone.lock().unwrap() {
            return Err(RuntimeError::not_found("kill", "container not running"));
        }
        Ok(())
    }
    async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        self.0
            .record(format!("delete {id}{}", if force { " force" } else { "" }));
        Ok(())
    }
    async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.0.record(format!("pause {id}"));
        Ok(())
    }
    async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.0.record(format!("resume {id}"));
        Ok(())
    }
    async fn ps(&self, _id: &str) -> Result<Vec<u32>, RuntimeError> {
        Ok(self.0.ps.lock().unwrap().clone())
    }
    async fn update(&self, id: &str, _resources: &LinuxResources) -> Result<(), RuntimeError> {
        self.0.record(format!("update {id}"));
        Ok(())
    }
}

struct FakeSpawner(Arc<FakeRunc>);

impl Spawner for FakeSpawner {
    fn runtime(&self, _config: &RuntimeConfig) -> Result<Arc<dyn OciRuntime>, RuntimeError> {
        Ok(Arc::new(FakeRuntime(self.0.clone())))
    }
}

#[derive(Default)]
struct FakeStep {
    fail: Option<String>,
    calls: Mutex<Vec<String>>,
    /// When set, `prepare` of this container waits for a permit (a long resolution).
    hold_prepare: Option<(String, Arc<Notify>)>,
    /// When set, `cleanup` waits for a permit (a slow unmount).
    hold_cleanup: Option<Arc<Notify>>,
}

#[async_trait]
impl ContainixStep for FakeStep {
    async fn prepare(
        &self,
        bundle: &Path,
        container_id: &str,
        annotations: &HashMap<String, String>,
        _deadline: Option<tokio::time::Instant>,
    ) -> Result<StepOutcome, StepError> {
        assert!(bundle.join("config.json").exists());
        self.calls.lock().unwrap().push(format!(
            "prepare {container_id} {}",
            annotations
                .get("containix.dev/flake")
                .cloned()
                .unwrap_or_default()
        ));
        if let Some((id, gate)) = &self.hold_prepare
            && id == container_id
        {
            gate.notified().await;
        }
        match &self.fail {
            Some(message) => Err(StepError::new(message.clone())),
            None => Ok(StepOutcome::Prepared),
        }
    }

    async fn cleanup(&self, container_id: &str) -> Result<(), StepError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("cleanup {container_id}"));
        if let Some(gate) = &self.hold_cleanup {
            gate.notified().await;
        }
        Ok(())
    }
}

#[derive(Default)]
struct RecordedEvents(Mutex<Vec<(String, String)>>);

#[async_trait]
impl EventSink for RecordedEvents {
    async fn publish(&self, topic: String, event: Box<dyn MessageDyn>) {
        let text = containerd_shim::protos::protobuf::text_format::print_to_string(&*event);
        self.0.lock().unwrap().push((topic, text));
    }
}

impl RecordedEvents {
    fn topics(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| t.clone())
            .collect()
    }
    fn last(&self) -> String {
        self.0
            .lock()
            .unwrap()
            .last()
            .map(|(_, e)| e.clone())
            .unwrap_or_default()
    }
}

struct Harness {
    task: TaskService,
    runc: Arc<FakeRunc>,
    step: Arc<FakeStep>,
    events: Arc<RecordedEvents>,
    exit: Arc<ExitSignal>,
    dir: tempfile::TempDir,
}

fn harness(step: FakeStep) -> Harness {
    let runc = Arc::new(FakeRunc::default());
    let step = Arc::new(step);
    let events = Arc::new(RecordedEvents::default());
    let exit = Arc::new(ExitSignal::default());
    let task = TaskService::new(
        "test",
        Arc::new(FakeSpawner(runc.clone())),
        step.clone(),
        events.clone(),
        exit.clone(),
    );
    Harness {
        task,
        runc,
        step,
        events,
        exit,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Harness {
    fn bundle(&self, id: &str) -> String {
        let bundle = self.dir.path().join(id);
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(
            bundle.join("config.json"),
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
                "annotations":{"containix.dev/flake":"path:/f#app"},
                "linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}"#,
        )
        .unwrap();
        bundle.display().to_string()
    }

    async fn create(&self, id: &str) -> Result<u32, ShimError> {
        let req = CreateTaskRequest {
            id: id.into(),
            bundle: self.bundle(id),
            ..Default::default()
        };
        self.task.create_task(&req, None).await.map(|r| r.pid)
    }

    async fn start(&self, id: &str, exec_id: &str) -> Result<u32, ShimError> {
        let req = StartRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.task.start_task(&req).await.map(|r| r.pid)
    }

    async fn delete(&self, id: &str, exec_id: &str) -> Result<u32, ShimError> {
        let req = DeleteRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.task.delete_task(&req).await.map(|r| r.exit_status)
    }

    async fn kill(&self, id: &str, exec_id: &str, signal: u32) -> Result<(), ShimError> {
        let req = KillRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            signal,
            ..Default::default()
        };
        self.task.kill_task(&req).await
    }

    /// Registers and starts exec `exec_id` running `sleep`; its pid.
    async fn exec(&self, id: &str, exec_id: &str) -> u32 {
        let spec = serde_json::to_vec(&serde_json::json!({
            "args": ["sleep", "1000"], "cwd": "/", "user": {"uid": 0, "gid": 0}
        }))
        .unwrap();
        let exec = ExecProcessRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            spec: Some(Any {
                value: spec,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        self.task.exec_task(&exec).await.unwrap();
        self.start(id, exec_id).await.unwrap()
    }

    async fn wait(&self, id: &str, exec_id: &str) -> u32 {
        let req = WaitRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.task.wait_task(&req).await.unwrap().exit_status
    }

    async fn status(&self, id: &str, exec_id: &str) -> Result<String, ShimError> {
        let req = StateRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.task
            .state_task(&req)
            .await
            .map(|s| format!("{:?}", s.status.enum_value_or_default()))
    }
}

#[tokio::test]
async fn init_lifecycle_create_start_exit_wait_delete() {
    let h = harness(FakeStep::default());
    let pid = h.create("c1").await.unwrap();
    assert_eq!(h.status("c1", "").await.unwrap(), "CREATED");
    assert_eq!(h.start("c1", "").await.unwrap(), pid);
    assert_eq!(h.status("c1", "").await.unwrap(), "RUNNING");

    let waiter = {
        let task = h.task.clone();
        tokio::spawn(async move {
            let req = WaitRequest {
                id: "c1".into(),
                ..Default::default()
            };
            task.wait_task(&req).await.unwrap().exit_status
        })
    };
    h.task.handle_exit(pid as i32, 3).await;
    assert_eq!(waiter.await.unwrap(), 3);
    assert_eq!(h.wait("c1", "").await, 3);
    assert_eq!(h.status("c1", "").await.unwrap(), "STOPPED");
    assert!(
        h.events.last().contains("exit_status: 3"),
        "{}",
        h.events.last()
    );

    assert_eq!(h.delete("c1", "").await.unwrap(), 3);
    assert_eq!(h.runc.calls(), ["create c1", "start c1", "delete c1 force"]);
    assert_eq!(
        h.events.topics(),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
    assert_eq!(
        *h.step.calls.lock().unwrap(),
        ["prepare c1 path:/f#app", "cleanup c1"]
    );
    assert_eq!(h.task.container_count().await, 0);
    assert!(matches!(
        h.status("c1", "").await,
        Err(ShimError::NotFound(_))
    ));
}

#[tokio::test]
async fn runtime_create_failure_leaves_no_state() {
    let h = harness(FakeStep::default());
    *h.runc.fail_create.lock().unwrap() = Some("exec: \"nope\": not found".into());
    let err = h.create("c1").await.unwrap_err();
    assert!(
        err.to_string().contains("OCI runtime create failed"),
        "{err}"
    );
    assert_eq!(h.runc.calls(), ["create c1", "delete c1 force"]);
    assert_eq!(
        *h.step.calls.lock().unwrap(),
        ["prepare c1 path:/f#app", "cleanup c1"]
    );
    assert_eq!(h.task.container_count().await, 0);
    assert!(h.events.topics().is_empty());
    // The id is free again.
    *h.runc.fail_create.lock().unwrap() = None;
    h.create("c1").await.unwrap();
}

#[tokio::test]
async fn containix_step_failure_fails_create_before_runc() {
    let h = harness(FakeStep {
        fail: Some("containix.dev/flake: expected a flake reference, got \"\"".into()),
        ..Default::default()
    });
    let err = h.create("c1").await.unwrap_err();
    let ttrpc::Error::RpcStatus(status) = ttrpc::Error::from(err) else {
        panic!("expected an rpc status");
    };
    assert!(
        status.message.starts_with("containix: "),
        "{}",
        status.message
    );
    assert!(
        status.message.contains("containix.dev/flake"),
        "{}",
        status.message
    );
    assert!(
        h.runc.calls().is_empty(),
        "runc must not run: {:?}",
        h.runc.calls()
    );
    assert_eq!(h.task.container_count().await, 0);
    assert!(h.events.topics().is_empty());
    let step_calls = h.step.calls.lock().unwrap().clone();
    assert_eq!(step_calls, ["prepare c1 path:/f#app", "cleanup c1"]);
}

#[tokio::test]
async fn exec_lifecycle() {
    let h = harness(FakeStep::default());
    h.create("c1").await.unwrap();
    let spec = serde_json::to_vec(&serde_json::json!({
        "args": ["sh", "-c", "exit 7"], "cwd": "/", "user": {"uid": 0, "gid": 0}
    }))
    .unwrap();
    let exec = ExecProcessRequest {
        id: "c1".into(),
        exec_id: "e1".into(),
        spec: Some(Any {
            value: spec,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    // Exec needs a running container.
    h.task.exec_task(&exec).await.unwrap();
    assert!(matches!(
        h.start("c1", "e1").await,
        Err(ShimError::FailedPrecondition(_))
    ));
    h.start("c1", "").await.unwrap();
    assert!(matches!(
        h.task.exec_task(&exec).await,
        Err(ShimError::AlreadyExists(_))
    ));
    assert!(matches!(
        h.kill("c1", "e1", 15).await,
        Err(ShimError::FailedPrecondition(_))
    ));
    let pid = h.start("c1", "e1").await.unwrap();
    assert_eq!(h.status("c1", "e1").await.unwrap(), "RUNNING");
    assert!(matches!(
        h.delete("c1", "e1").await,
        Err(ShimError::FailedPrecondition(_))
    ));

    h.task.handle_exit(pid as i32, 7).await;
    assert_eq!(h.wait("c1", "e1").await, 7);
    assert!(
        h.events.last().contains("id: \"e1\""),
        "{}",
        h.events.last()
    );
    assert!(matches!(
        h.kill("c1", "e1", 9).await,
        Err(ShimError::NotFound(_))
    ));
    assert_eq!(h.delete("c1", "e1").await.unwrap(), 7);
    assert!(matches!(
        h.status("c1", "e1").await,
        Err(ShimError::NotFound(_))
    ));
    // The container itself is untouched.
    assert_eq!(h.status("c1", "").await.unwrap(), "RUNNING");
    assert_eq!(
        h.events.topics(),
        [
            "/tasks/create",
            "/tasks/exec-added",
            "/tasks/start",
            "/tasks/exec-started",
            "/tasks/exit"
        ]
    );
    assert_eq!(
        h.runc.calls(),
        ["create c1", "start c1", "exec c1 sh -c exit 7"]
    );
}

#[tokio::test]
async fn kill_and_delete_follow_the_process_state() {
    let h = harness(FakeStep::default());
    let pid = h.create("c1").await.unwrap();
    assert!(matches!(
        h.create("c1").await,
        Err(ShimError::AlreadyExists(_))
    ));
    h.start("c1", "").await.unwrap();
    assert!(matches!(
        h.delete("c1", "").await,
        Err(ShimError::FailedPrecondition(_))
    ));
    h.kill("c1", "", 15).await.unwrap();
    // runc says the container is gone before the exit reached the shim.
    *h.runc.gone.lock().unwrap() = true;
    assert!(matches!(
        h.kill("c1", "", 9).await,
        Err(ShimError::NotFound(_))
    ));
    h.task.handle_exit(pid as i32, 128 + 15).await;
    assert!(matches!(
        h.kill("c1", "", 9).await,
        Err(ShimError::NotFound(_))
    ));
    assert_eq!(h.delete("c1", "").await.unwrap(), 143);
    assert!(matches!(
        h.delete("c1", "").await,
        Err(ShimError::NotFound(_))
    ));
}

#[tokio::test]
async fn created_container_can_be_deleted_and_exits_of_unknown_pids_are_ignored() {
    let h = harness(FakeStep::default());
    h.create("c1").await.unwrap();
    h.task.handle_exit(12345678, 1).await;
    assert_eq!(h.status("c1", "").await.unwrap(), "CREATED");
    assert_eq!(h.delete("c1", "").await.unwrap(), 137);
    assert_eq!(h.runc.calls(), ["create c1", "delete c1 force"]);
}

#[tokio::test]
async fn pause_and_resume_publish_events() {
    let h = harness(FakeStep::default());
    h.create("c1").await.unwrap();
    assert!(matches!(
        h.task.set_paused("c1", true).await,
        Err(ShimError::FailedPrecondition(_))
    ));
    h.start("c1", "").await.unwrap();
    h.task.set_paused("c1", true).await.unwrap();
    assert_eq!(h.status("c1", "").await.unwrap(), "PAUSED");
    h.task.set_paused("c1", false).await.unwrap();
    assert_eq!(h.status("c1", "").await.unwrap(), "RUNNING");
    let topics = h.events.topics();
    assert_eq!(topics[2..], ["/tasks/paused", "/tasks/resumed"]);
}

#[tokio::test]
async fn shutdown_waits_for_the_last_container() {
    let h = harness(FakeStep::default());
    let pid = h.create("c1").await.unwrap();
    h.task
        .shutdown_task(&ShutdownRequest::default())
        .await
        .unwrap();
    let exit = h.exit.clone();
    let exited = tokio::spawn(async move { exit.wait().await });
    tokio::task::yield_now().await;
    assert!(!exited.is_finished());
    h.start("c1", "").await.unwrap();
    h.task.handle_exit(pid as i32, 0).await;
    h.delete("c1", "").await.unwrap();
    h.task
        .shutdown_task(&ShutdownRequest::default())
        .await
        .unwrap();
    exited.await.unwrap();
}

#[tokio::test]
async fn exec_spec_must_be_an_oci_process() {
    let h = harness(FakeStep::default());
    h.create("c1").await.unwrap();
    let exec = ExecProcessRequest {
        id: "c1".into(),
        exec_id: "e1".into(),
        spec: Some(Any {
            value: b"{not json".to_vec(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    let err = h.task.exec_task(&exec).await.unwrap_err();
    assert!(err.to_string().starts_with("spec:"), "{err}");
}

/// Lets spawned tasks run until `check` holds (bounded, so a bug fails instead of hanging).
async fn settle(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("{what}");
}

#[tokio::test]
async fn a_long_create_holds_up_no_other_container() {
    let gate = Arc::new(Notify::new());
    let h = Arc::new(harness(FakeStep {
        hold_prepare: Some(("slow".into(), gate.clone())),
        ..Default::default()
    }));
    let pid = h.create("c1").await.unwrap();
    h.start("c1", "").await.unwrap();
    let slow = {
        let h = h.clone();
        tokio::spawn(async move { h.create("slow").await })
    };
    settle("the slow create to reach the containix step", || {
        h.step.calls.lock().unwrap().len() == 2
    })
    .await;
    // While the slow container resolves: the same id is taken, and c1 is killed, exits,
    // is waited for and deleted as if nothing else were going on.
    assert!(matches!(
        h.create("slow").await,
        Err(ShimError::AlreadyExists(_))
    ));
    h.kill("c1", "", 9).await.unwrap();
    h.task.handle_exit(pid as i32, 137).await;
    assert_eq!(h.wait("c1", "").await, 137);
    assert_eq!(h.status("c1", "").await.unwrap(), "STOPPED");
    assert_eq!(h.delete("c1", "").await.unwrap(), 137);
    assert!(!slow.is_finished());

    gate.notify_one();
    slow.await.unwrap().unwrap();
    assert_eq!(h.status("slow", "").await.unwrap(), "CREATED");
}

#[tokio::test]
async fn a_cancelled_create_frees_its_id() {
    let gate = Arc::new(Notify::new());
    let h = harness(FakeStep {
        hold_prepare: Some(("c1".into(), gate.clone())),
        ..Default::default()
    });
    let cancelled =
        tokio::time::timeout(std::time::Duration::from_millis(20), h.create("c1")).await;
    assert!(cancelled.is_err(), "the create should still be waiting");
    gate.notify_one();
    h.create("c1").await.unwrap();
}

#[tokio::test]
async fn init_exits_last_and_is_recorded_before_it_is_published() {
    let h = harness(FakeStep::default());
    let pid = h.create("c1").await.unwrap();
    h.start("c1", "").await.unwrap();
    let exec_pid = h.exec("c1", "e1").await;

    // Init dies first; its exec is still running (it dies with init's pid namespace).
    h.task.handle_exit(pid as i32, 137).await;
    assert_eq!(h.status("c1", "").await.unwrap(), "RUNNING");
    assert!(!h.events.topics().contains(&"/tasks/exit".to_owned()));
    let waiter = {
        let task = h.task.clone();
        tokio::spawn(async move {
            let req = WaitRequest {
                id: "c1".into(),
                ..Default::default()
            };
            task.wait_task(&req).await.unwrap().exit_status
        })
    };

    h.task.handle_exit(exec_pid as i32, 137).await;
    assert_eq!(waiter.await.unwrap(), 137);
    assert_eq!(h.status("c1", "").await.unwrap(), "STOPPED");
    let exits: Vec<String> = h
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(topic, _)| topic == "/tasks/exit")
        .map(|(_, event)| event.clone())
        .collect();
    assert_eq!(exits.len(), 2, "{exits:?}");
    assert!(exits[0].contains("id: \"e1\""), "{exits:?}");
    assert!(exits[1].contains("id: \"c1\""), "{exits:?}");
    assert_eq!(h.delete("c1", "").await.unwrap(), 137);
}

#[tokio::test]
async fn a_deleting_container_still_answers_as_stopped() {
    let gate = Arc::new(Notify::new());
    let h = Arc::new(harness(FakeStep {
        hold_cleanup: Some(gate.clone()),
        ..Default::default()
    }));
    let pid = h.create("c1").await.unwrap();
    h.start("c1", "").await.unwrap();
    h.task.handle_exit(pid as i32, 0).await;
    let delete = {
        let h = h.clone();
        tokio::spawn(async move { h.delete("c1", "").await })
    };
    settle("the delete to reach the containix cleanup", || {
        h.step.calls.lock().unwrap().len() == 2
    })
    .await;
    // containerd still finds the task, stopped: CRI's StopContainer waits for the exit to be
    // recorded rather than finding no task and returning early.
    assert_eq!(h.status("c1", "").await.unwrap(), "STOPPED");
    assert_eq!(h.wait("c1", "").await, 0);
    assert!(matches!(
        h.kill("c1", "", 9).await,
        Err(ShimError::NotFound(_))
    ));
    assert!(matches!(
        h.delete("c1", "").await,
        Err(ShimError::NotFound(_))
    ));
    assert!(matches!(
        h.create("c1").await,
        Err(ShimError::AlreadyExists(_))
    ));
    assert!(!h.events.topics().contains(&"/tasks/delete".to_owned()));
    h.task
        .shutdown_task(&ShutdownRequest::default())
        .await
        .unwrap();

    gate.notify_one();
    assert_eq!(delete.await.unwrap().unwrap(), 0);
    assert!(matches!(
        h.status("c1", "").await,
        Err(ShimError::NotFound(_))
    ));
    assert_eq!(h.events.topics().last().unwrap(), "/tasks/delete");
    assert_eq!(h.task.container_count().await, 0);
}

#[tokio::test]
async fn pids_name_the_exec_of_each_exec_process() {
    let h = harness(FakeStep::default());
    let pid = h.create("c1").await.unwrap();
    h.start("c1", "").await.unwrap();
    let exec_pid = h.exec("c1", "e1").await;
    *h.runc.ps.lock().unwrap() = vec![pid, exec_pid, 7];
    let processes = h
        .task
        .pids_task(&PidsRequest {
            id: "c1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .processes;
    let pids: Vec<u32> = processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids, [pid, exec_pid, 7]);
    assert!(processes[0].info.is_none());
    assert!(processes[2].info.is_none());
    let info = processes[1].info.as_ref().unwrap();
    assert_eq!(info.type_url, "containerd.runc.v1.ProcessDetails");
    assert_eq!(
        ProcessDetails::parse_from_bytes(&info.value)
            .unwrap()
            .exec_id,
        "e1"
    );
}
