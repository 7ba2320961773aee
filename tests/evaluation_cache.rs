//! A flake is evaluated once per node and lock, however many pods ask for it: through
//! containerd's CRI with the real shim, daemon and runc, one node for the whole file.
//!
//! The fixture `tests/fixtures/slow-eval` spends about a second in evaluation (a builtins loop)
//! and prints the contents of its `message` file. The node records every `nix` run it makes
//! (`<state-dir>/cache/evaluations.log`), which is what the test counts.

use std::path::{Path, PathBuf};

use containix_core::image::oci_image::EMPTY_IMAGE_NAME;
use containix_core::resolve::cache::ResolutionCache;
use containix_testkit::containerd::{CONTAINIX_RUNTIME_HANDLER, Containerd, ContainerdOptions};
use containix_testkit::cri::{ContainerSpec, PodSandboxSpec};
use containix_testkit::fixtures::{current_system, install_busybox, repo_root};
use containix_testkit::join_all::join_all;
use containix_testkit::pod::CriPod;
use containix_tests::{LIMIT, eventually, stop_cleanly};

/// Pods started at once in the burst (the benchmark starts 24).
const BURST: usize = 8;

/// An editable copy of the slow-eval fixture in a temporary folder.
fn slow_eval_flake(message: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("containix-slow-eval-")
        .tempdir()
        .unwrap();
    std::fs::copy(
        repo_root().join("tests/fixtures/slow-eval/flake.nix"),
        dir.path().join("flake.nix"),
    )
    .unwrap();
    install_busybox(dir.path()).unwrap();
    std::fs::write(dir.path().join("message"), message).unwrap();
    dir
}

fn flake_ref(dir: &Path) -> String {
    format!(
        "path:{}#packages.{}.default",
        dir.display(),
        current_system().unwrap()
    )
}

/// How many `nix` runs of `kind` (`lock` or `eval`) the node made.
fn runs(node: &Containerd, kind: &str) -> usize {
    ResolutionCache::new(&node.layout().containix_state())
        .records()
        .iter()
        .filter(|record| record.kind == kind)
        .count()
}

/// Runs a pod of `flake` to completion: what it printed, or the error its events would show.
async fn run_pod(node: &Containerd, name: &str, flake: &str) -> Result<(CriPod, String), String> {
    let spec = PodSandboxSpec::new(name).annotation("containix.dev/flake", flake);
    let pod = CriPod::run(node, spec, CONTAINIX_RUNTIME_HANDLER).await?;
    let (status, log) = pod
        .run_to_exit(&ContainerSpec::new("app", EMPTY_IMAGE_NAME), LIMIT)
        .await?;
    if status.exit_code != 0 {
        return Err(format!("exit code {}: {}", status.exit_code, log.stderr()));
    }
    Ok((pod, log.stdout().trim().to_owned()))
}

fn entries_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

#[tokio::test]
async fn a_burst_evaluates_once_and_an_edit_evaluates_again() {
    let flake = slow_eval_flake("first");
    let node = Containerd::start(ContainerdOptions {
        containix_policy: format!(
            "allowed-flake-prefixes = [\"path:{}\"]\nrealise = \"build\"\n",
            flake.path().display()
        ),
        ..ContainerdOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("starting the test containerd: {e}"));
    let reference = flake_ref(flake.path());

    // A burst of pods of one unevaluated flake: one lock, one evaluation, every pod runs.
    let names: Vec<String> = (0..BURST).map(|i| format!("burst-{i}")).collect();
    let burst = names.iter().map(|name| run_pod(&node, name, &reference));
    let results = join_all(burst).await;
    let mut pods = Vec::new();
    for result in results {
        let (pod, printed) =
            result.unwrap_or_else(|err| panic!("a pod of the burst failed: {err}"));
        assert_eq!(printed, "first");
        pods.push(pod);
    }
    assert_eq!(runs(&node, "eval"), 1, "one evaluation for the burst");
    assert_eq!(runs(&node, "lock"), 1, "one lock for the burst");

    // A later pod of the unchanged flake locks and evaluates nothing.
    let (pod, printed) = run_pod(&node, "later", &reference).await.unwrap();
    assert_eq!(printed, "first");
    pods.push(pod);
    assert_eq!((runs(&node, "lock"), runs(&node, "eval")), (1, 1));
    for pod in pods.drain(..) {
        pod.remove(LIMIT).await.unwrap();
    }
    let inflight = node.layout().containix_state().join("inflight");
    eventually("the burst's resolutions to finish", async || {
        entries_under(&inflight).is_empty()
    })
    .await;

    // Editing the source: the next pod locks and evaluates again and runs the new closure; the
    // old lock's evaluation is dropped with its GC root.
    std::fs::write(flake.path().join("message"), "second").unwrap();
    let (pod, printed) = run_pod(&node, "edited", &reference).await.unwrap();
    assert_eq!(printed, "second");
    assert_eq!((runs(&node, "lock"), runs(&node, "eval")), (2, 2));
    let cache = node.layout().containix_state().join("cache");
    let roots = entries_under(&cache.join("gcroots"));
    assert_eq!(roots.len(), 1, "one evaluation's root is kept: {roots:?}");
    let entries: Vec<PathBuf> = entries_under(&cache)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "the old lock's evaluation is dropped: {entries:?}"
    );
    pod.remove(LIMIT).await.unwrap();

    stop_cleanly(node).await;
}
