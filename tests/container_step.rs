//! The containix step a runtime runs between "containerd wrote the bundle" and "runc create",
//! against the real daemon and real runc: a bundle from `runc spec` with CRI's annotations is
//! rewritten to run the example's closure, runs, and is cleaned up without leftovers; a bad
//! request fails without leaving a GC root or state behind.

use std::path::Path;
use std::process::Command;

use containix_core::assemble::container_step::{
    CONTAINER_NAME_ANNOTATION, CONTAINER_TYPE_ANNOTATION, ContainerStep, Outcome, PassthroughReason,
};
use containix_core::assemble::plan::ImageKind;
use containix_core::request::policy::NodePolicy;
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
    assert_eq!(prepared.resolved.closure.len(), hello.closure.len());
    assert_eq!(
        prepared.stages.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        ["resolve", "view", "assemble"]
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
        ["view", "assemble"]
    );
    assert_eq!(again.view.id, prepared.view.id);
    assert_eq!(again.resolved.closure, prepared.resolved.closure);

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
