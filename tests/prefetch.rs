//! Warming a node and watching it: `containix prefetch` builds a closure before its pod lands,
//! so the pod's start builds and fetches nothing, and `containix status` shows the node's
//! resolutions in flight and its store views. Through containerd's CRI on the test node, with
//! the CLI pointed at the node's policy as an operator's node would have it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use containix_core::image::oci_image::EMPTY_IMAGE_NAME;
use containix_testkit::containerd::{CONTAINIX_RUNTIME_HANDLER, Containerd, ContainerdOptions};
use containix_testkit::cri::{ContainerSpec, PodSandboxSpec};
use containix_testkit::fixtures::{Fixture, Unbuilt};
use containix_testkit::pod::CriPod;
use containix_tests::{
    LIMIT, assert_matches_documented_json, containix_bin, eventually, stop_cleanly,
};
use serde_json::Value;

async fn start_node() -> Containerd {
    let options = ContainerdOptions {
        containix_policy: "allowed-flake-prefixes = [\"path:/nix/store/\"]\nrealise = \"build\"\n"
            .into(),
        ..ContainerdOptions::default()
    };
    Containerd::start(options)
        .await
        .unwrap_or_else(|e| panic!("starting the test containerd: {e}"))
}

/// Runs the CLI as the node's operator would: with the node's policy.
fn containix(node: &Containerd, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(containix_bin())
        .args(args)
        .env("CONTAINIX_CONFIG", node.layout().containix_policy())
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn status(node: &Containerd) -> Value {
    let (ok, stdout, stderr) = containix(node, &["status", "--json"]);
    assert!(ok, "{stderr}");
    let value = serde_json::from_str(&stdout).unwrap();
    assert_matches_documented_json("status", &value);
    value
}

/// How many times the daemon started the slow build of `flake` (see the build-log fixture).
fn builds_of(flake: &Unbuilt) -> usize {
    let prefix = format!("containix-slow-build{}-", flake.salt);
    std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .count()
}

fn forget_builds(flake: &Unbuilt) {
    let prefix = format!("containix-slow-build{}-", flake.salt);
    for entry in std::fs::read_dir("/tmp").unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn leftovers(node: &Containerd) -> Vec<PathBuf> {
    fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                files_under(&entry.path(), out);
            } else {
                out.push(entry.path());
            }
        }
    }
    let mut out = Vec::new();
    let state = node.layout().containix_state();
    for dir in ["gcroots", "containers", "views", "inflight"] {
        files_under(&state.join(dir), &mut out);
    }
    out
}

#[tokio::test]
async fn a_prefetched_closure_starts_with_no_build_and_status_shows_the_node_s_work() {
    let warm = Fixture::BuildLog.unbuilt_isolated().unwrap();
    let cold = Fixture::BuildLog.unbuilt_isolated().unwrap();
    let node = start_node().await;

    // An unbuilt flake's pod, started with a deadline shorter than its build: status shows the
    // resolution in flight, with the waiting pod.
    let spec =
        PodSandboxSpec::new("cold").annotation("containix.dev/flake", &cold.flake_ref("slow"));
    let cold_pod = CriPod::run(&node, spec, CONTAINIX_RUNTIME_HANDLER)
        .await
        .unwrap();
    let app = ContainerSpec::new("app", EMPTY_IMAGE_NAME);
    let id = cold_pod
        .cri
        .create_container(&cold_pod.id, &app.build(), &cold_pod.config)
        .await
        .unwrap();
    cold_pod
        .cri
        .start_container_within(&id, Some(Duration::from_secs(3)))
        .await
        .expect_err("the build takes longer than the deadline");
    let now = status(&node);
    let resolutions = now["resolutions"].as_array().unwrap();
    assert_eq!(resolutions.len(), 1, "{now:#}");
    assert!(
        resolutions[0]["request"]
            .as_str()
            .unwrap()
            .ends_with("#packages.x86_64-linux.slow")
            || resolutions[0]["request"]
                .as_str()
                .unwrap()
                .contains(".slow"),
        "{now:#}"
    );
    assert_eq!(resolutions[0]["state"], "running", "{now:#}");
    assert_eq!(
        resolutions[0]["waitingPods"][0],
        cold_pod.id.as_str(),
        "{now:#}"
    );
    assert!(resolutions[0]["elapsedMs"].as_u64().unwrap() > 0, "{now:#}");
    let (ok, text, _) = containix(&node, &["status"]);
    assert!(ok && text.contains("still building"), "{text}");
    cold_pod.remove(LIMIT).await.unwrap();

    // Prefetch the other flake: it is built now, once, and kept.
    let (ok, stdout, stderr) = containix(
        &node,
        &[
            "prefetch",
            "--keep",
            "1h",
            "--json",
            &warm.flake_ref("slow"),
        ],
    );
    assert!(ok, "{stderr}");
    let held: Value = serde_json::from_str(&stdout).unwrap();
    assert_matches_documented_json("prefetch", &held);
    assert_eq!(held[0]["paths"], 2, "{held:#}");
    assert!(held[0]["keptUntilMs"].as_u64().unwrap() > 0);
    assert_eq!(builds_of(&warm), 1);
    let view = held[0]["view"].as_str().unwrap().to_owned();
    let now = status(&node);
    let users = now["views"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == view.as_str())
        .map(|v| v["users"].clone())
        .unwrap();
    assert!(
        users[0]["name"].as_str().unwrap().starts_with("prefetch-"),
        "{now:#}"
    );
    assert!(users[0]["untilMs"].as_u64().is_some(), "{now:#}");

    // Its pod starts within a short deadline, building nothing.
    let spec =
        PodSandboxSpec::new("warm").annotation("containix.dev/flake", &warm.flake_ref("slow"));
    let warm_pod = CriPod::run(&node, spec, CONTAINIX_RUNTIME_HANDLER)
        .await
        .unwrap();
    let id = warm_pod
        .cri
        .create_container(&warm_pod.id, &app.build(), &warm_pod.config)
        .await
        .unwrap();
    warm_pod
        .cri
        .start_container_within(&id, Some(Duration::from_secs(3)))
        .await
        .unwrap();
    warm_pod.cri.wait_for_exit(&id, LIMIT).await.unwrap();
    assert_eq!(builds_of(&warm), 1, "the pod's start built nothing");
    warm_pod.remove(LIMIT).await.unwrap();
    assert!(
        status(&node)["views"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["id"] == view.as_str()),
        "the prefetch still holds the view after its pod"
    );

    let (ok, stdout, stderr) =
        containix(&node, &["prefetch", "--release", &warm.flake_ref("slow")]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("released"), "{stdout}");
    eventually("the node's state to go", async || {
        leftovers(&node).is_empty()
    })
    .await;
    stop_cleanly(node).await;
    for flake in [warm, cold] {
        forget_builds(&flake);
    }
}
