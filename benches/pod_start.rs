//! Pods through containerd's CRI with the containix shim ("shim"), against the same program in
//! an ordinary image on containerd's own runc shim, on one private containerd.
//!
//! The program is the example flake's `hello` (`examples/hello`: a busybox script whose closure
//! has three store paths, already in the local store). Variants:
//!
//! - `containix store-paths`: runtime handler `containix`, pod annotations
//!   `containix.dev/store-paths: <hello's out path>` and `containix.dev/entrypoint: hello`, image
//!   `containix/empty`. No flake is evaluated;
//! - `containix locked flake`: handler `containix`, annotation `containix.dev/flake` with a locked
//!   ref (`path:<flake source>?narHash=<its NAR hash>#<attr>`). The first run evaluates it; the
//!   resolver then answers from its cache of locked refs, which is what the samples measure;
//! - `runc image` (the baseline): the default handler (`""`, `containerd-shim-runc-v2`) and an
//!   image built for this run whose one layer holds the closure's files at their `/nix/store`
//!   paths, with `hello` as its entrypoint, imported before anything is timed.
//!
//! Each sample is one pod: the time from RunPodSandbox through CreateContainer and
//! StartContainer until the container's CRI log file holds its first complete line (polled every
//! millisecond). Removing the pod afterwards is not timed. The summary gives the medians and the
//! ratios containix / runc.
//!
//! Then, resident memory: [`IDLE_PODS`] idle pods per handler (busybox `sleep` from the closure,
//! or from the image), all running at once; the `VmRSS` of the node's
//! `containerd-shim-containix-v1` processes and of its `containerd-shim-runc-v2` processes is
//! summed and divided by the number of pods, and split into anonymous and file-backed pages. The
//! container processes themselves are not counted.
//!
//! Every pod is removed and the node stopped at the end; a panic leaves cleanup to the node's
//! `Drop`. Run as root with the shim built in the profile the bench runs in (for `cargo bench`,
//! `cargo build --release -p containix-shim`), or point `CONTAINIX_SHIM_BIN` at one:
//! `cargo bench -p containix-benches --bench pod_start`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use containix_benches::cri_pods::{
    LIMIT, Resident, StartedPod, log_tail, mib, start_to_first_line, store_image,
};
use containix_benches::{Samples, Summary};
use containix_core::image::oci_image::EMPTY_IMAGE_NAME;
use containix_testkit::containerd::{
    CONTAINIX_RUNTIME_HANDLER, CONTAINIX_SHIM_BINARY, Containerd, ContainerdOptions,
};
use containix_testkit::cri::{ContainerSpec, PodSandboxSpec};
use containix_testkit::fixtures::{self, Built};
use containix_testkit::nix_cli::NixCommand;
use containix_testkit::nix_daemon::NixDaemon;
use containix_testkit::pod::CriPod;
use criterion::{Criterion, SamplingMode};

/// Samples per variant; each is one pod of a few hundred milliseconds.
const SAMPLE_SIZE: usize = 10;
/// Idle pods per handler in the memory measurement.
const IDLE_PODS: usize = 5;
/// How many of the largest mappings the memory report lists.
const MAPPINGS_SHOWN: usize = 6;
/// The baseline image: the example's closure at its store paths.
const RUNC_IMAGE: &str = concat!(
    "localhost/containix-bench/hello:",
    env!("CARGO_PKG_VERSION")
);
/// The runtime handler of containerd's own runc shim.
const RUNC_RUNTIME_HANDLER: &str = "";
/// containerd's runc shim binary, as it appears in the process list.
const RUNC_SHIM_BINARY: &str = "containerd-shim-runc-v2";
/// What the example prints first.
const FIRST_LINE: &str = "Hello from containix!";

/// One way of running the example in a pod.
struct Variant {
    /// Benchmark id and summary label.
    name: &'static str,
    /// The CRI runtime handler.
    handler: &'static str,
    /// The pod's annotations.
    annotations: Vec<(&'static str, String)>,
    /// The image the container names.
    image: &'static str,
}

impl Variant {
    /// The pod sandbox config for pod `name`.
    fn pod(&self, name: &str) -> PodSandboxSpec {
        self.annotations
            .iter()
            .fold(PodSandboxSpec::new(name), |spec, (key, value)| {
                spec.annotation(key, value)
            })
    }

    /// Runs pod `name` with `container` until the container's first line of output.
    async fn start(
        &self,
        node: &Containerd,
        name: &str,
        container: &ContainerSpec,
    ) -> (StartedPod, Duration) {
        start_to_first_line(node, self.pod(name), self.handler, container, self.name).await
    }
}

/// One sample: a pod of `variant` from RunPodSandbox to its first line of output; the pod is
/// removed afterwards, untimed.
async fn pod_start_to_first_output(node: &Containerd, variant: &Variant, name: &str) -> Duration {
    let container = ContainerSpec::new("app", variant.image);
    let (pod, elapsed) = variant.start(node, name, &container).await;
    pod.remove().await;
    elapsed
}

/// A locked flake ref to the example: its source with the source's NAR hash (SRI form); `None`
/// when the source is no longer in the store (another job collected it).
fn locked_flake_ref(hello: &Built) -> Option<String> {
    if !fixtures::is_valid_path(&hello.flake_source).expect("querying the store") {
        return None;
    }
    let source = hello.flake_source.to_str().expect("UTF-8 store path");
    let base32 = NixCommand::nix_store()
        .args(["--query", "--hash", source])
        .run()
        .expect("the flake source's NAR hash");
    let sri = NixCommand::nix()
        .args(["hash", "to-sri", base32.trim()])
        .run()
        .expect("converting the NAR hash to SRI");
    Some(format!(
        "path:{source}?narHash={}#{}",
        sri.trim(),
        hello.attr
    ))
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    NixDaemon::start_or_reuse().expect("the test node's nix-daemon");
    let hello = fixtures::example_hello().expect("building the example flake");
    let busybox = hello
        .closure_member("busybox")
        .expect("the example's closure holds busybox")
        .join("busybox");
    let busybox = busybox.to_str().expect("UTF-8").to_owned();
    let program = hello.out_path.join("bin/hello");
    let program = program.to_str().expect("UTF-8 store path");
    let image = store_image(RUNC_IMAGE, &hello.closure, &[program]);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let options = ContainerdOptions {
        containix_policy: "allowed-flake-prefixes = [\"path:/nix/store/\"]\n".into(),
        ..ContainerdOptions::default()
    };
    assert!(
        options.shim_binary.is_some(),
        "{CONTAINIX_SHIM_BINARY} not found next to the bench: run `cargo build --release -p \
         containix-shim` (the bench profile's directory) or set CONTAINIX_SHIM_BIN"
    );
    let containix_shim_names = [
        CONTAINIX_SHIM_BINARY.to_owned(),
        options
            .shim_binary
            .as_ref()
            .and_then(|shim| std::fs::canonicalize(shim).ok())
            .map_or_else(
                || CONTAINIX_SHIM_BINARY.to_owned(),
                |shim| shim.display().to_string(),
            ),
    ];
    let node = runtime
        .block_on(Containerd::start(options))
        .unwrap_or_else(|e| panic!("starting the test containerd: {e}"));
    runtime
        .block_on(node.import_image(&image))
        .expect("importing the baseline image");

    let out_path = hello.out_path.to_str().expect("UTF-8").to_owned();
    let store_paths = Variant {
        name: "containix store-paths",
        handler: CONTAINIX_RUNTIME_HANDLER,
        annotations: vec![
            ("containix.dev/store-paths", out_path),
            ("containix.dev/entrypoint", "hello".into()),
        ],
        image: EMPTY_IMAGE_NAME,
    };
    let locked_flake = locked_flake_ref(&hello).map(|flake_ref| Variant {
        name: "containix locked flake",
        handler: CONTAINIX_RUNTIME_HANDLER,
        annotations: vec![("containix.dev/flake", flake_ref)],
        image: EMPTY_IMAGE_NAME,
    });
    if locked_flake.is_none() {
        eprintln!("the example's flake source left the store: no locked-flake variant this run");
    }
    let runc = Variant {
        name: "runc image",
        handler: RUNC_RUNTIME_HANDLER,
        annotations: Vec::new(),
        image: RUNC_IMAGE,
    };
    // The baseline first, then the containix variants.
    let variants: Vec<Variant> = [Some(runc), Some(store_paths), locked_flake]
        .into_iter()
        .flatten()
        .collect();

    let counter = AtomicU64::new(0);
    let unique_name =
        |prefix: &str| format!("{prefix}-{}", counter.fetch_add(1, Ordering::Relaxed));
    // Every variant runs, and prints what the example prints, before any is timed (this also
    // fills the resolver's cache for the locked ref).
    for variant in &variants {
        runtime.block_on(async {
            let container = ContainerSpec::new("app", variant.image);
            let name = unique_name("check");
            let (pod, _) = variant.start(&node, &name, &container).await;
            let log = pod.read_log().await;
            assert_eq!(
                log.lines.first().map(|line| line.text.as_str()),
                Some(FIRST_LINE),
                "{}: {log:?}",
                variant.name
            );
            pod.remove().await;
        });
    }

    let samples = Samples::new();
    let mut group = criterion.benchmark_group("pod-start");
    group.sample_size(SAMPLE_SIZE);
    group.sampling_mode(SamplingMode::Flat);
    for variant in &variants {
        group.bench_function(variant.name, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let name = unique_name("start");
                    total += runtime.block_on(pod_start_to_first_output(&node, variant, &name));
                }
                samples.record(variant.name, iterations, total);
                total
            })
        });
    }
    group.finish();
    criterion.final_summary();

    // Resident memory of idle pods, both handlers at once.
    let memory = runtime.block_on(async {
        let mut pods = Vec::new();
        for variant in &variants[..2] {
            let idle = ContainerSpec::new("idle", variant.image).command([
                busybox.as_str(),
                "sleep",
                "100000",
            ]);
            for _ in 0..IDLE_PODS {
                let name = unique_name("idle");
                // `sleep` prints nothing: wait for StartContainer only.
                let pod = CriPod::run(&node, variant.pod(&name), variant.handler)
                    .await
                    .unwrap_or_else(|e| panic!("RunPodSandbox ({}): {e}", variant.name));
                pod.start(&idle).await.unwrap_or_else(|e| {
                    panic!(
                        "starting an idle pod ({}): {e}{}",
                        variant.name,
                        log_tail(&node)
                    )
                });
                pods.push(pod);
            }
        }
        // Let the shims finish whatever start-up work they still do.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let runc_shim_names = [RUNC_SHIM_BINARY.to_owned()];
        let shims = [
            (CONTAINIX_SHIM_BINARY, &containix_shim_names[..]),
            (RUNC_SHIM_BINARY, &runc_shim_names[..]),
        ];
        let memory = shims.map(|(binary, names)| (binary, Resident::of(&node, names)));
        for pod in pods {
            pod.remove(LIMIT).await.expect("removing an idle pod");
        }
        memory
    });

    let median = |name: &str| samples.median(name, SAMPLE_SIZE);
    let mut summary = Summary::new(format!(
        "pod start to first output through CRI (medians of {SAMPLE_SIZE} samples)"
    ));
    for variant in &variants {
        let handler = match variant.handler {
            "" => "default handler, runc shim",
            _ => "containix handler and shim",
        };
        summary.figure(variant.name, median(variant.name), handler);
    }
    for variant in &variants[1..] {
        summary.ratio(
            format!("{} / runc image", variant.name),
            median(variant.name),
            median(variants[0].name),
            "",
        );
    }
    summary.print();

    println!("== resident memory of the shims, {IDLE_PODS} idle pods per handler ==");
    let per_pod = memory.map(|(binary, resident)| {
        let pods = IDLE_PODS as f64;
        let per_pod = resident.total as f64 / pods;
        println!(
            "{binary:<30}  {:>10} per pod  ({} anonymous, {} file-backed; {} processes, {} \
             threads, {} in total)",
            mib(per_pod),
            mib(resident.anon as f64 / pods),
            mib(resident.file as f64 / pods),
            resident.processes,
            resident.threads,
            mib(resident.total as f64)
        );
        println!(
            "{:<30}  {:>10} per pod  (proportional set size: shared pages split among processes)",
            "",
            mib(resident.pss as f64 / pods)
        );
        for (mapping, kib) in resident.mappings.iter().take(MAPPINGS_SHOWN) {
            println!(
                "{:<30}  {:>10} per pod  {mapping}",
                "",
                mib(*kib as f64 / pods)
            );
        }
        per_pod
    });
    println!(
        "ratio {CONTAINIX_SHIM_BINARY} / {RUNC_SHIM_BINARY}: {:.3}",
        per_pod[0] / per_pod[1]
    );

    let report = runtime
        .block_on(node.stop())
        .expect("stopping the test containerd");
    if !report.is_clean() {
        eprintln!("the node needed forcing when it stopped: {report:?}");
    }
}
