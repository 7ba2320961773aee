//! The resolver against the test node's real nix-daemon: flake, store-path and package requests,
//! substitution from a signed local HTTP cache, the node policy, the deadline, and one evaluation
//! for many concurrent resolutions of a locked ref.

use containix_tests::assert_closure_matches_nix_path_info;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containix_core::request::container_request::{PackageName, Request, Source};
use containix_core::request::flake_ref::FlakeInstallable;
use containix_core::request::policy::NodePolicy;
use containix_core::resolve::{ResolveError, ResolveProgress, Resolver, Step};
use containix_core::store::store_path::StorePath;
use containix_testkit::binary_cache::{BinaryCache, SigningKey, substitution_options};
use containix_testkit::fixtures::{self, Built, Fixture, is_valid_path};
use containix_testkit::join_all::join_all;
use containix_testkit::nix_cli::NixCommand;
use containix_testkit::nix_daemon::NixDaemon;
use tempfile::TempDir;

/// A node set up for one test: a policy file, a state directory and a `nix` wrapper that counts
/// its runs, all in one temporary directory.
struct Node {
    dir: TempDir,
}

impl Node {
    /// A node whose policy allows `path:` flakes in the store and the given extra TOML lines.
    fn new(extra_policy: &str) -> Node {
        Self::with_prefixes(&["path:/nix/store/"], extra_policy)
    }

    fn with_prefixes(prefixes: &[&str], extra_policy: &str) -> Node {
        let daemon = NixDaemon::start_or_reuse().unwrap();
        let dir = tempfile::Builder::new()
            .prefix("containix-resolve-")
            .tempdir()
            .unwrap();
        let counter = dir.path().join("nix-runs");
        let wrapper = dir.path().join("nix");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho run >> '{}'\nexec nix \"$@\"\n",
                counter.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            &wrapper,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
        )
        .unwrap();
        let prefixes: Vec<String> = prefixes.iter().map(|p| format!("{p:?}")).collect();
        let policy = format!(
            "allowed-flake-prefixes = [{}]\nrealise = \"build\"\nstate-dir = {:?}\n\
             nix-command = {:?}\ndaemon-socket = {:?}\n{extra_policy}\n",
            prefixes.join(", "),
            dir.path().join("state"),
            wrapper,
            daemon.socket_path(),
        );
        std::fs::write(dir.path().join("config.toml"), policy).unwrap();
        Node { dir }
    }

    fn policy(&self) -> NodePolicy {
        NodePolicy::from_file(&self.dir.path().join("config.toml")).unwrap()
    }

    fn resolver(&self) -> Resolver {
        Resolver::new(self.policy())
    }

    /// How many times the wrapper ran `nix`.
    fn nix_runs(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("nix-runs"))
            .map(|text| text.lines().count())
            .unwrap_or(0)
    }
}

fn request(source: Source) -> Request {
    Request {
        container: "app".into(),
        source,
        entrypoint: None,
        timeout: None,
        namespace: None,
    }
}

fn flake(installable: &str) -> Source {
    Source::Flake(FlakeInstallable::parse(installable).unwrap())
}

fn store_path(path: &Path) -> StorePath {
    StorePath::parse(path.to_str().unwrap()).unwrap()
}

/// `path:<source>?narHash=<hash>#<attr>`: a locked ref to a built fixture.
fn locked_ref(built: &Built) -> String {
    let metadata = NixCommand::nix()
        .args(["flake", "metadata", "--json"])
        .arg(format!("path:{}", built.flake_source.display()))
        .run()
        .unwrap();
    let metadata: serde_json::Value = serde_json::from_str(&metadata).unwrap();
    let nar_hash = metadata["locked"]["narHash"].as_str().unwrap();
    format!(
        "path:{}?narHash={nar_hash}#{}",
        built.flake_source.display(),
        built.attr
    )
}

/// Builds an isolated fixture, pushes its closure to a fresh signed cache, and deletes from the
/// store what `delete` selects of what the build created.
fn pushed_and_deleted(delete: impl Fn(&Path) -> bool) -> (Built, BinaryCache) {
    let built = Fixture::Diamond.build_isolated().unwrap();
    let cache = BinaryCache::create().unwrap();
    cache.push(&[&built.out_path]).unwrap();
    let doomed: Vec<&PathBuf> = built
        .created_store_paths()
        .unwrap()
        .iter()
        .filter(|p| delete(p))
        .collect();
    NixCommand::nix_store()
        .arg("--delete")
        .args(doomed)
        .run()
        .unwrap();
    assert!(!is_valid_path(&built.out_path).unwrap());
    (built, cache)
}

/// Whether the store's record of `path` carries a signature by the key named like `public_key`.
fn signed_by(path: &Path, public_key: &str) -> bool {
    let key_name = public_key.split(':').next().unwrap();
    let json = NixCommand::nix()
        .args(["path-info", "--json"])
        .arg(path)
        .run()
        .unwrap();
    let infos: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    infos[0]["signatures"].as_array().is_some_and(|sigs| {
        sigs.iter()
            .any(|s| s.as_str().unwrap().starts_with(&format!("{key_name}:")))
    })
}

#[tokio::test]
async fn flake_closure_equals_nix_store_and_path_info() {
    let built = Fixture::Diamond.build().unwrap();
    let node = Node::new("");
    let resolution = node
        .resolver()
        .resolve(&request(flake(&built.flake_ref())))
        .await
        .unwrap();
    let resolved = resolution.into_unrooted();
    assert_eq!(resolved.roots, vec![store_path(&built.out_path)]);
    assert_eq!(resolved.main_program.as_deref(), Some("diamond"));
    assert_eq!(resolved.package_name.as_deref(), Some("diamond"));
    assert_eq!(resolved.package_version.as_deref(), Some("1.0"));

    let ours: Vec<PathBuf> = resolved
        .closure
        .paths()
        .map(|p| p.as_path().to_owned())
        .collect();
    assert_eq!(ours, built.closure);

    assert_closure_matches_nix_path_info(&resolved.closure);
    // An unlocked ref is locked (one run), then its lock is evaluated (another) and cached.
    assert_eq!(node.nix_runs(), 2);
    let again = node
        .resolver()
        .resolve(&request(flake(&built.flake_ref())))
        .await
        .unwrap()
        .into_unrooted();
    assert_eq!(again.roots, resolved.roots);
    assert_eq!(
        node.nix_runs(),
        2,
        "the unchanged folder's lock and evaluation are reused"
    );
}

#[tokio::test]
async fn store_paths_are_substituted_from_the_signed_cache() {
    let (built, cache) = pushed_and_deleted(|_| true);
    let server = cache.serve().unwrap();
    let node = Node::new("");
    let resolver = node
        .resolver()
        .with_daemon_settings(substitution_options(&server.url(), cache.public_key()));
    let (progress, mut watcher) = tokio::sync::watch::channel(ResolveProgress::default());
    let steps = tokio::spawn(async move {
        let mut seen = Vec::new();
        while watcher.changed().await.is_ok() {
            if let Some(step) = watcher.borrow_and_update().step.clone() {
                seen.push(step);
            }
        }
        seen
    });
    let resolved = resolver
        .resolve_with_progress(
            &request(Source::StorePaths(vec![store_path(&built.out_path)])),
            &progress,
        )
        .await
        .unwrap()
        .into_unrooted();
    drop(progress);
    let steps = steps.await.unwrap();
    assert!(
        steps
            .iter()
            .any(|s| *s == Step::Substituting(store_path(&built.out_path))),
        "{steps:?}"
    );
    let ours: Vec<PathBuf> = resolved
        .closure
        .paths()
        .map(|p| p.as_path().to_owned())
        .collect();
    assert_eq!(ours, built.closure);
    assert_eq!(resolved.main_program, None);
    assert_eq!(resolved.package_name.as_deref(), Some("diamond"));
    assert!(signed_by(&built.out_path, cache.public_key()));
    assert_eq!(node.nix_runs(), 0, "store paths are never evaluated");
    built.delete_from_store().unwrap();
}

#[tokio::test]
async fn flake_with_realise_substitute_fetches_the_outputs() {
    // Keep the flake source so the flake can be evaluated; everything else goes.
    let (built, cache) = pushed_and_deleted(|p| !p.to_str().unwrap().ends_with("-source"));
    let server = cache.serve().unwrap();
    let node = Node::new("");
    let mut policy = node.policy();
    policy.realise = containix_core::request::policy::Realise::Substitute;
    let resolved = Resolver::new(policy)
        .with_daemon_settings(substitution_options(&server.url(), cache.public_key()))
        .resolve(&request(flake(&built.flake_ref())))
        .await
        .unwrap()
        .into_unrooted();
    assert_eq!(resolved.roots, vec![store_path(&built.out_path)]);
    assert_eq!(resolved.closure.len(), built.closure.len());
    assert!(signed_by(&built.out_path, cache.public_key()));
    // The node's evaluation cache roots the derivation until its state goes.
    drop(node);
    built.delete_from_store().unwrap();
}

#[tokio::test]
async fn realise_substitute_without_a_cache_never_builds() {
    let built = Fixture::Diamond.build_isolated().unwrap();
    let keep_source = |p: &&PathBuf| !p.to_str().unwrap().ends_with("-source");
    let doomed: Vec<&PathBuf> = built
        .created_store_paths()
        .unwrap()
        .iter()
        .filter(keep_source)
        .collect();
    NixCommand::nix_store()
        .arg("--delete")
        .args(doomed)
        .run()
        .unwrap();
    let node = Node::new("");
    let mut policy = node.policy();
    policy.realise = containix_core::request::policy::Realise::Substitute;
    let err = Resolver::new(policy)
        .with_daemon_settings([("substituters", "")])
        .resolve(&request(flake(&built.flake_ref())))
        .await
        .unwrap_err();
    assert!(matches!(err, ResolveError::Substitute { .. }), "{err}");
    assert!(!is_valid_path(&built.out_path).unwrap());
    built.delete_from_store().unwrap();
}

#[tokio::test]
async fn stopped_cache_error_names_the_path() {
    let (built, cache) = pushed_and_deleted(|_| true);
    let server = cache.serve().unwrap();
    let url = server.url();
    drop(server);
    let mut settings = substitution_options(&url, cache.public_key());
    settings.push(("download-attempts".into(), "1".into()));
    let err = Node::new("")
        .resolver()
        .with_daemon_settings(settings)
        .resolve(&request(Source::StorePaths(vec![store_path(
            &built.out_path,
        )])))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ResolveError::Substitute { .. }), "{message}");
    // Nix 2.8's final message says only that the path cannot be created; the reason comes
    // first, from the warnings the daemon logged while trying the cache.
    let path = built.out_path.display();
    assert!(
        message.starts_with(&format!(
            "container app: {path} could not be substituted: warning: "
        )),
        "{message}"
    );
    // curl says "Couldn't connect" under Nix 2.8, "Could not connect" under Nix 2.26.
    assert!(
        message.contains(&format!("unable to download '{url}/nix-cache-info'"))
            && (message.contains("Couldn't connect to server")
                || message.contains("Could not connect to server")),
        "{message}"
    );
    assert!(
        message.ends_with(&format!(
            "the daemon then reported: path '{path}' does not exist and cannot be created"
        )),
        "{message}"
    );
    assert!(!is_valid_path(&built.out_path).unwrap());
    built.delete_from_store().unwrap();
}

#[tokio::test]
async fn untrusted_signing_key_is_refused() {
    let (built, cache) = pushed_and_deleted(|_| true);
    let server = cache.serve().unwrap();
    let other = SigningKey::generate("containix-other-1", &cache.scratch_dir()).unwrap();
    let err = Node::new("")
        .resolver()
        .with_daemon_settings(substitution_options(&server.url(), &other.public_key))
        .resolve(&request(Source::StorePaths(vec![store_path(
            &built.out_path,
        )])))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ResolveError::Substitute { .. }), "{message}");
    // Nix 2.8 words it "the substitute for 'P' from 'U' is not signed by any of the keys",
    // Nix 2.26 "ignoring substitute for 'P' from 'U', as it's not signed by any of the keys".
    let path = built.out_path.display();
    assert!(
        message.starts_with(&format!(
            "container app: {path} could not be substituted: warning: "
        )),
        "{message}"
    );
    let warning = message.split(": warning: ").nth(1).unwrap_or_default();
    assert!(
        warning.contains(&format!("substitute for '{path}' from '{}'", server.url()))
            && warning.contains("not signed by any of the keys in 'trusted-public-keys'"),
        "{message}"
    );
    assert!(!is_valid_path(&built.out_path).unwrap());
    built.delete_from_store().unwrap();
}

#[tokio::test]
async fn unsigned_cache_is_refused() {
    let built = Fixture::Diamond.build_isolated().unwrap();
    let unsigned = tempfile::Builder::new()
        .prefix("containix-unsigned-cache-")
        .tempdir()
        .unwrap();
    NixCommand::nix()
        .args(["copy", "--to"])
        .arg(format!("file://{}", unsigned.path().display()))
        .arg(&built.out_path)
        .run()
        .unwrap();
    built.delete_from_store().unwrap();
    let server = containix_testkit::http_server::StaticFileServer::serve(unsigned.path()).unwrap();
    let key = SigningKey::generate("containix-unused-1", unsigned.path()).unwrap();
    let err = Node::new("")
        .resolver()
        .with_daemon_settings(substitution_options(&server.url(), &key.public_key))
        .resolve(&request(Source::StorePaths(vec![store_path(
            &built.out_path,
        )])))
        .await
        .unwrap_err();
    assert!(matches!(err, ResolveError::Substitute { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("not signed by any of the keys in 'trusted-public-keys'"),
        "{err}"
    );
    assert!(!is_valid_path(&built.out_path).unwrap());
    built.delete_from_store().unwrap();
}

#[tokio::test]
async fn concurrent_resolutions_of_a_locked_ref_evaluate_once() {
    let built = Fixture::Diamond.build().unwrap();
    let installable = locked_ref(&built);
    let node = Node::new("");
    let resolver = node.resolver();
    let request = request(flake(&installable));
    let resolutions = (0..20).map(|_| resolver.resolve(&request));
    let results = join_all(resolutions).await;
    let roots: BTreeSet<Vec<StorePath>> = results
        .into_iter()
        .map(|r| r.unwrap().into_unrooted().roots)
        .collect();
    assert_eq!(roots.len(), 1);
    assert_eq!(node.nix_runs(), 1);
    // A later resolution is a cache hit too, and still yields the closure.
    let again = resolver.resolve(&request).await.unwrap().into_unrooted();
    assert_eq!(again.closure.len(), built.closure.len());
    assert_eq!(again.main_program.as_deref(), Some("diamond"));
    assert_eq!(node.nix_runs(), 1);
}

#[tokio::test]
async fn tiny_deadline_names_the_running_step() {
    let built = Fixture::Diamond.build().unwrap();
    let installable = built.flake_ref();
    let mut request = request(flake(&installable));
    request.timeout = Some(Duration::from_millis(1));
    let err = Node::new("")
        .resolver()
        .resolve(&request)
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let message = err.to_string();
    // The flake is locked before it is evaluated; the deadline passes in one of the two.
    let flake = installable.split('#').next().unwrap();
    assert!(
        message.contains(&format!("it was evaluating {installable}"))
            || message.contains(&format!("it was locking {flake}")),
        "{message}"
    );
    assert!(
        message.starts_with("container app: resolution did not finish within"),
        "{message}"
    );
}

#[tokio::test]
async fn disallowed_prefix_is_refused_before_any_evaluation() {
    let built = Fixture::Diamond.build().unwrap();
    let node = Node::with_prefixes(&["github:my-org/"], "");
    let err = node
        .resolver()
        .resolve(&request(flake(&built.flake_ref())))
        .await
        .unwrap_err();
    assert!(matches!(err, ResolveError::NotAllowed { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("is not allowed on this node"), "{message}");
    assert!(message.contains("github:my-org/"), "{message}");
    assert_eq!(node.nix_runs(), 0);
}

/// The namespace's settings decide, through the resolver: prefixes and builds.
#[tokio::test]
async fn a_namespace_s_settings_decide_what_may_be_resolved_and_built() {
    let built = Fixture::Diamond.build_isolated().unwrap();
    let keep_source = |p: &&PathBuf| !p.to_str().unwrap().ends_with("-source");
    let doomed: Vec<&PathBuf> = built
        .created_store_paths()
        .unwrap()
        .iter()
        .filter(keep_source)
        .collect();
    NixCommand::nix_store()
        .arg("--delete")
        .args(doomed)
        .run()
        .unwrap();
    let node = Node::new(
        "[namespaces.builders]\nrealise = \"build\"\n\
         [namespaces.locked]\nallowed-flake-prefixes = [\"github:my-org/\"]\n",
    );
    let mut policy = node.policy();
    policy.realise = containix_core::request::policy::Realise::Substitute;
    let resolver = Resolver::new(policy).with_daemon_settings([("substituters", "")]);
    let in_namespace = |namespace: Option<&str>| Request {
        namespace: namespace.map(str::to_owned),
        ..request(flake(&built.flake_ref()))
    };

    for namespace in [None, Some("elsewhere")] {
        let err = resolver
            .resolve(&in_namespace(namespace))
            .await
            .unwrap_err();
        assert!(matches!(err, ResolveError::Substitute { .. }), "{err}");
    }
    let err = resolver
        .resolve(&in_namespace(Some("locked")))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("is not allowed on this node for namespace `locked`"),
        "{message}"
    );
    assert!(!is_valid_path(&built.out_path).unwrap());
    assert_eq!(
        node.nix_runs(),
        2,
        "the locked namespace's ref is never evaluated"
    );

    let resolution = resolver
        .resolve(&in_namespace(Some("builders")))
        .await
        .unwrap();
    assert_eq!(
        resolution.resolved().roots,
        [StorePath::parse(built.out_path.to_str().unwrap()).unwrap()]
    );
    drop(resolution);
    drop(node);
    built.delete_from_store().unwrap();
}

#[tokio::test]
async fn packages_resolve_in_the_package_set() {
    let built = Fixture::Diamond.build().unwrap();
    let node = Node::new(&format!(
        "package-set = \"path:{}\"",
        built.flake_source.display()
    ));
    let names = ["leaf", "base"].map(|n| PackageName::parse(n).unwrap());
    let resolved = node
        .resolver()
        .resolve(&request(Source::Packages(names.to_vec())))
        .await
        .unwrap()
        .into_unrooted();
    let root_names: Vec<&str> = resolved.roots.iter().map(StorePath::name).collect();
    assert_eq!(root_names, ["diamond-leaf", "diamond-base"]);
    assert_eq!(resolved.closure.len(), 2);
    assert_eq!(resolved.package_name.as_deref(), Some("diamond-leaf"));
    // The package set is locked once, then each package evaluated.
    assert_eq!(node.nix_runs(), 3);
}

#[tokio::test]
async fn packages_need_a_package_set() {
    let node = Node::new("");
    let err = node
        .resolver()
        .resolve(&request(Source::Packages(vec![
            PackageName::parse("curl").unwrap(),
        ])))
        .await
        .unwrap_err();
    assert!(matches!(err, ResolveError::NoPackageSet { .. }), "{err}");
    assert!(err.to_string().contains("`package-set`"), "{err}");
    assert_eq!(node.nix_runs(), 0);
}

#[tokio::test]
async fn evaluation_errors_carry_nix_s_message() {
    let built = Fixture::Diamond.build().unwrap();
    let installable = format!(
        "path:{}#packages.{}.nope",
        built.flake_source.display(),
        fixtures::current_system().unwrap()
    );
    let err = Node::new("")
        .resolver()
        .resolve(&request(flake(&installable)))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ResolveError::Eval { .. }), "{message}");
    assert!(
        message.starts_with("container app: evaluating"),
        "{message}"
    );
    assert!(message.contains("nope"), "{message}");
}

#[tokio::test]
async fn stale_cache_entry_is_evaluated_again() {
    let built = Fixture::Diamond.build_isolated().unwrap();
    let installable = locked_ref(&built);
    let node = Node::new("");
    let resolver = node.resolver();
    let request = request(flake(&installable));
    let first = resolver.resolve(&request).await.unwrap().into_unrooted();
    assert_eq!(node.nix_runs(), 1);
    // Collect the outputs and the derivations the cache entry names; keep the flake source.
    // The cache keeps its derivation as a GC root: let go of it first, as a wiped state
    // directory would.
    std::fs::remove_dir_all(node.policy().state_dir.join("cache/gcroots")).unwrap();
    let doomed: Vec<&PathBuf> = built
        .created_store_paths()
        .unwrap()
        .iter()
        .filter(|p| !p.to_str().unwrap().ends_with("-source"))
        .collect();
    NixCommand::nix_store()
        .arg("--delete")
        .args(doomed)
        .run()
        .unwrap();
    assert!(!is_valid_path(&built.drv_path).unwrap());
    let second = resolver.resolve(&request).await.unwrap().into_unrooted();
    assert_eq!(
        node.nix_runs(),
        2,
        "the stale entry was not evaluated again"
    );
    assert_eq!(second.roots, first.roots);
    assert_eq!(second.closure.len(), built.closure.len());
    assert!(is_valid_path(&built.out_path).unwrap());
    drop(node);
    built.delete_from_store().unwrap();
}
