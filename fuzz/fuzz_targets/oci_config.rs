//! The OCI `config.json` containerd hands the shim: its annotations and, through the planner,
//! its mounts, process and root never panic the shim, and a plan that succeeds applies.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use containix_core::assemble::container_step::annotations_of_spec;
use containix_core::assemble::plan::{ImageKind, PlanInput, apply, env, plan};
use containix_core::assemble::store_facts::MemoryStore;
use containix_core::request::annotations::PodAnnotations;
use containix_core::resolve::resolved::Resolved;
use containix_core::store::closure::Closure;
use containix_core::store::path_info::PathInfo;
use containix_core::store::store_path::StorePath;
use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::Spec;

/// A closure of two members, the first with a program: what every spec is planned against.
static CLOSURE: LazyLock<(Resolved, MemoryStore)> = LazyLock::new(|| {
    let app = StorePath::parse("/nix/store/ns2pf32zq4bhsf4ijv4jzid6rjfd8a5l-app-1.0").unwrap();
    let lib = StorePath::parse("/nix/store/0c9ffd5zq4bhsf4ijv4jzid6rjfd8a5l-lib-2.0").unwrap();
    let info = |path: &StorePath, refs: &[&StorePath]| {
        PathInfo::new(path.clone(), "0".repeat(64), 1, refs.iter().map(|r| (*r).clone()))
    };
    let closure = Closure::new(vec![app.clone()], [info(&app, &[&lib]), info(&lib, &[])]).unwrap();
    let store = MemoryStore::new()
        .file(format!("{app}/bin/app"), true)
        .symlink(format!("{app}/bin/tool"), format!("{lib}/bin/tool"))
        .file(format!("{lib}/bin/tool"), true)
        .file(format!("{lib}/etc/ssl/certs/ca-bundle.crt"), false);
    let resolved = Resolved {
        roots: vec![app],
        closure,
        main_program: Some("app".into()),
        package_name: Some("app".into()),
        package_version: Some("1.0".into()),
    };
    (resolved, store)
});

fuzz_target!(|data: &[u8]| {
    if let Ok(annotations) = annotations_of_spec(data) {
        let _ = PodAnnotations::parse(&annotations);
    }
    let Ok(base) = serde_json::from_slice::<Spec>(data) else { return };
    let (resolved, store) = &*CLOSURE;
    // A view's record of the closure's CA bundles, as a repeat start plans from it.
    let recorded = env::ca_bundles(store, &resolved.closure).expect("a memory store reads");
    for (image, store_view) in [
        (ImageKind::Empty, Some(Path::new("/var/lib/containix/views/v/store"))),
        (ImageKind::Normal, None),
    ] {
        let state_dir = Path::new("/var/lib/containix/containers/fuzz");
        let input = PlanInput {
            store_view,
            ca_bundles: store_view.map(|_| recorded.as_slice()),
            ..PlanInput::for_resolved(resolved, &base, None, image, state_dir)
        };
        if let Ok(planned) = plan(&input, store) {
            let once = apply(&planned, base.clone());
            assert_eq!(apply(&planned, once.clone()), once, "applying a plan twice changes it");
        }
    }
});
