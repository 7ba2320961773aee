//! The Nix half of the test node harness, against a real nix-daemon: the daemon, the example and
//! fixture flakes, and a signed local binary cache served over HTTP.

use std::path::{Path, PathBuf};
use std::process::Command;

use containix_testkit::Error;
use containix_testkit::binary_cache::{BinaryCache, SigningKey, substitution_options};
use containix_testkit::fixtures::{
    self, EXIT_CODE_FIXTURE_STATUS, Fixture, is_valid_path, query_references,
};
use containix_testkit::nix_cli::NixCommand;
use containix_testkit::nix_daemon::{self, NixDaemon};
use containix_testkit::packages;
use containix_testkit::synthetic_store::SyntheticGraph;

fn stderr_of(err: &Error) -> &str {
    match err {
        Error::CommandFailed { stderr_tail, .. } => stderr_tail,
        other => panic!("expected a failed command, got {other}"),
    }
}

fn names(paths: &[PathBuf]) -> Vec<&str> {
    let mut names: Vec<&str> = paths
        .iter()
        .map(|path| fixtures::store_path_name(path).expect("a store path"))
        .collect();
    names.sort_unstable();
    names
}

fn member<'a>(built: &'a fixtures::Built, name: &str) -> &'a Path {
    built
        .closure_member(name)
        .unwrap_or_else(|| panic!("{name} is not in the closure {:?}", built.closure))
}

#[test]
fn node_has_the_nix_packages_installed() {
    packages::require_nix_packages().expect("run scripts/setup-node.sh");
}

#[test]
fn daemon_starts_or_is_reused_and_answers_the_cli() {
    let daemon = NixDaemon::start_or_reuse().unwrap();
    assert_eq!(daemon.socket_path(), Path::new(nix_daemon::SOCKET_PATH));
    assert!(nix_daemon::is_answering(daemon.socket_path()));
    let again = NixDaemon::start_or_reuse().unwrap();
    assert_eq!(
        again.started_pid(),
        None,
        "a second call must reuse the daemon"
    );
    // `nix store ping` fails unless the daemon completes a whole session.
    NixCommand::nix().args(["store", "ping"]).run().unwrap();
}

#[test]
fn concurrent_start_or_reuse_starts_at_most_one_daemon() {
    let threads: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(NixDaemon::start_or_reuse))
        .collect();
    let daemons: Vec<NixDaemon> = threads
        .into_iter()
        .map(|thread| thread.join().unwrap().unwrap())
        .collect();
    let started = daemons.iter().filter(|d| d.started_pid().is_some()).count();
    assert!(started <= 1, "{started} daemons were started");
}

#[test]
fn example_hello_builds_a_three_path_closure_with_real_references() {
    let built = fixtures::example_hello().unwrap();
    assert_eq!(
        fixtures::store_path_name(&built.out_path),
        Some("hello-1.0")
    );
    assert_eq!(
        names(&built.closure),
        ["busybox", "hello-1.0", "hello-greeting-1.0"]
    );

    let hello = member(&built, "hello-1.0");
    let references = query_references(hello).unwrap();
    assert_eq!(names(&references), ["busybox", "hello-greeting-1.0"]);
    assert!(
        query_references(member(&built, "busybox"))
            .unwrap()
            .is_empty()
    );

    let output = Command::new(built.main_program_path().unwrap())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.starts_with("Hello from containix!\n"), "{stdout}");
    assert!(stdout.contains("straight from the Nix store"), "{stdout}");
}

#[test]
fn example_hello_declares_its_main_program_and_flake_ref_works_offline() {
    let built = fixtures::example_hello().unwrap();
    let meta = NixCommand::nix()
        .args(["eval", "--json"])
        .arg(format!("{}.meta.mainProgram", built.flake_ref()))
        .run()
        .unwrap();
    assert_eq!(meta.trim(), "\"hello\"");
}

#[test]
fn diamond_fixture_closure_holds_every_level_once() {
    let built = Fixture::Diamond.build().unwrap();
    assert_eq!(
        names(&built.closure),
        [
            "busybox",
            "diamond-1.0",
            "diamond-base",
            "diamond-leaf",
            "diamond-left",
            "diamond-right",
            "diamond-top"
        ]
    );
    let refs = |name| names(&query_references(member(&built, name)).unwrap()).join(" ");
    assert_eq!(refs("diamond-top"), "diamond-left diamond-right");
    assert_eq!(refs("diamond-left"), "diamond-base");
    assert_eq!(refs("diamond-right"), "diamond-base");
    assert_eq!(refs("diamond-base"), "diamond-leaf");
}

#[test]
fn file_and_symlink_fixture_closure_holds_a_regular_file_and_a_symlink() {
    let built = Fixture::FileAndSymlink.build().unwrap();
    let data = member(&built, "fixture-data.txt");
    let link = member(&built, "fixture-data-link");
    assert!(data.symlink_metadata().unwrap().is_file());
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_link(link).unwrap(), data);
    assert_eq!(
        names(&query_references(link).unwrap()),
        ["fixture-data.txt"]
    );
}

#[test]
fn no_main_program_fixture_declares_no_main_program() {
    let built = Fixture::NoMainProgram.build().unwrap();
    let main_program = NixCommand::nix()
        .args(["eval", "--json", &built.flake_ref()])
        .args(["--apply", "package: package.meta.mainProgram or null"])
        .run()
        .unwrap();
    assert_eq!(main_program.trim(), "null");
    assert!(built.out_path.join("bin/tool-a").is_file());
    assert!(built.out_path.join("bin/tool-b").is_file());
}

#[test]
fn exit_code_fixture_program_exits_with_its_status() {
    let built = Fixture::ExitCode.build().unwrap();
    let status = Command::new(built.main_program_path().unwrap())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(EXIT_CODE_FIXTURE_STATUS));
}

#[test]
fn isolated_builds_of_one_fixture_share_no_store_path() {
    let first = Fixture::ExitCode.build_isolated().unwrap();
    let second = Fixture::ExitCode.build_isolated().unwrap();
    let first_paths = first.created_store_paths().unwrap();
    let second_paths = second.created_store_paths().unwrap();
    assert!(first_paths.iter().all(|path| !second_paths.contains(path)));
    first.delete_from_store().unwrap();
    second.delete_from_store().unwrap();
    assert!(!is_valid_path(&first.out_path).unwrap());
}

/// Builds an isolated fixture, pushes its closure to a fresh cache and deletes it from the store.
fn pushed_and_deleted(fixture: Fixture) -> (fixtures::Built, BinaryCache) {
    let built = fixture.build_isolated().unwrap();
    let cache = BinaryCache::create().unwrap();
    cache.push(&[&built.out_path]).unwrap();
    built.delete_from_store().unwrap();
    for path in &built.closure {
        assert!(
            !is_valid_path(path).unwrap(),
            "{} still valid",
            path.display()
        );
    }
    (built, cache)
}

/// `nix-store --realise` of `out_path` through the daemon, substituting from the cache at `url`.
fn substitute(
    out_path: &Path,
    url: &str,
    public_key: &str,
    extra_options: &[(&str, &str)],
) -> Result<String, Error> {
    NixCommand::nix_store()
        .options(substitution_options(url, public_key))
        .options(extra_options.iter().copied())
        .arg("--realise")
        .arg(out_path)
        .run()
}

#[test]
fn deleted_closure_is_substituted_back_from_the_local_http_cache() {
    let (built, cache) = pushed_and_deleted(Fixture::Diamond);
    let server = cache.serve().unwrap();
    substitute(&built.out_path, &server.url(), cache.public_key(), &[]).unwrap();
    for path in &built.closure {
        assert!(
            is_valid_path(path).unwrap(),
            "{} not substituted",
            path.display()
        );
    }
    let output = Command::new(built.main_program_path().unwrap())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    built.delete_from_store().unwrap();
}

#[test]
fn substitution_signed_by_an_untrusted_key_is_refused() {
    let (built, cache) = pushed_and_deleted(Fixture::Diamond);
    let server = cache.serve().unwrap();
    let other_key = SigningKey::generate("containix-other-1", &cache.scratch_dir()).unwrap();
    let err = substitute(&built.out_path, &server.url(), &other_key.public_key, &[]).unwrap_err();
    assert!(
        // "is not signed" (Nix 2.8) or "as it's not signed" (Nix 2.26) by any of the keys.
        stderr_of(&err).contains("not signed by any of the keys in 'trusted-public-keys'"),
        "{err}"
    );
    assert!(!is_valid_path(&built.out_path).unwrap());
    // The same cache with its own key works: the refusal was about the key.
    substitute(&built.out_path, &server.url(), cache.public_key(), &[]).unwrap();
    built.delete_from_store().unwrap();
}

#[test]
fn substitution_fails_when_the_cache_is_stopped() {
    let (built, cache) = pushed_and_deleted(Fixture::Diamond);
    let server = cache.serve().unwrap();
    let url = server.url();
    drop(server);
    // One attempt: Nix would otherwise retry the refused connection with back-off.
    let once = [("download-attempts", "1")];
    let err = substitute(&built.out_path, &url, cache.public_key(), &once).unwrap_err();
    assert!(stderr_of(&err).contains("unable to download"), "{err}");
    assert!(!is_valid_path(&built.out_path).unwrap());
    built.delete_from_store().unwrap();
}

#[test]
fn synthetic_graph_of_2500_paths_imports_as_one_closure() {
    let seed = u64::from(std::process::id()) << 32 | 0x2500;
    let graph = SyntheticGraph::plan(2500, seed).unwrap();
    graph.import().unwrap();
    let closure = fixtures::query_requisites(&[graph.root()]).unwrap();
    assert_eq!(closure.len(), 2500);
    let data = std::fs::read_to_string(graph.paths[10].path.join("data")).unwrap();
    assert!(
        data.starts_with("synthetic store path /nix/store/"),
        "{data}"
    );
    graph.delete_from_store().unwrap();
    assert!(!is_valid_path(graph.root()).unwrap());
}
