//! Per-consumer GC roots against the real daemon: a held root keeps its closure from the
//! garbage collector, a released one lets it go. Uses isolated fixture builds. Most tests use
//! targeted collection (`nix-store --delete`, which runs the collector's liveness check on just
//! those paths); one runs a full `nix-store --gc`, and takes [`FULL_GC`] exclusively so no other
//! test of this binary has unrooted paths in flight while it runs (cargo runs test binaries one
//! after another, so other binaries are not affected).

use std::path::Path;

use containix_core::request::container_request::{Request, Source};
use containix_core::request::policy::NodePolicy;
use containix_core::resolve::Resolver;
use containix_core::store::gc_roots::{GcRootError, GcRoots};
use containix_core::store::store_path::StorePath;
use containix_testkit::fixtures::{Built, Fixture, is_valid_path};
use containix_testkit::nix_cli::NixCommand;
use containix_testkit::nix_daemon::NixDaemon;

fn store_path(path: &Path) -> StorePath {
    StorePath::parse(path.to_str().unwrap()).unwrap()
}

fn resolver(state_dir: &Path) -> Resolver {
    let daemon = NixDaemon::start_or_reuse().unwrap();
    Resolver::new(NodePolicy {
        state_dir: state_dir.to_owned(),
        daemon_socket: daemon.socket_path().to_owned(),
        ..NodePolicy::default()
    })
}

fn request(paths: &[&Path]) -> Request {
    Request {
        container: "app".into(),
        source: Source::StorePaths(paths.iter().map(|p| store_path(p)).collect()),
        entrypoint: None,
        timeout: None,
        namespace: None,
    }
}

/// `nix-store --delete` of `path`: the collector deletes it only if nothing keeps it alive.
fn try_delete(path: &Path) -> Result<String, containix_testkit::Error> {
    NixCommand::nix_store().arg("--delete").arg(path).run()
}

/// Shared by every test here; the full-collection test takes it exclusively.
static FULL_GC: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn member<'a>(built: &'a Built, name: &str) -> &'a Path {
    built.closure_member(name).unwrap()
}

#[tokio::test]
async fn held_root_keeps_the_closure_and_release_lets_it_go() {
    let _shared = FULL_GC.read().await;
    let built = Fixture::Diamond.build_isolated().unwrap();
    let state = tempfile::tempdir().unwrap();
    let gc_roots = GcRoots::new(state.path());
    let resolution = resolver(state.path())
        .resolve(&request(&[&built.out_path]))
        .await
        .unwrap();
    let resolved = resolution.hold(&gc_roots, "pod-1_app").await.unwrap();
    assert_eq!(resolved.roots, vec![store_path(&built.out_path)]);

    let held = gc_roots.list().unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].consumer, "pod-1_app");
    assert_eq!(held[0].target.as_ref(), Some(&store_path(&built.out_path)));
    let roots = NixCommand::nix_store()
        .args(["--gc", "--print-roots"])
        .run()
        .unwrap();
    let listed = format!("{} -> {}", held[0].link.display(), built.out_path.display());
    assert!(
        roots.lines().any(|line| line == listed),
        "{listed} not in:\n{roots}"
    );

    // The root and a path deep in its closure are alive: the collector refuses both.
    let err = try_delete(&built.out_path).unwrap_err().to_string();
    assert!(err.contains("alive"), "{err}");
    let leaf = member(&built, "diamond-leaf");
    let err = try_delete(leaf).unwrap_err().to_string();
    assert!(err.contains("alive"), "{err}");
    assert!(is_valid_path(&built.out_path).unwrap() && is_valid_path(leaf).unwrap());

    gc_roots.release("pod-1_app").unwrap();
    gc_roots.release("pod-1_app").unwrap();
    assert!(gc_roots.list().unwrap().is_empty());
    assert!(!gc_roots.dir().join("pod-1_app").exists());
    try_delete(&built.out_path).unwrap();
    assert!(!is_valid_path(&built.out_path).unwrap());
    built.delete_from_store().unwrap();
}

#[tokio::test]
async fn hold_is_idempotent_and_sets_exactly_the_roots_given() {
    let _shared = FULL_GC.read().await;
    let built = Fixture::Diamond.build_isolated().unwrap();
    let state = tempfile::tempdir().unwrap();
    let gc_roots = GcRoots::new(state.path());
    let top = member(&built, "diamond-top");
    let leaf = member(&built, "diamond-leaf");

    let mut resolution = resolver(state.path())
        .resolve(&request(&[&built.out_path, leaf]))
        .await
        .unwrap();
    let roots = resolution.resolved().roots.clone();
    let first = gc_roots
        .hold("app", &roots, resolution.client())
        .await
        .unwrap();
    let second = gc_roots
        .hold("app", &roots, resolution.client())
        .await
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(gc_roots.list().unwrap().len(), 2);

    // Holding another set replaces the consumer's roots.
    let resolved = resolver(state.path())
        .resolve(&request(&[top]))
        .await
        .unwrap()
        .hold(&gc_roots, "app")
        .await
        .unwrap();
    drop(resolution);
    let held = gc_roots.list().unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].target.as_ref(), Some(&resolved.roots[0]));
    try_delete(&built.out_path).unwrap();
    let err = try_delete(leaf).unwrap_err().to_string();
    assert!(err.contains("alive"), "{err}");

    gc_roots.release("app").unwrap();
    built.delete_from_store().unwrap();
}

#[tokio::test]
async fn bad_consumer_ids_are_refused_and_leave_nothing_behind() {
    let _shared = FULL_GC.read().await;
    let state = tempfile::tempdir().unwrap();
    let gc_roots = GcRoots::new(state.path());
    let daemon = NixDaemon::start_or_reuse().unwrap();
    let mut client = containix_core::store::daemon::DaemonClient::connect(daemon.socket_path())
        .await
        .unwrap();
    for bad in ["", "..", "../etc", "a/b", ".hidden"] {
        let err = gc_roots.hold(bad, &[], &mut client).await.unwrap_err();
        assert!(matches!(err, GcRootError::InvalidConsumer(_)), "{err}");
        assert!(gc_roots.release(bad).is_err());
    }
    assert!(!gc_roots.dir().exists());
}

#[tokio::test]
async fn full_garbage_collection_keeps_held_closures_and_collects_released_ones() {
    let _exclusive = FULL_GC.write().await;
    let built = Fixture::Diamond.build_isolated().unwrap();
    let state = tempfile::tempdir().unwrap();
    let gc_roots = GcRoots::new(state.path());
    let resolved = resolver(state.path())
        .resolve(&request(&[&built.out_path]))
        .await
        .unwrap()
        .hold(&gc_roots, "pod-gc_app")
        .await
        .unwrap();
    assert_eq!(resolved.closure.len(), built.closure.len());

    // The resolution's connection (and its temp roots) is closed: only the GC root remains.
    NixCommand::nix_store().arg("--gc").run().unwrap();
    for path in &built.closure {
        assert!(
            is_valid_path(path).unwrap(),
            "{} was collected while its GC root was held",
            path.display()
        );
    }

    gc_roots.release("pod-gc_app").unwrap();
    NixCommand::nix_store().arg("--gc").run().unwrap();
    for path in &built.closure {
        assert!(
            !is_valid_path(path).unwrap(),
            "{} survived a collection after its GC root was released",
            path.display()
        );
    }
    built.delete_from_store().unwrap();
}
