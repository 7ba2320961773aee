//! Rootfs and spec assembly ("assemble"): the cost of `plan` + `apply` as the closure grows.
//!
//! For hand-made closures of 10, 100, 1,000 and 5,000 paths held in a `MemoryStore` (a shared
//! library every path links against, a CA bundle package, a chain of library paths, and an `app`
//! root with `bin/app`), it measures `plan` followed by `apply` on a base spec like the one
//! `runc spec` writes (oci-spec's default spec, with the pod command `app` looked up on the
//! closure's `PATH`, a read-only root and the empty image). No I/O is involved: this is the pure
//! part of assembly.
//!
//! Baseline in the same run: serialising the applied spec to JSON, the `config.json` write that
//! follows assembly anyway. The summary gives the medians, the cost per closure path, the ratio
//! of each per-path cost to the 10-path one (1.0 means linear) and assembly / serialisation.
//! Run with `cargo bench -p containix-benches --bench plan`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use containix_benches::{Samples, Summary, format_duration};
use containix_core::assemble::plan::{ImageKind, PlanInput, apply, plan};
use containix_core::assemble::store_facts::MemoryStore;
use containix_core::resolve::resolved::Resolved;
use containix_core::store::closure::Closure;
use containix_core::store::nix32;
use containix_core::store::path_info::PathInfo;
use containix_core::store::store_path::StorePath;
use criterion::{BenchmarkId, Criterion, Throughput};
use oci_spec::runtime::Spec;

/// Closure sizes measured.
const SIZES: [usize; 4] = [10, 100, 1_000, 5_000];
/// The state directory plans write to (never created: planning does no I/O).
const STATE_DIR: &str = "/run/containix/bench/state";

/// A valid store path named `name`, its hash part derived from `index`.
fn store_path(index: usize, name: &str) -> StorePath {
    let mut digest = [0u8; 20];
    digest[..8].copy_from_slice(&(index as u64).to_le_bytes());
    digest[8..16].copy_from_slice(
        &(index as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .to_le_bytes(),
    );
    StorePath::parse(&format!("/nix/store/{}-{name}", nix32::encode(&digest))).unwrap()
}

fn info(path: &StorePath, references: impl IntoIterator<Item = StorePath>) -> PathInfo {
    PathInfo {
        path: path.clone(),
        deriver: None,
        nar_hash: "0".repeat(64),
        nar_size: 4096,
        references: references.into_iter().collect::<BTreeSet<_>>(),
        registration_time: 0,
        ultimate: false,
        signatures: vec![],
        content_address: None,
    }
}

/// A closure of `size` paths (at least 3) and the store holding their files.
fn synthetic_closure(size: usize) -> (Resolved, MemoryStore) {
    assert!(size >= 3, "a closure has a libc, a CA bundle and the app");
    let libc = store_path(0, "glibc-2.39");
    let cacert = store_path(1, "nss-cacert-3.98");
    let app = store_path(size - 1, "app-1.0");
    let mut store = MemoryStore::new()
        .file(format!("{libc}/lib/libc.so.6"), true)
        .file(format!("{cacert}/etc/ssl/certs/ca-bundle.crt"), false)
        .file(format!("{app}/bin/app"), true)
        .file(format!("{app}/share/doc/app/README"), false);
    let mut infos = vec![info(&libc, [libc.clone()]), info(&cacert, [])];
    let mut previous = cacert.clone();
    for index in 2..size - 1 {
        let lib = store_path(index, &format!("lib{index}-1.0"));
        store = store
            .file(format!("{lib}/lib/lib{index}.so"), true)
            .file(format!("{lib}/share/lib{index}/data"), false);
        infos.push(info(&lib, [libc.clone(), previous.clone()]));
        previous = lib;
    }
    infos.push(info(&app, [app.clone(), libc, previous]));
    let closure = Closure::new(vec![app.clone()], infos).expect("a closed set");
    assert_eq!(closure.len(), size);
    let resolved = Resolved {
        roots: vec![app],
        closure,
        main_program: Some("app".into()),
        package_name: Some("app".into()),
        package_version: Some("1.0".into()),
    };
    (resolved, store)
}

/// `runc spec`'s output (oci-spec's default mirrors it) running the pod command `app`.
fn base_spec() -> Spec {
    let mut spec = Spec::default();
    let mut process = spec.process().clone().expect("runc spec has a process");
    process.set_args(Some(vec!["app".into()]));
    process.set_terminal(Some(false));
    spec.set_process(Some(process));
    spec
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let base = base_spec();
    let state_dir = Path::new(STATE_DIR);
    let samples = Samples::new();
    let mut group = criterion.benchmark_group("assemble");
    let mut mounts = Vec::new();
    for size in SIZES {
        let (resolved, store) = synthetic_closure(size);
        let input = PlanInput::for_resolved(&resolved, &base, None, ImageKind::Empty, state_dir);
        let planned = plan(&input, &store).expect("a plan");
        let assembled = apply(&planned, base.clone());
        mounts.push(assembled.mounts().as_ref().map_or(0, Vec::len));
        group.sample_size(sample_size(size));
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::new("plan", size), &size, |b, _| {
            b.iter_custom(|iterations| {
                samples.time(&format!("plan/{size}"), iterations, || {
                    std::hint::black_box(plan(&input, &store).expect("a plan"));
                })
            })
        });
        group.bench_with_input(BenchmarkId::new("apply", size), &size, |b, _| {
            b.iter_custom(|iterations| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iterations {
                    let spec = base.clone();
                    let start = Instant::now();
                    std::hint::black_box(apply(&planned, spec));
                    elapsed += start.elapsed();
                }
                samples.record(&format!("apply/{size}"), iterations, elapsed);
                elapsed
            })
        });
        group.bench_with_input(BenchmarkId::new("to-json", size), &size, |b, _| {
            b.iter_custom(|iterations| {
                samples.time(&format!("to-json/{size}"), iterations, || {
                    std::hint::black_box(serde_json::to_vec(&assembled).expect("JSON"));
                })
            })
        });
    }
    group.finish();
    criterion.final_summary();

    let median = |id: &str, size: usize| samples.median(&format!("{id}/{size}"), sample_size(size));
    let assembly = |size: usize| {
        median("plan", size)
            .zip(median("apply", size))
            .map(|(plan, apply)| plan + apply)
    };
    let per_path = |time: Option<Duration>, size: usize| time.map(|t| t / size as u32);
    let note = |time: Option<Duration>, size: usize| {
        per_path(time, size)
            .map_or_else(String::new, |p| format!("{} per path", format_duration(p)))
    };
    let mut summary = Summary::new("plan + apply on a runc-spec base (medians)");
    for (size, mount_count) in SIZES.into_iter().zip(&mounts) {
        for (label, time) in [
            ("plan", median("plan", size)),
            ("apply", median("apply", size)),
            ("plan+apply", assembly(size)),
            ("config.json serialisation", median("to-json", size)),
        ] {
            summary.figure(
                format!("{label}, {size} paths ({mount_count} mounts)"),
                time,
                note(time, size),
            );
        }
    }
    let smallest = SIZES[0];
    for size in &SIZES[1..] {
        summary.ratio(
            format!("plan+apply per path, {size} / {smallest} paths"),
            per_path(assembly(*size), *size),
            per_path(assembly(smallest), smallest),
            "1.0 = linear",
        );
    }
    for size in SIZES {
        summary.ratio(
            format!("plan+apply / serialisation, {size} paths"),
            assembly(size),
            median("to-json", size),
            "",
        );
    }
    summary.print();
}

/// Samples per routine: fewer for the big closures, whose plans take up to seconds.
fn sample_size(size: usize) -> usize {
    if size >= 1_000 { 10 } else { 30 }
}
