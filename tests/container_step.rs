//! The containix step a runtime runs between "containerd wrote the bundle" and "runc create",
//! against the real daemon and real runc: a bundle from `runc spec` with CRI's annotations is
//! rewritten to run the example's closure, runs, and is cleaned up without leftovers; a bad
//! request fails without leaving a GC root or state behind.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use containix_core::assemble::container_step::{
    CONTAINER_NAME_ANNOTATION, CONTAINER_TYPE_ANNOTATION, ContainerStep, Decision, Outcome,
    PassthroughReason, decide,
};
use containix_core::assemble::plan::ImageKind;
use containix_core::assemble::view::registry::StoreViews;
use containix_core::request::policy::NodePolicy;
use containix_core::resolve::inflight::board::InflightBoard;
use containix_core::resolve::inflight::status::InflightState;
use containix_core::resolve::inflight::work_request::WorkRequest;
use containix_core::resolve::inflight::worker::{
    HolderFuture, ResultHolder, WorkerEnd, WorkerTimes, run_worker,
};
use containix_core::resolve::known_roots::KnownRoots;
use containix_core::resolve::resolver::{Resolution, Resolver};
use containix_core::store::gc_roots::GcRoots;
use containix_core::store::members::Members;
use containix_testkit::fixtures::{self, Built};
use containix_testkit::nix_daemon::NixDaemon;
use containix_tests::eventually;

/// A bundle as containerd leaves it for the shim: `runc spec`'s config with the container's
/// annotations, and an empty rootfs (the empty image).
fn bundle(dir: &Path, annotations: &[(&str, &str)]) {
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    let _ = std::fs::remove_file(dir.join("config.json"));
    let status = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
    let path = dir.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["annotations"] = annotations
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
}

fn step(state_dir: &Path) -> ContainerStep {
    let daemon = NixDaemon::start_or_reuse().unwrap();
    ContainerStep::new(NodePolicy {
        state_dir: state_dir.to_owned(),
        daemon_socket: daemon.socket_path().to_owned(),
        ..NodePolicy::default()
    })
}

fn store_paths(built: &Built) -> String {
    built.out_path.display().to_string()
}

fn leftovers(state_dir: &Path) -> Vec<String> {
    walk(state_dir)
}

fn walk(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            let inner = walk(&path);
            if inner.is_empty() {
                continue;
            }
            found.extend(inner);
        } else {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test]
async fn prepared_bundle_runs_the_closure_and_cleanup_leaves_nothing() {
    let hello = fixtures::example_hello().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (bundle_dir, state_dir) = (tmp.path().join("bundle"), tmp.path().join("state"));
    bundle(
        &bundle_dir,
        &[
            (CONTAINER_TYPE_ANNOTATION, "container"),
            (CONTAINER_NAME_ANNOTATION, "hello"),
            ("containix.dev/store-paths", &store_paths(&hello)),
            ("containix.dev/entrypoint", "/bin/hello"),
        ],
    );
    let step = step(&state_dir);
    let Outcome::Prepared(prepared) = step.prepare("ctr-1", &bundle_dir).await.unwrap() else {
        panic!("expected the container to be prepared")
    };
    assert_eq!(prepared.image, ImageKind::Empty);
    assert_eq!(prepared.view.member_count, hello.closure.len());
    let mut closure = hello.closure.clone();
    closure.sort();
    let listed = prepared.view.members().list().unwrap();
    assert_eq!(
        listed.iter().map(|p| p.as_path()).collect::<Vec<_>>(),
        closure,
        "the view's directory shows exactly the closure"
    );
    let recorded = prepared
        .view
        .closure(prepared.resolution.roots.clone())
        .unwrap();
    assert_eq!(
        recorded.paths().cloned().collect::<Vec<_>>(),
        listed,
        "the view records the closure's path infos"
    );
    assert_eq!(
        prepared.stages.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        ["resolve", "view", "assemble", "plan"]
    );

    let runc_root = tmp.path().join("runc");
    let output = Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["run", "--bundle"])
        .arg(&bundle_dir)
        .arg("containix-step-test")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "runc: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Hello from containix!"), "{stdout}");

    assert!(
        !leftovers(&state_dir).is_empty(),
        "the GC root and state exist while it runs"
    );
    step.cleanup("ctr-1").await.unwrap();
    step.cleanup("ctr-1").await.unwrap();
    eventually("the step's state to go", async || {
        leftovers(&state_dir).is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_failed_step_leaves_no_gc_root_or_state() {
    let hello = fixtures::example_hello().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (bundle_dir, state_dir) = (tmp.path().join("bundle"), tmp.path().join("state"));
    bundle(
        &bundle_dir,
        &[
            (CONTAINER_TYPE_ANNOTATION, "container"),
            (CONTAINER_NAME_ANNOTATION, "hello"),
            ("containix.dev/store-paths", &store_paths(&hello)),
            ("containix.dev/entrypoint", "not-in-the-closure"),
        ],
    );
    let before = std::fs::read(bundle_dir.join("config.json")).unwrap();
    let err = step(&state_dir)
        .prepare("ctr-2", &bundle_dir)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not-in-the-closure"), "{err}");
    eventually("the step's state to go", async || {
        leftovers(&state_dir).is_empty()
    })
    .await;
    assert_eq!(
        std::fs::read(bundle_dir.join("config.json")).unwrap(),
        before
    );
}

#[tokio::test]
async fn sandboxes_and_bad_annotations_touch_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (bundle_dir, state_dir) = (tmp.path().join("bundle"), tmp.path().join("state"));
    bundle(
        &bundle_dir,
        &[
            (CONTAINER_TYPE_ANNOTATION, "sandbox"),
            ("containix.dev/flake", "github:org/app"),
        ],
    );
    let outcome = step(&state_dir)
        .prepare("pause", &bundle_dir)
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        Outcome::Passthrough(PassthroughReason::Sandbox)
    ));

    bundle(
        &bundle_dir,
        &[
            (CONTAINER_TYPE_ANNOTATION, "container"),
            ("containix.dev/flake", "github:org/app"),
            ("containix.dev/store-paths", "/nix/store/x"),
        ],
    );
    let err = step(&state_dir)
        .prepare("ctr-3", &bundle_dir)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("containix.dev/store-paths"), "{err}");
    eventually("the step's state to go", async || {
        leftovers(&state_dir).is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_repeat_start_of_a_known_closure_needs_no_daemon() {
    let hello = fixtures::example_hello().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = tmp.path().join("state");
    let paths = store_paths(&hello);
    let annotations = |name| {
        [
            (CONTAINER_TYPE_ANNOTATION, "container"),
            (CONTAINER_NAME_ANNOTATION, name),
            ("containix.dev/store-paths", paths.as_str()),
            ("containix.dev/entrypoint", "/bin/hello"),
        ]
    };
    let first_bundle = tmp.path().join("first");
    bundle(&first_bundle, &annotations("first"));
    let step = step(&state_dir);
    let Outcome::Prepared(prepared) = step.prepare("ctr-a", &first_bundle).await.unwrap() else {
        panic!("expected the container to be prepared")
    };
    assert_eq!(prepared.stages[0].0, "resolve");

    // Another shim on the node, whose daemon socket leads nowhere: the view and its GC root are
    // there, so it never asks.
    let offline = ContainerStep::new(NodePolicy {
        state_dir: state_dir.clone(),
        daemon_socket: tmp.path().join("no-daemon.sock"),
        ..NodePolicy::default()
    });
    let second_bundle = tmp.path().join("second");
    bundle(&second_bundle, &annotations("second"));
    let Outcome::Prepared(again) = offline.prepare("ctr-b", &second_bundle).await.unwrap() else {
        panic!("expected the container to be prepared")
    };
    assert_eq!(
        again.stages.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        ["view", "assemble", "plan"]
    );
    assert_eq!(again.view.id, prepared.view.id);
    assert_eq!(again.resolution, prepared.resolution);
    assert_eq!(again.view.member_count, prepared.view.member_count);

    offline.cleanup("ctr-b").await.unwrap();
    assert!(
        !leftovers(&state_dir).is_empty(),
        "ctr-a still uses the view"
    );
    step.cleanup("ctr-a").await.unwrap();
    eventually("the step's state to go", async || {
        leftovers(&state_dir).is_empty()
    })
    .await;

    // Once the view is gone, the offline step has to ask the daemon, and says it cannot reach it.
    let err = offline
        .prepare("ctr-c", &second_bundle)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no-daemon.sock"), "{err}");
    eventually("the step's state to go", async || {
        leftovers(&state_dir).is_empty()
    })
    .await;
}

/// Delegates to the node's store views, and notes whether the worker's result was still on the
/// board when the worker let go of its view.
struct RecordingHolder {
    views: StoreViews,
    board: InflightBoard,
    key: String,
    on_board_at_release: Mutex<Option<bool>>,
}

impl ResultHolder for RecordingHolder {
    fn hold<'a>(
        &'a self,
        resolution: Resolution,
        consumer: &'a str,
    ) -> HolderFuture<'a, Result<KnownRoots, String>> {
        self.views.hold(resolution, consumer)
    }

    fn release<'a>(&'a self, consumer: &'a str) -> HolderFuture<'a, Result<(), String>> {
        *self.on_board_at_release.lock().unwrap() = Some(self.board.status(&self.key).is_some());
        ResultHolder::release(&self.views, consumer)
    }
}

#[tokio::test]
async fn a_finished_worker_takes_its_result_off_the_board_before_letting_go_of_its_view() {
    let hello = fixtures::example_hello().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = tmp.path().join("state");
    let policy = step(&state_dir).resolver().policy().clone();
    let annotations = BTreeMap::from([
        (CONTAINER_TYPE_ANNOTATION.to_owned(), "container".to_owned()),
        ("containix.dev/store-paths".to_owned(), store_paths(&hello)),
    ]);
    let Decision::Prepare(request) = decide(&annotations).unwrap() else {
        panic!("expected a containix request")
    };
    let board = InflightBoard::new(&state_dir);
    let key = board
        .post(&WorkRequest::of(&request, &policy.system), "pod-1")
        .unwrap();
    let holder = RecordingHolder {
        views: StoreViews::new(
            policy.view_dir(),
            GcRoots::new(&policy.state_dir),
            policy.store_view,
        ),
        board: InflightBoard::new(&state_dir),
        key: key.clone(),
        on_board_at_release: Mutex::new(None),
    };
    // The pod takes the result as soon as it is there (withdrawing from the board).
    let pod = {
        let (board, key) = (InflightBoard::new(&state_dir), key.clone());
        tokio::spawn(async move {
            while !board
                .status(&key)
                .is_some_and(|s| s.state == InflightState::Done)
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            board.withdraw(&key, "pod-1").unwrap();
        })
    };
    let times = WorkerTimes {
        tick: Duration::from_millis(20),
        ..WorkerTimes::default()
    };
    let resolver = Resolver::new(policy);
    let end = run_worker(&board, &key, &resolver, &holder, times)
        .await
        .unwrap();
    pod.await.unwrap();
    assert_eq!(end, WorkerEnd::Done);
    // A pod posting from now on starts a new resolution rather than reading a result whose
    // view is going.
    assert_eq!(*holder.on_board_at_release.lock().unwrap(), Some(false));
    eventually("the worker's state to go", async || {
        leftovers(&state_dir).is_empty()
    })
    .await;
}
