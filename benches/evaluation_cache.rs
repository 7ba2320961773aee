//! Pods of a flake whose evaluation takes about a second (`tests/fixtures/slow-eval`, an
//! editable `path:` copy), through containerd's CRI with the containix shim, each against pods
//! naming the same closure by store path (`containix.dev/store-paths`) in the same run:
//!
//! - `first pod`: the flake is unevaluated (locked, evaluated, built);
//! - `second pod`: the flake is unchanged ([`REPEATS`] pods one after another, median);
//! - `burst`: [`BURST`] pods of a new, unevaluated copy of the flake started at once, time until
//!   every one has run, against [`BURST`] store-path pods started at once.
//!
//! A sample is one pod from RunPodSandbox through CreateContainer and StartContainer until its
//! container has exited (removal is not timed). The node records every `nix` run it makes
//! (`<state-dir>/cache/evaluations.log`); the bench prints how many evaluations and locks each
//! phase made. Run as root with the shim built in the bench profile
//! (`cargo build --release -p containix-shim`, or `CONTAINIX_SHIM_BIN`):
//! `cargo bench -p containix-benches --bench evaluation_cache`.

use std::path::Path;
use std::time::{Duration, Instant};

use containix_benches::Summary;
use containix_core::image::oci_image::EMPTY_IMAGE_NAME;
use containix_core::resolve::cache::ResolutionCache;
use containix_testkit::containerd::{CONTAINIX_RUNTIME_HANDLER, Containerd, ContainerdOptions};
use containix_testkit::cri::{ContainerSpec, PodSandboxSpec};
use containix_testkit::fixtures::{current_system, install_busybox, repo_root};
use containix_testkit::join_all::join_all;
use containix_testkit::pod::CriPod;

/// Pods started at once in the burst.
const BURST: usize = 24;
/// Pods of the unchanged flake (and store-path pods), one after another.
const REPEATS: usize = 5;
/// Hang guard for a pod; not a performance bound.
const LIMIT: Duration = Duration::from_secs(300);

fn flake_copy(parent: &Path, message: &str) -> std::path::PathBuf {
    let dir = parent.join(message);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        repo_root().join("tests/fixtures/slow-eval/flake.nix"),
        dir.join("flake.nix"),
    )
    .unwrap();
    install_busybox(&dir).unwrap();
    std::fs::write(dir.join("message"), message).unwrap();
    dir
}

/// One pod with `annotations`, run to exit and removed: how long it took to run.
async fn pod(node: &Containerd, name: &str, annotations: &[(&str, String)]) -> Duration {
    let started = Instant::now();
    let mut spec = PodSandboxSpec::new(name);
    for (key, value) in annotations {
        spec = spec.annotation(key, value);
    }
    let pod = CriPod::run(node, spec, CONTAINIX_RUNTIME_HANDLER)
        .await
        .unwrap();
    let (status, log) = pod
        .run_to_exit(&ContainerSpec::new("app", EMPTY_IMAGE_NAME), LIMIT)
        .await
        .unwrap_or_else(|err| panic!("pod {name}: {err}"));
    let took = started.elapsed();
    assert_eq!(status.exit_code, 0, "pod {name}: {}", log.stderr());
    pod.remove(LIMIT).await.unwrap();
    took
}

/// [`BURST`] pods at once: how long until every one had run.
async fn burst(node: &Containerd, prefix: &str, annotations: &[(&str, String)]) -> Duration {
    let started = Instant::now();
    let names: Vec<String> = (0..BURST).map(|i| format!("{prefix}-{i}")).collect();
    let finished: Vec<Duration> =
        join_all(names.iter().map(|name| pod(node, name, annotations))).await;
    // Each pod's own time includes its removal; the burst ends when the last one had run.
    let last = finished.into_iter().max().unwrap_or_default();
    last.min(started.elapsed())
}

fn median(mut samples: Vec<Duration>) -> Option<Duration> {
    samples.sort();
    samples.get(samples.len() / 2).copied()
}

/// `(locks, evaluations)` the node ran so far.
fn nix_runs(node: &Containerd) -> (usize, usize) {
    let records = ResolutionCache::new(&node.layout().containix_state()).records();
    let count = |kind: &str| records.iter().filter(|r| r.kind == kind).count();
    (count("lock"), count("eval"))
}

/// The store paths a flake pod of `flake` resolved to, from the node's evaluation cache.
fn out_paths(node: &Containerd, flake: &Path) -> String {
    let cache = ResolutionCache::new(&node.layout().containix_state());
    let needle = format!("path:{}?", flake.display());
    let key = cache
        .keys()
        .into_iter()
        .find(|key| key.installable().starts_with(&needle))
        .expect("the flake's evaluation is cached");
    let evaluation = cache.get(&key).unwrap();
    evaluation
        .roots()
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let flakes = tempfile::Builder::new()
        .prefix("containix-bench-eval-")
        .tempdir()
        .unwrap();
    let options = ContainerdOptions {
        containix_policy: format!(
            "allowed-flake-prefixes = [\"path:{}\"]\nrealise = \"build\"\n",
            flakes.path().display()
        ),
        ..ContainerdOptions::default()
    };
    assert!(
        options.shim_binary.is_some(),
        "containerd-shim-containix-v1 not found next to the bench: run `cargo build --release \
         -p containix-shim` or set CONTAINIX_SHIM_BIN"
    );
    let node = Containerd::start(options).await.unwrap();
    let system = current_system().unwrap();
    let flake_ref = |dir: &Path| format!("path:{}#packages.{system}.default", dir.display());
    // A unique message per run gives every run its own, unevaluated closure.
    let stamp = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );

    let first = flake_copy(flakes.path(), &format!("first-{stamp}"));
    let flake_pod = [("containix.dev/flake", flake_ref(&first))];
    let first_pod = pod(&node, "first", &flake_pod).await;
    let after_first = nix_runs(&node);
    let store_pod = [
        ("containix.dev/store-paths", out_paths(&node, &first)),
        ("containix.dev/entrypoint", "slow-eval".to_owned()),
    ];
    let mut flake_times = Vec::new();
    let mut store_times = Vec::new();
    for i in 0..REPEATS {
        store_times.push(pod(&node, &format!("store-{i}"), &store_pod).await);
        flake_times.push(pod(&node, &format!("again-{i}"), &flake_pod).await);
    }
    let after_repeats = nix_runs(&node);
    let store_burst = burst(&node, "store-burst", &store_pod).await;
    let second = flake_copy(flakes.path(), &format!("burst-{stamp}"));
    let burst_pod = [("containix.dev/flake", flake_ref(&second))];
    let flake_burst = burst(&node, "flake-burst", &burst_pod).await;
    let after_burst = nix_runs(&node);
    node.stop().await.unwrap();

    let store = median(store_times);
    let again = median(flake_times);
    let mut summary = Summary::new(format!(
        "evaluation_cache: slow-eval flake pods vs store-path pods of the same closure (burst of {BURST})"
    ));
    summary.figure(
        "first pod (flake, unevaluated)",
        Some(first_pod),
        format!("locks, evaluations: {after_first:?}"),
    );
    summary.figure(
        "second pod (flake, unchanged)",
        again,
        format!("median of {REPEATS}; runs after: {after_repeats:?}"),
    );
    summary.figure("store-path pod", store, format!("median of {REPEATS}"));
    summary.figure(
        format!("burst of {BURST} flake pods"),
        Some(flake_burst),
        format!("runs after: {after_burst:?}"),
    );
    summary.figure(
        format!("burst of {BURST} store-path pods"),
        Some(store_burst),
        "",
    );
    summary.ratio("first pod / store-path pod", Some(first_pod), store, "");
    summary.ratio("second pod / store-path pod", again, store, "target <= 1.2");
    summary.ratio(
        "flake burst / store-path burst",
        Some(flake_burst),
        Some(store_burst),
        "one evaluation",
    );
    summary.print();
    let burst_evaluations = after_burst.1 - after_repeats.1;
    println!("evaluations in the burst of {BURST}: {burst_evaluations}");
    assert_eq!(burst_evaluations, 1, "the burst evaluated more than once");
}
