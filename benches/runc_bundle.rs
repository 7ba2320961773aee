//! Container start with the closure bind-mounted ("assemble"): what mounting a closure costs in
//! `runc run`, against the same container with its program copied into the rootfs.
//!
//! Bundles, all from the same base spec (`runc spec`'s, i.e. oci-spec's default, with a
//! read-only root, no terminal and the program `busybox true`):
//!
//! - `copied` (the baseline): no closure mounts; the static busybox is copied to the rootfs's
//!   `/bin/busybox`;
//! - `closure`: an empty rootfs assembled by containix (`plan` + `prepare_bundle` on the host's
//!   store) for the closure of the example flake (`examples/hello`, three store paths including
//!   busybox), run as `<busybox store path>/busybox true`;
//! - `closure+100`, `closure+1000`: the same with 100 or 1,000 more closure paths taken from a
//!   synthetic store graph imported for this run (the first N paths of a 1,000-path graph are
//!   closed under references) and deleted at the end.
//!
//! Each sample is one `runc --root <temp> run --bundle <bundle> <id>` process, which creates,
//! starts, waits for and deletes the container. The summary gives the medians, each variant's
//! ratio to the baseline and the overhead per added mount, from the baseline and from the slope
//! between the 100 and 1,000 variants. Everything (containers, runc root, bundles, state
//! directories, the synthetic paths) is removed at the end.
//! Run with `cargo bench -p containix-benches --bench runc_bundle` (as root, with runc).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use containix_benches::{Samples, Summary, format_duration};
use containix_core::assemble::bundle::{CONFIG_FILE, cleanup, prepare_bundle};
use containix_core::assemble::plan::{ImageKind, PlanInput, plan};
use containix_core::assemble::store_facts::HostStore;
use containix_core::resolve::resolved::Resolved;
use containix_core::store::closure_query::query_closure;
use containix_core::store::daemon::DaemonClient;
use containix_core::store::store_path::StorePath;
use containix_testkit::fixtures;
use containix_testkit::nix_daemon::NixDaemon;
use containix_testkit::synthetic_store::SyntheticGraph;
use criterion::Criterion;
use oci_spec::runtime::Spec;

/// Synthetic closure paths added in the larger variants.
const EXTRA_PATHS: [usize; 2] = [100, 1_000];
/// The graph's seed: its own, so no other bench or test shares (or deletes) its paths.
const GRAPH_SEED: u64 = 0x7cb0_dd1e;
/// Samples per variant; each is one container run of 30 to 300 ms.
const SAMPLE_SIZE: usize = 10;

/// One bundle to run.
struct Variant {
    /// Benchmark id and summary label.
    name: String,
    /// The bundle directory (holding `config.json` and `rootfs`).
    bundle: PathBuf,
    /// Mounts containix added to the base spec (0 for the baseline).
    added_mounts: usize,
}

/// Everything the bench made, removed when it ends (also on panic).
struct Node {
    runc_root: PathBuf,
    state_dirs: Vec<PathBuf>,
    graph: Option<SyntheticGraph>,
    work: Option<tempfile::TempDir>,
}

impl Drop for Node {
    fn drop(&mut self) {
        for id in runc(&self.runc_root, &["list", "--quiet"]).lines() {
            runc(&self.runc_root, &["delete", "--force", id]);
        }
        for state_dir in &self.state_dirs {
            if let Err(err) = cleanup(state_dir) {
                eprintln!("cleaning up {}: {err}", state_dir.display());
            }
        }
        if let Some(work) = self.work.take()
            && let Err(err) = work.close()
        {
            eprintln!("removing the bench's temporary directory: {err}");
        }
        if let Some(graph) = self.graph.take()
            && let Err(err) = graph.delete_from_store()
        {
            eprintln!("could not delete the synthetic graph from the store: {err}");
        }
    }
}

/// Runs a runc housekeeping command and returns its stdout (empty when it fails).
fn runc(root: &Path, args: &[&str]) -> String {
    Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default()
}

/// Runs the bundle's container to completion; panics with runc's stderr if it fails.
fn run_container(runc_root: &Path, bundle: &Path, id: &str) {
    let output = Command::new("runc")
        .arg("--root")
        .arg(runc_root)
        .arg("run")
        .arg("--bundle")
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("running runc");
    assert!(
        output.status.success(),
        "runc run of {} failed ({}): {}",
        bundle.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `runc spec`'s output running `args` without a terminal.
fn base_spec(args: &[&str]) -> Spec {
    let mut spec = Spec::default();
    let mut process = spec.process().clone().expect("runc spec has a process");
    process.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
    process.set_terminal(Some(false));
    spec.set_process(Some(process));
    spec
}

/// Creates `bundle` with an empty `rootfs` and `spec` as its `config.json`.
fn write_bundle(bundle: &Path, spec: &Spec) {
    fs::create_dir_all(bundle.join("rootfs")).expect("creating the bundle");
    let json = serde_json::to_vec_pretty(spec).expect("a spec serialises");
    fs::write(bundle.join(CONFIG_FILE), json).expect("writing config.json");
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let daemon = NixDaemon::start_or_reuse().expect("the test node's nix-daemon");
    let hello = fixtures::example_hello().expect("building the example flake");
    let busybox_dir = hello
        .closure_member("busybox")
        .expect("the example's closure holds busybox")
        .to_owned();
    let busybox = busybox_dir.join("busybox");

    let largest = *EXTRA_PATHS.iter().max().unwrap();
    let graph = SyntheticGraph::plan(largest, GRAPH_SEED).expect("planning the graph");
    let work = tempfile::Builder::new()
        .prefix("containix-bench-runc-")
        .tempdir()
        .expect("a temporary directory");
    let mut node = Node {
        runc_root: work.path().join("runc-root"),
        state_dirs: Vec::new(),
        graph: None,
        work: None,
    };
    graph.import().expect("importing the synthetic graph");
    node.graph = Some(graph);
    let work_dir = work.path().to_owned();
    node.work = Some(work);
    let graph = node.graph.as_ref().unwrap();

    // The baseline: the program copied into the rootfs, nothing mounted.
    let copied = work_dir.join("copied");
    write_bundle(&copied, &base_spec(&["/bin/busybox", "true"]));
    let copied_busybox = copied.join("rootfs/bin/busybox");
    fs::create_dir_all(copied_busybox.parent().unwrap()).unwrap();
    fs::copy(&busybox, &copied_busybox).expect("copying busybox into the rootfs");
    fs::set_permissions(&copied_busybox, fs::Permissions::from_mode(0o555)).unwrap();
    let mut variants = vec![Variant {
        name: "copied".into(),
        bundle: copied,
        added_mounts: 0,
    }];

    // The closure variants, assembled by containix from closures the daemon resolves.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut client = runtime
        .block_on(DaemonClient::connect(daemon.socket_path()))
        .expect("connecting to the daemon");
    let store_path = |path: &Path| StorePath::parse(path.to_str().expect("UTF-8")).unwrap();
    let program = busybox.to_str().expect("UTF-8").to_owned();
    for extra in [0].into_iter().chain(EXTRA_PATHS) {
        let mut roots = vec![store_path(&hello.out_path)];
        roots.extend(graph.paths[..extra].iter().map(|p| store_path(&p.path)));
        let closure = runtime
            .block_on(query_closure(&mut client, &roots))
            .expect("resolving the closure");
        assert_eq!(closure.len(), hello.closure.len() + extra);
        let resolved = Resolved {
            roots,
            closure,
            main_program: Some("hello".into()),
            package_name: Some("hello".into()),
            package_version: Some("1.0".into()),
        };
        let name = match extra {
            0 => "closure".to_owned(),
            n => format!("closure+{n}"),
        };
        let bundle = work_dir.join(&name);
        let state_dir = work_dir.join(format!("{name}-state"));
        write_bundle(&bundle, &base_spec(&[&program, "true"]));
        node.state_dirs.push(state_dir.clone());
        let prepared = prepare_bundle(&bundle, &state_dir, |base| {
            plan(
                &PlanInput::for_resolved(&resolved, base, None, ImageKind::Empty, &state_dir),
                &HostStore,
            )
        })
        .expect("assembling the bundle");
        assert!(prepared.plan.skipped.is_empty(), "every member is mounted");
        variants.push(Variant {
            name,
            bundle,
            added_mounts: prepared.plan.mounts.len(),
        });
    }
    drop(client);

    let counter = AtomicU64::new(0);
    let unique_id = |name: &str| {
        format!(
            "containix-bench-{}-{name}-{}",
            std::process::id(),
            counter.fetch_add(1, Ordering::Relaxed)
        )
        .replace('+', "-")
    };
    // Every bundle must run before any is timed.
    for variant in &variants {
        run_container(&node.runc_root, &variant.bundle, &unique_id(&variant.name));
    }

    let samples = Samples::new();
    let mut group = criterion.benchmark_group("runc-run");
    group.sample_size(SAMPLE_SIZE);
    for variant in &variants {
        group.bench_function(&variant.name, |b| {
            b.iter_custom(|iterations| {
                samples.time(&variant.name, iterations, || {
                    run_container(&node.runc_root, &variant.bundle, &unique_id(&variant.name));
                })
            })
        });
    }
    group.finish();
    criterion.final_summary();

    let median = |name: &str| samples.median(name, SAMPLE_SIZE);
    let baseline = median("copied");
    let mut summary = Summary::new(format!(
        "runc run of busybox true (medians of {SAMPLE_SIZE} samples)"
    ));
    for variant in &variants {
        let time = median(&variant.name);
        let note = match (variant.added_mounts, time, baseline) {
            (0, ..) => "baseline: program copied into the rootfs, no mounts".to_owned(),
            (mounts, Some(time), Some(baseline)) => format!(
                "{mounts} mounts added, {} per added mount over the baseline",
                format_duration(time.saturating_sub(baseline) / mounts as u32)
            ),
            (mounts, ..) => format!("{mounts} mounts added"),
        };
        summary.figure(format!("runc run, {}", variant.name), time, note);
    }
    for variant in &variants[1..] {
        summary.ratio(
            format!("{} / copied", variant.name),
            median(&variant.name),
            baseline,
            "",
        );
    }
    let [small, large] = [&variants[2], &variants[3]];
    let slope = median(&large.name)
        .zip(median(&small.name))
        .map(|(l, s)| l.saturating_sub(s) / (large.added_mounts - small.added_mounts) as u32);
    summary.figure(
        format!("per-mount cost, slope {} to {}", small.name, large.name),
        slope,
        "extra runc run time per extra bind mount",
    );
    summary.print();
    drop(node);
}
