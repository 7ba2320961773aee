//! The CSI plugin ("csi"): how long publishing a big closure as a volume takes, compared with
//! copying it as hard links (what nix-csi does).
//!
//! A synthetic graph of 2,500 store paths (see `containix_testkit::synthetic_store`) is imported
//! into the real store once, held by a GC root for the run and deleted at the end. The plugin's publishing code runs in process:
//! a `containix_csi::publish::Publisher` with the real `Resolver` (against the test node's
//! nix-daemon) and `SyscallMounter`, exactly what `containix-csi` serves behind gRPC, without the
//! gRPC round trip (well under a millisecond over a Unix socket). Routines:
//!
//! - `publish`: a read-only volume with `storePaths` = the graph's root, at a fresh target
//!   directory: validate, resolve the closure over the daemon, plan, record, register a GC root,
//!   mount a tmpfs and one read-only bind per path. Each iteration then unpublishes it (timed as
//!   `unpublish`: unmount everything, release the root, remove the record) and checks that
//!   nothing is left mounted under the target and that the target is gone;
//! - `resolve`: only the resolution `publish` starts with (`Resolver::resolve` of the same
//!   request), to split `publish` into resolving and mounting;
//! - `hardlink copy` (the baseline): every closure path copied into a fresh directory with
//!   directories created and files hard-linked (`std::fs::hard_link`), the approach of nix-csi;
//!   removing the copy is timed as `remove copy`;
//! - `cp -al`: the same copy by one `cp -al <every path> <dir>` process.
//!
//! The summary gives the medians, per-path costs and the ratios publish / hardlink copy and
//! unpublish / remove copy. Needs root. Run with `cargo bench -p containix-benches --bench
//! csi_publish`.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use containix_benches::{Samples, Summary, format_duration};
use containix_core::assemble::closure_mount::SyscallMounter;
use containix_core::request::policy::NodePolicy;
use containix_core::request::volume_attributes::{STORE_PATHS, VolumeAttributes};
use containix_core::resolve::Resolver;
use containix_core::store::gc_roots::GcRoots;
use containix_csi::publish::{PublishRequest, Publisher};
use containix_testkit::nix_daemon::NixDaemon;
use containix_testkit::synthetic_store::SyntheticGraph;
use criterion::{Criterion, SamplingMode, Throughput};
use tokio::runtime::Runtime;

/// Paths in the synthetic graph.
const GRAPH_PATHS: usize = 2_500;
/// The graph's seed: its own, so no other bench or test shares (or deletes) its paths.
const GRAPH_SEED: u64 = 0xc51_9b11;
/// Samples per routine; a publish and unpublish of 2,500 paths take a fraction of a second.
const SAMPLE_SIZE: usize = 10;

const PUBLISH: &str = "csi/publish";
const UNPUBLISH: &str = "csi/unpublish";
const RESOLVE: &str = "csi/resolve";
const HARDLINK_COPY: &str = "csi/hardlink copy";
const REMOVE_COPY: &str = "csi/remove copy";
const CP_AL: &str = "csi/cp -al";

/// The GC root consumer that keeps the graph alive while the bench runs.
const PIN_CONSUMER: &str = "csi-bench-graph";

/// The imported graph, rooted for the run (other jobs on the node may collect garbage), then
/// released and deleted when the bench ends, also when it panics.
struct PinnedGraph {
    graph: SyntheticGraph,
    roots: GcRoots,
    _roots_dir: tempfile::TempDir,
}

impl Drop for PinnedGraph {
    fn drop(&mut self) {
        if let Err(err) = self.roots.release(PIN_CONSUMER) {
            eprintln!("could not release the synthetic graph's GC root: {err}");
        }
        if let Err(err) = self.graph.delete_from_store() {
            eprintln!("could not delete the synthetic graph from the store: {err}");
        }
    }
}

/// Copies the tree at `source` to `destination` (which must not exist): directories are
/// created, symlinks recreated, and everything else hard-linked.
fn hardlink_tree(source: &Path, destination: &Path) -> std::io::Result<()> {
    let file_type = std::fs::symlink_metadata(source)?.file_type();
    if file_type.is_dir() {
        std::fs::create_dir(destination)?;
        for entry in std::fs::read_dir(source)? {
            let entry = entry?;
            hardlink_tree(&entry.path(), &destination.join(entry.file_name()))?;
        }
        Ok(())
    } else if file_type.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(source)?, destination)
    } else {
        std::fs::hard_link(source, destination)
    }
}

/// The mount points at or under `target` in this process's mount namespace.
fn mounts_under(target: &Path) -> Vec<String> {
    let prefix = target.to_str().expect("UTF-8 temporary path");
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("reading /proc/self/mountinfo")
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| {
            point
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .map(str::to_owned)
        .collect()
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let daemon = NixDaemon::start_or_reuse().expect("the test node's nix-daemon");
    let graph = SyntheticGraph::plan(GRAPH_PATHS, GRAPH_SEED).expect("planning the graph");
    graph.import().expect("importing the synthetic graph");
    let roots_dir = tempfile::tempdir().expect("a temporary directory");
    let graph = PinnedGraph {
        graph,
        roots: GcRoots::new(roots_dir.path()),
        _roots_dir: roots_dir,
    };
    let store_paths: Vec<PathBuf> = graph.graph.paths.iter().map(|p| p.path.clone()).collect();
    let root = graph
        .graph
        .root()
        .to_str()
        .expect("UTF-8 store path")
        .to_owned();

    // Targets and copies live on the store's file system (hard links need that), under /tmp.
    let work = tempfile::tempdir().expect("a temporary directory");
    assert_eq!(
        std::fs::metadata(work.path()).unwrap().dev(),
        std::fs::metadata("/nix/store").unwrap().dev(),
        "the temporary directory is on the store's file system, so hard links work"
    );
    let policy_file = work.path().join("config.toml");
    let policy = NodePolicy::from_toml(
        &format!(
            "daemon-socket = {:?}\nstate-dir = {:?}\ndefault-timeout = \"1m\"\n",
            daemon.socket_path().display().to_string(),
            work.path().join("policy-state").display().to_string(),
        ),
        &policy_file,
    )
    .expect("the bench's node policy");
    let runtime: Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let resolver = Resolver::new(policy.clone());
    let publisher = Publisher::new(
        policy.clone(),
        Resolver::new(policy),
        Arc::new(SyscallMounter),
        &work.path().join("csi-state"),
    )
    .expect("a publisher");
    let attributes: BTreeMap<String, String> = [(STORE_PATHS.to_owned(), root.clone())].into();
    let request = VolumeAttributes::parse(&attributes)
        .expect("valid attributes")
        .request;
    let pin = runtime
        .block_on(resolver.resolve(&request))
        .expect("resolving the root");
    assert_eq!(pin.resolved().closure.len(), GRAPH_PATHS);
    runtime
        .block_on(pin.hold(&graph.roots, PIN_CONSUMER))
        .expect("rooting the synthetic graph");
    let mut serial = 0_u64;
    let mut fresh = |what: &str| {
        serial += 1;
        work.path().join(format!("{what}-{serial}"))
    };

    // Check once, untimed, that the volume shows every path and the copy holds every path.
    let check_target = fresh("check");
    let check = PublishRequest {
        volume_id: "csi-bench-check".to_owned(),
        target_path: check_target.clone(),
        readonly: true,
        attributes: attributes.clone(),
    };
    runtime
        .block_on(publisher.publish(&check))
        .expect("publish");
    // The tmpfs and one bind per path.
    assert_eq!(mounts_under(&check_target).len(), GRAPH_PATHS + 1);
    assert!(
        check_target
            .join("store")
            .join(&root[11..])
            .join("data")
            .is_file()
    );
    runtime
        .block_on(publisher.unpublish(&check.volume_id, &check_target))
        .expect("unpublish");
    assert!(mounts_under(&check_target).is_empty());
    assert!(!check_target.exists());

    let samples = Samples::new();
    let mut group = criterion.benchmark_group("csi");
    group.sample_size(SAMPLE_SIZE);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(GRAPH_PATHS as u64));
    group.bench_function("publish", |b| {
        b.iter_custom(|iterations| {
            let (mut publishing, mut unpublishing) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..iterations {
                let target = fresh("volume");
                let volume = PublishRequest {
                    volume_id: target.file_name().unwrap().to_string_lossy().into_owned(),
                    target_path: target.clone(),
                    readonly: true,
                    attributes: attributes.clone(),
                };
                let start = Instant::now();
                runtime
                    .block_on(publisher.publish(&volume))
                    .expect("publish");
                publishing += start.elapsed();
                let start = Instant::now();
                runtime
                    .block_on(publisher.unpublish(&volume.volume_id, &target))
                    .expect("unpublish");
                unpublishing += start.elapsed();
                let left = mounts_under(&target);
                assert!(left.is_empty(), "still mounted after unpublish: {left:?}");
                assert!(!target.exists(), "{target:?} left after unpublish");
            }
            samples.record(PUBLISH, iterations, publishing);
            samples.record(UNPUBLISH, iterations, unpublishing);
            publishing
        })
    });
    group.bench_function("resolve", |b| {
        b.iter_custom(|iterations| {
            samples.time(RESOLVE, iterations, || {
                let resolution = runtime
                    .block_on(resolver.resolve(&request))
                    .expect("resolve");
                assert_eq!(resolution.resolved().closure.len(), GRAPH_PATHS);
            })
        })
    });
    group.bench_function("hardlink copy", |b| {
        b.iter_custom(|iterations| {
            let (mut copying, mut removing) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..iterations {
                let copy = fresh("copy");
                let start = Instant::now();
                std::fs::create_dir(&copy).expect("creating the copy");
                for path in &store_paths {
                    hardlink_tree(path, &copy.join(path.file_name().unwrap()))
                        .expect("hard-linking a store path");
                }
                copying += start.elapsed();
                let start = Instant::now();
                std::fs::remove_dir_all(&copy).expect("removing the copy");
                removing += start.elapsed();
            }
            samples.record(HARDLINK_COPY, iterations, copying);
            samples.record(REMOVE_COPY, iterations, removing);
            copying
        })
    });
    group.bench_function("cp -al", |b| {
        b.iter_custom(|iterations| {
            let mut copying = Duration::ZERO;
            for _ in 0..iterations {
                let copy = fresh("cp");
                std::fs::create_dir(&copy).expect("creating the copy");
                let start = Instant::now();
                let status = Command::new("cp")
                    .arg("-al")
                    .args(&store_paths)
                    .arg(&copy)
                    .stdin(Stdio::null())
                    .status()
                    .expect("running cp");
                copying += start.elapsed();
                assert!(status.success(), "cp -al failed");
                std::fs::remove_dir_all(&copy).expect("removing the copy");
            }
            samples.record(CP_AL, iterations, copying);
            copying
        })
    });
    group.finish();
    criterion.final_summary();

    let median = |id| samples.median(id, SAMPLE_SIZE);
    let per_path = |median: Option<Duration>| {
        median.map_or_else(String::new, |m| {
            format!("{} per path", format_duration(m / GRAPH_PATHS as u32))
        })
    };
    let (publish, unpublish, resolve) = (median(PUBLISH), median(UNPUBLISH), median(RESOLVE));
    let (copy, remove, cp) = (median(HARDLINK_COPY), median(REMOVE_COPY), median(CP_AL));
    let mounting = publish.zip(resolve).map(|(p, r)| p.saturating_sub(r));
    let mut summary = Summary::new(format!(
        "publishing a {GRAPH_PATHS}-path closure as a read-only volume \
         (medians of {SAMPLE_SIZE} samples)"
    ));
    summary.figure("publish (in process)", publish, per_path(publish));
    summary.figure("  of which resolve", resolve, per_path(resolve));
    summary.figure(
        "  the rest: plan, record, GC root, mounts",
        mounting,
        per_path(mounting),
    );
    summary.figure("unpublish", unpublish, per_path(unpublish));
    summary.figure("hardlink copy (std::fs)", copy, per_path(copy));
    summary.figure("remove the copy", remove, per_path(remove));
    summary.figure("cp -al (process)", cp, per_path(cp));
    summary.ratio("publish / hardlink copy", publish, copy, "");
    summary.ratio("publish / cp -al", publish, cp, "");
    summary.ratio("unpublish / remove the copy", unpublish, remove, "");
    summary.ratio(
        "publish+unpublish / copy+remove",
        publish.zip(unpublish).map(|(a, b)| a + b),
        copy.zip(remove).map(|(a, b)| a + b),
        "",
    );
    summary.print();
    drop(publisher);
    drop(work);
    drop(graph);
}
