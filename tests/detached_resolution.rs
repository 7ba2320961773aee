//! Resolutions that outlive the kubelet's CRI deadline, through containerd's CRI with the real
//! shim, daemon and runc: StartContainer is sent with a short deadline, as a kubelet with a
//! small `--runtime-request-timeout` would, and retried with a new container as a kubelet does.
//!
//! The fixture's `slow` build sleeps a few seconds and leaves one file per run of its builder in
//! /tmp, so the tests count how often the daemon built it, and see whether it is still running.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containix_core::image::oci_image::EMPTY_IMAGE_NAME;
use containix_testkit::containerd::{CONTAINIX_RUNTIME_HANDLER, Containerd, ContainerdOptions};
use containix_testkit::cri::{ContainerLog, ContainerSpec, PodSandboxSpec};
use containix_testkit::fixtures::{Fixture, Unbuilt};
use containix_testkit::pod::CriPod;
use containix_tests::{LIMIT, eventually, stop_cleanly};

/// The CRI deadline of every StartContainer here: shorter than the build.
const CRI_DEADLINE: Duration = Duration::from_secs(3);

async fn start_node(extra: &str) -> Containerd {
    let options = ContainerdOptions {
        containix_policy: format!(
            "allowed-flake-prefixes = [\"path:/nix/store/\"]\nrealise = \"build\"\n{extra}"
        ),
        ..ContainerdOptions::default()
    };
    Containerd::start(options)
        .await
        .unwrap_or_else(|e| panic!("starting the test containerd: {e}"))
}

/// How many times the daemon started the slow build of `flake`.
fn builds_of(flake: &Unbuilt) -> usize {
    let prefix = format!("containix-slow-build{}-", flake.salt);
    std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .count()
}

/// Whether a builder of `flake`'s slow build runs now.
fn building(flake: &Unbuilt) -> bool {
    let needle = format!("containix-slow-build{}", flake.salt);
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(&needle))
    })
}

fn forget_builds(flake: &Unbuilt) {
    let prefix = format!("containix-slow-build{}-", flake.salt);
    for entry in std::fs::read_dir("/tmp").unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// What a kubelet does to start a pod's container: create attempt `n`, start it with the CRI
/// deadline; the error text the pod's events would show, if it fails.
async fn attempt(pod: &CriPod, n: u32) -> Result<String, String> {
    let spec = ContainerSpec::new(&format!("app-{n}"), EMPTY_IMAGE_NAME);
    let id = pod
        .cri
        .create_container(&pod.id, &spec.build(), &pod.config)
        .await
        .map_err(|e| e.to_string())?;
    match pod
        .cri
        .start_container_within(&id, Some(CRI_DEADLINE))
        .await
    {
        Ok(()) => Ok(id),
        Err(err) => {
            let _ = pod.cri.remove_container(&id).await;
            Err(err.to_string())
        }
    }
}

/// Retries like a kubelet (without its back-off) until a start succeeds: the container, its
/// name, and the failures seen.
async fn start_with_retries(pod: &CriPod) -> (String, String, Vec<String>) {
    let mut failures = Vec::new();
    for n in 0..60 {
        match attempt(pod, n).await {
            Ok(id) => return (id, format!("app-{n}"), failures),
            Err(err) => failures.push(err),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the container never started: {failures:#?}");
}

async fn output_of(pod: &CriPod, container: &str, name: &str) -> String {
    pod.cri.wait_for_exit(container, LIMIT).await.unwrap();
    ContainerLog::read(&pod.log_dir.join(format!("{name}.log")))
        .await
        .unwrap()
        .stdout()
}

/// Files left under the node's containix state: views, roots, in-flight resolutions.
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

/// Detached resolution workers of `node`'s shims (their environment names its policy).
fn workers_of(node: &Containerd) -> usize {
    let policy = node.layout().containix_policy();
    let policy = policy.to_string_lossy();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains("containix-resolve")
                && String::from_utf8_lossy(&environ).contains(policy.as_ref())
        })
        .count()
}

async fn pod_of(node: &Containerd, name: &str, flake: &Unbuilt) -> CriPod {
    let spec =
        PodSandboxSpec::new(name).annotation("containix.dev/flake", &flake.flake_ref("slow"));
    CriPod::run(node, spec, CONTAINIX_RUNTIME_HANDLER)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_build_outlives_a_short_cri_deadline_and_the_retry_attaches_to_it() {
    let flake = Fixture::BuildLog.unbuilt_isolated().unwrap();
    let node = start_node("").await;
    let pod = pod_of(&node, "slow", &flake).await;

    let err = attempt(&pod, 0).await.expect_err("the build takes longer");
    assert!(err.contains("containix: "), "{err}");
    assert!(
        err.contains("still building /nix/store/...-build-log-slow-1.0.drv ("),
        "{err}"
    );
    assert!(err.contains("kubelet will retry"), "{err}");
    // The cancelled start left the build running.
    assert!(
        building(&flake),
        "the build stopped with the cancelled start"
    );

    let (container, name, failures) = start_with_retries(&pod).await;
    assert!(
        failures.iter().all(|f| f.contains("still ")),
        "every failed attempt says how far the build got: {failures:#?}"
    );
    assert_eq!(output_of(&pod, &container, &name).await.trim(), "slow ran");
    assert_eq!(builds_of(&flake), 1, "the daemon built the derivation once");

    pod.remove(LIMIT).await.unwrap();
    eventually("the node's state to go", async || {
        leftovers(&node).is_empty()
    })
    .await;
    stop_cleanly(node).await;
    forget_builds(&flake);
    flake.delete_from_store().unwrap();
}

#[tokio::test]
async fn two_pods_of_one_unbuilt_flake_share_one_build() {
    let flake = Fixture::BuildLog.unbuilt_isolated().unwrap();
    let node = start_node("").await;
    let first = pod_of(&node, "first", &flake).await;
    let second = pod_of(&node, "second", &flake).await;
    let (a, b) = tokio::join!(start_with_retries(&first), start_with_retries(&second));
    assert_eq!(output_of(&first, &a.0, &a.1).await.trim(), "slow ran");
    assert_eq!(output_of(&second, &b.0, &b.1).await.trim(), "slow ran");
    assert_eq!(builds_of(&flake), 1, "one build for both pods");
    for pod in [first, second] {
        pod.remove(LIMIT).await.unwrap();
    }
    eventually("the node's state to go", async || {
        leftovers(&node).is_empty()
    })
    .await;
    stop_cleanly(node).await;
    forget_builds(&flake);
    flake.delete_from_store().unwrap();
}

#[tokio::test]
async fn a_deleted_pod_s_build_is_cancelled_after_the_grace_period_and_leaves_nothing() {
    let flake = Fixture::BuildLog.unbuilt_isolated().unwrap();
    let node = start_node("resolution-grace = \"1s\"\n").await;
    let pod = pod_of(&node, "doomed", &flake).await;
    attempt(&pod, 0).await.expect_err("the build takes longer");
    assert!(building(&flake));
    pod.remove(LIMIT).await.unwrap();
    eventually("the build to be cancelled", async || !building(&flake)).await;
    eventually("the node's state to go", async || {
        leftovers(&node).is_empty()
    })
    .await;
    eventually("the worker to exit", async || workers_of(&node) == 0).await;
    stop_cleanly(node).await;
    forget_builds(&flake);
}
