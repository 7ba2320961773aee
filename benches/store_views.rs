//! Pod start through CRI as closures grow, with store views ("views"): a closure's first pod on
//! the node (its view is made in that start), its second pod (the view exists), the two ways of
//! filling a view, and what a bind-tree view costs pods that do not use it. Every figure is a
//! ratio against pods of the same program in a pre-imported image on containerd's runc shim,
//! measured in the same run on one private containerd.
//!
//! The program is the example flake's busybox: `sh -c 'echo ready; exec busybox sleep ...'`. It
//! keeps running after its line, because a container holds its view only while it runs
//! (containerd deletes a container's task as soon as it exits, and the shim then lets go of the
//! view; the last user going removes it). Closures:
//!
//! - 1 path: busybox's store path alone (`containix.dev/store-paths: <busybox>`);
//! - N = 100, 1,000 and 2,500 paths: busybox plus a synthetic graph of N - 1 store paths
//!   (`containix_testkit::synthetic_store`, one root that reaches them all), imported into the
//!   store before anything is timed, with a seed of its own for every round, so every round's
//!   first pod meets a closure the node has never made a view of.
//!
//! The baseline, `runc image`, runs the same command with the default handler
//! (`containerd-shim-runc-v2`) from an image whose one layer holds busybox at its store path,
//! imported before timing. Each sample is one pod: RunPodSandbox, CreateContainer and
//! StartContainer until the container's CRI log file holds its first complete line (polled every
//! millisecond); removing pods and importing or deleting graphs is not timed.
//!
//! Pods on a shared machine drift with other jobs' load over minutes, so the samples are taken
//! in rounds, each round one sample of every variant, in this order:
//!
//! 1. for each size: `runc image` (so the baseline is sampled beside every size, under the same
//!    load), then `first pod` of the round's new closure (the node has no view at all then;
//!    checked), kept while `second pod` of the same closure runs and is removed; then the first
//!    is removed, and its view with it;
//! 2. (section `mechanisms`) `runc image` again, then a new 2,500-path closure with the node
//!    policy switched to `store-view = "bind-tree"` for that one pod: `bind-tree first pod`,
//!    kept (2,500 bind mounts are now in the host's mount table) while `runc image beside a bind
//!    tree` and `bind-tree second pod` run. The policy is switched back right after the first
//!    pod started; the other variants get the default, `auto` (a link farm on this node's
//!    filesystem, which the summary confirms).
//!
//! The summary gives the medians over all samples and the ratios of the targets, then
//! the same ratios computed within each round (against that round's median `runc image`) as
//! median and range over the rounds.
//!
//! Run as root, with the
//! shim built in release mode: `cargo build --release -p containix-shim`, then
//! `cargo bench -p containix-benches --bench store_views` (about 4 minutes on 2 cores).
//! Arguments that are not options choose sections (`sizes`, `mechanisms`); `sizes` alone works
//! with a shim from before store views, given as `CONTAINIX_SHIM_BIN`. `CONTAINIX_BENCH_ROUNDS`
//! sets the number of rounds (default 10).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use containix_benches::cri_pods::{StartedPod, start_to_first_line, store_image};
use containix_benches::{Samples, Summary, format_duration};
use containix_core::image::oci_image::EMPTY_IMAGE_NAME;
use containix_testkit::containerd::{
    CONTAINIX_RUNTIME_HANDLER, CONTAINIX_SHIM_BINARY, Containerd, ContainerdOptions,
};
use containix_testkit::cri::{ContainerSpec, PodSandboxSpec};
use containix_testkit::fixtures;
use containix_testkit::nix_daemon::NixDaemon;
use containix_testkit::synthetic_store::SyntheticGraph;

/// Closure sizes, in store paths.
const SIZES: [usize; 4] = [1, 100, 1_000, 2_500];
/// The closure size the two view mechanisms are compared at.
const MECHANISM_SIZE: usize = 2_500;
/// Rounds when `CONTAINIX_BENCH_ROUNDS` is not set.
const DEFAULT_ROUNDS: usize = 10;
/// The synthetic graphs' seeds start here (distinct from the tests' and the other benches').
const SEED_BASE: u64 = 0x5e_u64 << 32;
/// The baseline image: busybox at its store path.
const RUNC_IMAGE: &str = concat!(
    "localhost/containix-bench/busybox:",
    env!("CARGO_PKG_VERSION")
);
/// The runtime handler of containerd's own runc shim.
const RUNC_RUNTIME_HANDLER: &str = "";
/// What every container prints.
const LINE: &str = "ready";

const RUNC: &str = "runc image";
const RUNC_BESIDE_BIND_TREE: &str = "runc image beside a bind tree";
const BIND_TREE_FIRST: &str = "bind-tree first pod, 2,500 paths";
const BIND_TREE_SECOND: &str = "bind-tree second pod, 2,500 paths";

fn first_pod(size: usize) -> String {
    format!("first pod, {} paths", thousands(size))
}

fn second_pod(size: usize) -> String {
    format!("second pod, {} paths", thousands(size))
}

/// `2500` as `2,500`.
fn thousands(n: usize) -> String {
    if n >= 1_000 {
        format!("{},{:03}", n / 1_000, n % 1_000)
    } else {
        n.to_string()
    }
}

/// The synthetic graphs imported for the run, deleted from the store when it ends (also when
/// it panics; paths still in use are left to the store's garbage collector).
#[derive(Default)]
struct ImportedGraphs(Vec<SyntheticGraph>);

impl ImportedGraphs {
    /// Plans `count` paths from `seed` and imports them.
    fn import(&mut self, count: usize, seed: u64) -> &SyntheticGraph {
        let graph = SyntheticGraph::plan(count, seed).expect("planning a synthetic graph");
        graph.import().expect("importing a synthetic graph");
        self.0.push(graph);
        self.0.last().expect("just pushed")
    }

    /// Deletes every graph imported so far.
    fn delete(&mut self) {
        for graph in self.0.drain(..) {
            if let Err(err) = graph.delete_from_store() {
                eprintln!("could not delete a synthetic graph from the store: {err}");
            }
        }
    }
}

impl Drop for ImportedGraphs {
    fn drop(&mut self) {
        self.delete();
    }
}

/// The bench's node and what every pod needs.
struct Bench {
    node: Containerd,
    /// busybox's store path.
    busybox_path: PathBuf,
    /// The container every pod runs: `<busybox> sh -c 'echo ready; exec <busybox> sleep ...'`.
    command: Vec<String>,
    /// The containix node policy as the testkit wrote it.
    policy: String,
    counter: AtomicU64,
}

impl Bench {
    fn unique_name(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.counter.fetch_add(1, Ordering::Relaxed))
    }

    /// A pod of the runc baseline, started to its first line.
    async fn runc_pod(&self, what: &str) -> (StartedPod, Duration) {
        let container = ContainerSpec::new("app", RUNC_IMAGE).command(self.command.clone());
        let spec = PodSandboxSpec::new(&self.unique_name("runc"));
        start_to_first_line(&self.node, spec, RUNC_RUNTIME_HANDLER, &container, what).await
    }

    /// A containix pod of the closure of `store_paths` (the annotation's value), started to
    /// its first line.
    async fn containix_pod(&self, store_paths: &str, what: &str) -> (StartedPod, Duration) {
        let container = ContainerSpec::new("app", EMPTY_IMAGE_NAME).command(self.command.clone());
        let spec = PodSandboxSpec::new(&self.unique_name("containix"))
            .annotation("containix.dev/store-paths", store_paths);
        start_to_first_line(
            &self.node,
            spec,
            CONTAINIX_RUNTIME_HANDLER,
            &container,
            what,
        )
        .await
    }

    /// The `containix.dev/store-paths` value of busybox plus `graph`.
    fn store_paths(&self, graph: Option<&SyntheticGraph>) -> String {
        let mut value = self.busybox_path.display().to_string();
        if let Some(graph) = graph {
            value.push(' ');
            value.push_str(&graph.root().display().to_string());
        }
        value
    }

    /// Rewrites the node policy the next shim reads: the testkit's, plus `extra`. Atomic, so
    /// a shim starting meanwhile reads the old or the new file whole.
    fn set_policy(&self, extra: &str) {
        let path = self.node.layout().containix_policy();
        let staged = path.with_extension("staged");
        std::fs::write(&staged, format!("{}{extra}", self.policy)).expect("writing the policy");
        std::fs::rename(&staged, &path).expect("replacing the policy");
    }

    /// The node's store views (directories named by a 32-digit id) and their `ready.json`.
    fn views(&self) -> Vec<(PathBuf, Option<String>)> {
        let dir = self.node.layout().containix_state().join("views");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.file_name().is_some_and(|name| name.len() == 32))
            .map(|path| {
                let ready = std::fs::read_to_string(path.join("ready.json")).ok();
                (path, ready)
            })
            .collect()
    }

    /// The mechanism the node's only view was made with, from its `ready.json`; `None` when
    /// there is no view (a shim from before store views).
    fn mechanism_of_only_view(&self) -> Option<&'static str> {
        let views = self.views();
        assert!(views.len() <= 1, "one view expected: {views:?}");
        let (path, ready) = views.into_iter().next()?;
        let ready = ready.unwrap_or_else(|| panic!("{} is not ready", path.display()));
        ["link-farm", "bind-tree"]
            .into_iter()
            .find(|mechanism| ready.contains(&format!("\"{mechanism}\"")))
    }

    /// Waits (untimed, for up to 10 s) until the node has no view: the view of a removed pod
    /// goes when its last user does, and the worker that made it holds it until the pods it
    /// resolved for have taken it (see `hand_over` in `containix_core::resolve::inflight`).
    async fn assert_no_view(&self, before: &str) {
        let limit = Instant::now() + Duration::from_secs(10);
        while !self.views().is_empty() && Instant::now() < limit {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let views = self.views();
        let users: Vec<Vec<String>> = views
            .iter()
            .map(|(path, _)| {
                std::fs::read_dir(path.join("users"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .collect();
        assert!(
            views.is_empty(),
            "views left before {before}: {views:?}, users {users:?}"
        );
    }
}

/// One round's samples: the time of each variant (the median of its samples in the round).
#[derive(Default)]
struct Round(BTreeMap<String, Vec<Duration>>);

impl Round {
    /// Records `took` for `name` in this round and in `samples`.
    fn record(&mut self, samples: &Samples, name: &str, took: Duration) {
        samples.record(name, 1, took);
        self.0.entry(name.to_owned()).or_default().push(took);
    }

    /// The median of `name`'s samples in this round.
    fn median(&self, name: &str) -> Option<Duration> {
        let mut times = self.0.get(name)?.clone();
        times.sort_unstable();
        let middle = times.len() / 2;
        Some(if times.len() % 2 == 1 {
            times[middle]
        } else {
            (times[middle - 1] + times[middle]) / 2
        })
    }
}

/// A ratio computed within each round, summarised over the rounds.
struct RatioSpread {
    median: f64,
    min: f64,
    max: f64,
}

impl RatioSpread {
    /// `a / b` in every round that has both.
    fn of(rounds: &[Round], a: &str, b: &str) -> Option<RatioSpread> {
        let mut ratios: Vec<f64> = rounds
            .iter()
            .filter_map(|round| {
                Some(round.median(a)?.as_secs_f64() / round.median(b)?.as_secs_f64())
            })
            .collect();
        if ratios.is_empty() {
            return None;
        }
        ratios.sort_by(f64::total_cmp);
        let middle = ratios.len() / 2;
        let median = if ratios.len() % 2 == 1 {
            ratios[middle]
        } else {
            (ratios[middle - 1] + ratios[middle]) / 2.0
        };
        Some(RatioSpread {
            median,
            min: ratios[0],
            max: ratios[ratios.len() - 1],
        })
    }
}

impl std::fmt::Display for RatioSpread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>7.3}  [{:.3} .. {:.3}]",
            self.median, self.min, self.max
        )
    }
}

/// Checks that a pod printed [`LINE`] first.
async fn assert_prints_line(pod: &StartedPod, what: &str) {
    let log = pod.read_log().await;
    assert_eq!(
        log.lines.first().map(|line| line.text.as_str()),
        Some(LINE),
        "{what}: {log:?}"
    );
}

/// Host mounts under `dir` (the bind tree's live there).
fn mount_count_under(dir: &Path) -> usize {
    containix_testkit::containerd::mounts_under(dir).len()
}

fn main() {
    let sections: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let wants = |section: &str| sections.is_empty() || sections.iter().any(|s| s == section);
    let (sizes_on, mechanisms_on) = (wants("sizes"), wants("mechanisms"));
    let rounds: usize = std::env::var("CONTAINIX_BENCH_ROUNDS")
        .ok()
        .map(|value| value.parse().expect("CONTAINIX_BENCH_ROUNDS is a number"))
        .unwrap_or(DEFAULT_ROUNDS);

    NixDaemon::start_or_reuse().expect("the test node's nix-daemon");
    let hello = fixtures::example_hello().expect("building the example flake");
    let busybox_path = hello
        .closure_member("busybox")
        .expect("the example's closure holds busybox")
        .to_owned();
    let busybox = busybox_path.join("busybox");
    let busybox = busybox.to_str().expect("UTF-8 store path").to_owned();
    let image = store_image(RUNC_IMAGE, std::slice::from_ref(&busybox_path), &[&busybox]);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let options = ContainerdOptions::default();
    assert!(
        options.shim_binary.is_some(),
        "{CONTAINIX_SHIM_BINARY} not found next to the bench: run `cargo build --release -p \
         containix-shim` (the bench profile's directory) or set CONTAINIX_SHIM_BIN"
    );
    let node = runtime
        .block_on(Containerd::start(options))
        .unwrap_or_else(|e| panic!("starting the test containerd: {e}"));
    runtime
        .block_on(node.import_image(&image))
        .expect("importing the baseline image");
    let policy =
        std::fs::read_to_string(node.layout().containix_policy()).expect("reading the node policy");
    let bench = Bench {
        node,
        busybox_path,
        command: vec![
            busybox.clone(),
            "sh".into(),
            "-c".into(),
            format!("echo {LINE}; exec {busybox} sleep 100000"),
        ],
        policy,
        counter: AtomicU64::new(0),
    };
    let mut graphs = ImportedGraphs::default();
    let samples = Samples::new();
    let mut link_farm_seen = None;
    let mut all_rounds: Vec<Round> = Vec::new();

    // One untimed pod of each handler first: both print the line, and the node is warm.
    runtime.block_on(async {
        let (pod, _) = bench.runc_pod("check").await;
        assert_prints_line(&pod, RUNC).await;
        pod.remove().await;
        let (pod, _) = bench.containix_pod(&bench.store_paths(None), "check").await;
        assert_prints_line(&pod, "containix").await;
        link_farm_seen = Some(bench.mechanism_of_only_view());
        pod.remove().await;
    });

    for round in 0..rounds {
        eprintln!("round {} of {rounds}", round + 1);
        let mut this_round = Round::default();
        runtime.block_on(async {
            if sizes_on {
                for (index, &size) in SIZES.iter().enumerate() {
                    let seed = SEED_BASE + (round * 8 + index) as u64;
                    let graph = (size > 1).then(|| graphs.import(size - 1, seed));
                    let store_paths = bench.store_paths(graph);
                    // The baseline right before each size's pods, under the same load.
                    let (pod, took) = bench.runc_pod(RUNC).await;
                    this_round.record(&samples, RUNC, took);
                    pod.remove().await;
                    let first_name = first_pod(size);
                    bench.assert_no_view(&first_name).await;
                    let (first, took) = bench.containix_pod(&store_paths, &first_name).await;
                    this_round.record(&samples, &first_name, took);
                    let second_name = second_pod(size);
                    let (second, took) = bench.containix_pod(&store_paths, &second_name).await;
                    this_round.record(&samples, &second_name, took);
                    if round == 0 {
                        assert_prints_line(&second, &second_name).await;
                    }
                    second.remove().await;
                    first.remove().await;
                }
            }

            if mechanisms_on {
                let seed = SEED_BASE + (round * 8 + SIZES.len()) as u64;
                let graph = graphs.import(MECHANISM_SIZE - 1, seed);
                let store_paths = bench.store_paths(Some(graph));
                let (pod, took) = bench.runc_pod(RUNC).await;
                this_round.record(&samples, RUNC, took);
                pod.remove().await;
                bench.assert_no_view(BIND_TREE_FIRST).await;
                bench.set_policy("store-view = \"bind-tree\"\n");
                let (first, took) = bench.containix_pod(&store_paths, BIND_TREE_FIRST).await;
                bench.set_policy("");
                this_round.record(&samples, BIND_TREE_FIRST, took);
                assert_eq!(bench.mechanism_of_only_view(), Some("bind-tree"));
                let views_dir = bench.node.layout().containix_state().join("views");
                assert!(
                    mount_count_under(&views_dir) >= MECHANISM_SIZE,
                    "the bind tree's mounts are on the host"
                );
                let (pod, took) = bench.runc_pod(RUNC_BESIDE_BIND_TREE).await;
                this_round.record(&samples, RUNC_BESIDE_BIND_TREE, took);
                pod.remove().await;
                let (second, took) = bench.containix_pod(&store_paths, BIND_TREE_SECOND).await;
                this_round.record(&samples, BIND_TREE_SECOND, took);
                second.remove().await;
                first.remove().await;
                assert_eq!(
                    mount_count_under(&views_dir),
                    0,
                    "the bind tree went with its last pod"
                );
            }
        });
        graphs.delete();
        all_rounds.push(this_round);
    }

    let median = |name: &str| samples.median(name, usize::MAX);
    let mut summary = Summary::new(format!(
        "pod start to first output through CRI, medians over {rounds} rounds"
    ));
    summary.figure(
        RUNC,
        median(RUNC),
        "default handler, runc shim, pre-imported image",
    );
    let mechanism = match link_farm_seen.flatten() {
        Some(mechanism) => format!("view: {mechanism}"),
        None => "no store view (a shim from before store views)".to_owned(),
    };
    if sizes_on {
        for size in SIZES {
            summary.figure(first_pod(size), median(&first_pod(size)), &mechanism);
            summary.figure(second_pod(size), median(&second_pod(size)), &mechanism);
        }
    }
    if mechanisms_on {
        for name in [BIND_TREE_FIRST, BIND_TREE_SECOND] {
            summary.figure(name, median(name), "view: bind-tree");
        }
        summary.figure(
            RUNC_BESIDE_BIND_TREE,
            median(RUNC_BESIDE_BIND_TREE),
            "while a 2,500-path bind tree is mounted on the host",
        );
    }
    let ratio = |summary: &mut Summary, a: &str, b: &str, note: &str| {
        summary.ratio(format!("{a} / {b}"), median(a), median(b), note);
    };
    if sizes_on {
        let (first_1, second_1) = (first_pod(1), second_pod(1));
        ratio(&mut summary, &second_1, RUNC, "target <= 1.05");
        ratio(&mut summary, &first_1, RUNC, "");
        for size in &SIZES[1..] {
            let note = if *size == 2_500 { "target <= 1.1" } else { "" };
            ratio(&mut summary, &second_pod(*size), &second_1, note);
        }
        for size in &SIZES[1..] {
            ratio(&mut summary, &first_pod(*size), &first_1, "");
        }
        for size in &SIZES[1..] {
            ratio(&mut summary, &first_pod(*size), RUNC, "");
        }
    }
    if sizes_on && mechanisms_on {
        let (first, second) = (first_pod(MECHANISM_SIZE), second_pod(MECHANISM_SIZE));
        ratio(
            &mut summary,
            BIND_TREE_FIRST,
            &first,
            "bind tree / link farm",
        );
        ratio(
            &mut summary,
            BIND_TREE_SECOND,
            &second,
            "bind tree / link farm",
        );
    }
    if mechanisms_on {
        ratio(&mut summary, RUNC_BESIDE_BIND_TREE, RUNC, "");
    }
    summary.print();
    if sizes_on {
        println!(
            "per-round ratios (each round's runc image: the median of its {} samples): median \
             [min .. max] over {rounds} rounds",
            SIZES.len() + usize::from(mechanisms_on)
        );
        let (first_1, second_1) = (first_pod(1), second_pod(1));
        let mut pairs = vec![
            (second_1.clone(), RUNC.to_owned()),
            (first_1.clone(), RUNC.to_owned()),
        ];
        for size in &SIZES[1..] {
            pairs.push((second_pod(*size), second_1.clone()));
        }
        for size in &SIZES[1..] {
            pairs.push((first_pod(*size), RUNC.to_owned()));
        }
        for (a, b) in pairs {
            if let Some(spread) = RatioSpread::of(&all_rounds, &a, &b) {
                println!("{:<52}{spread}", format!("{a} / {b}"));
            }
        }
    }
    if let (Some(runc), Some(first)) = (median(RUNC), median(&first_pod(MECHANISM_SIZE))) {
        println!(
            "first pod of 2,500 paths minus runc image: {}",
            format_duration(first.saturating_sub(runc))
        );
    }

    print_stage_timings(&bench.node.layout().log());

    drop(graphs);
    if let Some(copy) = std::env::var_os("CONTAINIX_BENCH_KEEP_LOG") {
        std::fs::copy(bench.node.layout().log(), &copy).expect("copying containerd's log");
    }
    let report = runtime
        .block_on(bench.node.stop())
        .expect("stopping the test containerd");
    if !report.is_clean() {
        eprintln!("the node needed forcing when it stopped: {report:?}");
    }
}

/// Prints the medians of the shim's stage timings (its `container prepared` log lines) by
/// closure size, for starts that resolved (first pods) and starts that reused a view (second
/// pods, no `resolve` stage): where the time of a containix start goes, beside the totals.
fn print_stage_timings(log: &Path) {
    const STAGES: [&str; 4] = ["resolve_ms", "view_ms", "assemble_ms", "plan_ms"];
    let Ok(text) = std::fs::read_to_string(log) else {
        return;
    };
    // (paths, reused a view) -> stage -> samples
    let mut timings: BTreeMap<(usize, bool), BTreeMap<&str, Vec<f64>>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.contains("msg=\"container prepared\""))
    {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|token| token.strip_prefix(name)?.strip_prefix('='))
        };
        let Some(paths) = field("paths").and_then(|v| v.parse().ok()) else {
            continue;
        };
        let reused = field("resolve_ms").is_some_and(|v| v == "0" || v == "0.0");
        let entry = timings.entry((paths, reused)).or_default();
        for stage in STAGES {
            if let Some(ms) = field(stage).and_then(|v| v.parse().ok()) {
                entry.entry(stage).or_default().push(ms);
            }
        }
    }
    if timings.is_empty() {
        return;
    }
    println!("== the shim's stage timings (container prepared), medians in ms ==");
    println!(
        "{:<28}{:>6}{:>12}{:>10}{:>14}{:>10}",
        "start", "n", "resolve", "view", "assemble", "plan"
    );
    for ((paths, reused), stages) in &timings {
        let median = |stage: &str| {
            let mut samples = stages.get(stage).cloned().unwrap_or_default();
            samples.sort_by(f64::total_cmp);
            samples.get(samples.len() / 2).copied().unwrap_or(0.0)
        };
        let count = stages.get("assemble_ms").map_or(0, Vec::len);
        let kind = if *reused { "view reused" } else { "resolved" };
        println!(
            "{:<28}{:>6}{:>12.1}{:>10.1}{:>14.1}{:>10.1}",
            format!("{paths} paths, {kind}"),
            count,
            median("resolve_ms"),
            median("view_ms"),
            median("assemble_ms"),
            median("plan_ms"),
        );
    }
}
