//! Closure resolution ("resolve"): how long it takes to find every store path a root needs.
//!
//! A synthetic graph of 2,500 store paths (hubs every path links against, chains of recent
//! dependencies, one root reaching all of them; see `containix_testkit::synthetic_store`) is
//! imported into the real store once and deleted at the end. Then, against the test node's real
//! nix-daemon:
//!
//! - `pipelined`: containix's `query_closure` of the root over one `DaemonClient` connection,
//!   breadth-first with one pipelined batch of `QueryPathInfo` per level of the graph;
//! - `sequential`: the same walk with one `QueryPathInfo` per path, each waiting for its reply
//!   before the next is sent (what a client without pipelining, such as Nix's own remote store,
//!   does), over its own connection;
//! - `nix-store -qR`: `nix-store --query --requisites <root>` run as a process through the
//!   daemon (`NIX_REMOTE=daemon`), the figure users compare with.
//!
//! The summary gives the medians and the ratios pipelined / `nix-store -qR` (target < 0.5) and
//! pipelined / sequential. Run with `cargo bench -p containix-benches --bench closure`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use containix_benches::{Samples, Summary};
use containix_core::store::closure::Closure;
use containix_core::store::closure_query::query_closure;
use containix_core::store::daemon::DaemonClient;
use containix_core::store::store_path::StorePath;
use containix_testkit::nix_daemon::NixDaemon;
use containix_testkit::synthetic_store::SyntheticGraph;
use criterion::{Criterion, Throughput};
use tokio::runtime::Runtime;

/// Paths in the synthetic graph.
const GRAPH_PATHS: usize = 2_500;
/// The graph's seed: its own, so no other bench or test shares (or deletes) its paths.
const GRAPH_SEED: u64 = 0xc105_0e00;
/// Samples per routine; each takes tens to hundreds of milliseconds.
const SAMPLE_SIZE: usize = 20;

const PIPELINED: &str = "resolve/pipelined";
const SEQUENTIAL: &str = "resolve/sequential";
const NIX_STORE_QR: &str = "resolve/nix-store -qR";

/// Deletes the imported graph when the bench ends, also when it panics.
struct ImportedGraph(SyntheticGraph);

impl Drop for ImportedGraph {
    fn drop(&mut self) {
        if let Err(err) = self.0.delete_from_store() {
            eprintln!("could not delete the synthetic graph from the store: {err}");
        }
    }
}

/// The baseline walk: breadth-first, one `QueryPathInfo` round trip per path.
async fn sequential_closure(client: &mut DaemonClient, root: &StorePath) -> BTreeSet<StorePath> {
    let mut seen = BTreeSet::from([root.clone()]);
    let mut queue = std::collections::VecDeque::from([root.clone()]);
    while let Some(path) = queue.pop_front() {
        let info = client
            .query_path_info(&path)
            .await
            .expect("QueryPathInfo")
            .unwrap_or_else(|| panic!("{path} is not valid"));
        for reference in info.references {
            if seen.insert(reference.clone()) {
                queue.push_back(reference);
            }
        }
    }
    seen
}

/// The number of breadth-first levels below and including `root`: the round trips the
/// pipelined walk makes.
fn levels(closure: &Closure, root: &StorePath) -> usize {
    let mut seen = BTreeSet::from([root.clone()]);
    let mut level = vec![root.clone()];
    let mut count = 0;
    while !level.is_empty() {
        count += 1;
        let mut next = Vec::new();
        for path in &level {
            let info = closure.get(path).expect("a closure member");
            for reference in &info.references {
                if seen.insert(reference.clone()) {
                    next.push(reference.clone());
                }
            }
        }
        level = next;
    }
    count
}

/// `nix-store -qR <root>` through the daemon; returns the paths it printed.
fn nix_store_requisites(root: &Path) -> Vec<u8> {
    let output = Command::new("nix-store")
        .args(["--query", "--requisites"])
        .arg(root)
        .env("NIX_REMOTE", "daemon")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("running nix-store");
    assert!(output.status.success(), "nix-store -qR failed");
    output.stdout
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let daemon = NixDaemon::start_or_reuse().expect("the test node's nix-daemon");
    let graph = SyntheticGraph::plan(GRAPH_PATHS, GRAPH_SEED).expect("planning the graph");
    graph.import().expect("importing the synthetic graph");
    let graph = ImportedGraph(graph);
    let root_path = graph.0.root().to_owned();
    let root = StorePath::parse(root_path.to_str().expect("UTF-8 store path")).unwrap();

    let runtime: Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (mut pipelined, mut sequential) = runtime.block_on(async {
        let socket = daemon.socket_path();
        (
            DaemonClient::connect(socket).await.expect("connecting"),
            DaemonClient::connect(socket).await.expect("connecting"),
        )
    });

    // All three must agree before any of them is timed.
    let closure = runtime
        .block_on(query_closure(&mut pipelined, std::slice::from_ref(&root)))
        .expect("query_closure");
    assert_eq!(closure.len(), GRAPH_PATHS, "the root reaches every path");
    let depth = levels(&closure, &root);
    let walked = runtime.block_on(sequential_closure(&mut sequential, &root));
    assert!(
        walked.iter().eq(closure.paths()),
        "both walks find the same paths"
    );
    let printed = nix_store_requisites(&root_path);
    assert_eq!(
        String::from_utf8_lossy(&printed).lines().count(),
        GRAPH_PATHS,
        "nix-store -qR prints every path"
    );

    let samples = Samples::new();
    let mut group = criterion.benchmark_group("resolve");
    group.sample_size(SAMPLE_SIZE);
    group.throughput(Throughput::Elements(GRAPH_PATHS as u64));
    group.bench_function("pipelined", |b| {
        b.iter_custom(|iterations| {
            samples.time(PIPELINED, iterations, || {
                let closure = runtime
                    .block_on(query_closure(&mut pipelined, std::slice::from_ref(&root)))
                    .expect("query_closure");
                assert_eq!(closure.len(), GRAPH_PATHS);
            })
        })
    });
    group.bench_function("sequential", |b| {
        b.iter_custom(|iterations| {
            samples.time(SEQUENTIAL, iterations, || {
                let walked = runtime.block_on(sequential_closure(&mut sequential, &root));
                assert_eq!(walked.len(), GRAPH_PATHS);
            })
        })
    });
    group.bench_function("nix-store -qR", |b| {
        b.iter_custom(|iterations| {
            samples.time(NIX_STORE_QR, iterations, || {
                std::hint::black_box(nix_store_requisites(&root_path));
            })
        })
    });
    group.finish();
    criterion.final_summary();

    let ours = samples.median(PIPELINED, SAMPLE_SIZE);
    let walk = samples.median(SEQUENTIAL, SAMPLE_SIZE);
    let nix_store = samples.median(NIX_STORE_QR, SAMPLE_SIZE);
    let per_path = |median: Option<std::time::Duration>| {
        median.map_or_else(String::new, |m| {
            format!(
                "{} per path",
                containix_benches::format_duration(m / GRAPH_PATHS as u32)
            )
        })
    };
    let mut summary = Summary::new(format!(
        "closure of a {GRAPH_PATHS}-path synthetic graph (medians of {SAMPLE_SIZE} samples)"
    ));
    summary.figure(
        "pipelined query_closure",
        ours,
        format!("{}, {depth} levels = {depth} round trips", per_path(ours)),
    );
    summary.figure("sequential QueryPathInfo walk", walk, per_path(walk));
    summary.figure("nix-store -qR (process)", nix_store, per_path(nix_store));
    summary.ratio("pipelined / nix-store -qR", ours, nix_store, "target < 0.5");
    summary.ratio("pipelined / sequential", ours, walk, "");
    summary.print();
    drop((pipelined, sequential));
    drop(graph);
}
