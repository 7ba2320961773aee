//! The daemon client against the real nix-daemon of this machine (Debian's Nix 2.8.0, protocol
//! 1.34), and in the version matrix against Nix 2.26 (protocol 1.37; `scripts/matrix.sh`):
//! handshake, queries, roots, errors, and closure resolution compared with `nix-store` and
//! `nix path-info` through the same daemon.

use containix_tests::assert_closure_matches_nix_path_info;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use containix_core::store::closure_query::{ClosureQueryError, query_closure};
use containix_core::store::daemon::{
    BuildMode, BuildStatus, DaemonClient, DaemonError, DaemonOptions, DerivedPath, ProtocolVersion,
};
use containix_core::store::store_path::StorePath;
use containix_testkit::nix_cli::NixCommand;

/// The socket of the daemon under test.
fn daemon_socket() -> PathBuf {
    containix_testkit::nix_daemon::NixDaemon::start_or_reuse()
        .expect("the test node's nix-daemon")
        .socket_path()
        .to_owned()
}

async fn connect() -> DaemonClient {
    DaemonClient::connect(daemon_socket()).await.unwrap()
}

/// Runs a command and returns its stdout, failing the test with its stderr otherwise.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {program}: {err}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Adds a small closure to the store without building or network: `c` refers to `b` and `a`,
/// `b` refers to `a`. The contents are unique per call.
fn make_closure() -> StorePath {
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let expr = format!(
        r#"let a = builtins.toFile "containix-test-a" "hello {nonce}";
               b = builtins.toFile "containix-test-b" "uses ${{a}}";
           in builtins.toFile "containix-test-c" "${{b}} and ${{a}}""#
    );
    let out = run(
        "nix-instantiate",
        &["--eval", "--read-write-mode", "-E", &expr],
    );
    StorePath::parse(out.trim().trim_matches('"')).unwrap()
}

/// A well-formed path that is not in the store.
fn absent_path() -> StorePath {
    StorePath::parse("/nix/store/00000000000000000000000000000000-containix-absent").unwrap()
}

#[tokio::test]
async fn handshake_reports_version_and_trust() {
    let client = connect().await;
    let info = client.info();
    assert!(info.protocol >= ProtocolVersion::new(1, 34), "{info:?}");
    // The daemon's version as Nix's own client reads it from the same daemon (on stderr).
    let ping = NixCommand::nix().args(["store", "ping"]).argv();
    let output = Command::new("nix")
        .args(ping)
        .env("NIX_REMOTE", "daemon")
        .output()
        .unwrap();
    assert!(output.status.success(), "nix store ping: {output:?}");
    let ping = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    let expected = ping
        .lines()
        .find_map(|line| line.strip_prefix("Version: "))
        .unwrap_or_else(|| panic!("no version in `nix store ping`: {ping}"))
        .trim();
    assert_eq!(info.nix_version.as_deref(), Some(expected));
    // The versions the matrix runs, and the protocol each one negotiates with this client.
    let negotiated = match expected.split('.').take(2).collect::<Vec<_>>()[..] {
        ["2", "8"] => Some(ProtocolVersion::new(1, 34)),
        ["2", "26"] => Some(ProtocolVersion::new(1, 38)),
        _ => None,
    };
    if let Some(negotiated) = negotiated {
        assert_eq!(info.protocol, negotiated, "Nix {expected}");
    }
    println!("nix-daemon {expected}, protocol {}", info.protocol);
    assert!(!client.is_broken());
}

#[tokio::test]
async fn closure_matches_nix_store_and_path_info() {
    let root = make_closure();
    let mut client = connect().await;
    let closure = query_closure(&mut client, std::slice::from_ref(&root))
        .await
        .unwrap();

    let expected: BTreeSet<String> = run("nix-store", &["-qR", root.as_str()])
        .lines()
        .map(str::to_owned)
        .collect();
    let got: BTreeSet<String> = closure.paths().map(|p| p.to_string()).collect();
    assert_eq!(got, expected);
    assert_eq!(closure.len(), 3);

    assert_closure_matches_nix_path_info(&closure);
    assert!(!client.is_broken());
}

#[tokio::test]
async fn absent_paths_are_none_and_validity_queries_agree() {
    let root = make_closure();
    let absent = absent_path();
    let mut client = connect().await;
    assert_eq!(client.query_path_info(&absent).await.unwrap(), None);
    assert!(client.query_path_info(&root).await.unwrap().is_some());
    assert!(client.is_valid_path(&root).await.unwrap());
    assert!(!client.is_valid_path(&absent).await.unwrap());
    let valid = client
        .query_valid_paths(&[root.clone(), absent.clone()], false)
        .await
        .unwrap();
    assert_eq!(valid, BTreeSet::from([root.clone()]));

    let pipelined = client
        .query_path_infos(&[absent.clone(), root.clone(), absent])
        .await
        .unwrap();
    assert_eq!(pipelined.len(), 3);
    assert!(pipelined[0].is_none() && pipelined[2].is_none());
    assert_eq!(pipelined[1].as_ref().unwrap().path, root);

    let err = query_closure(&mut client, &[root, absent_path()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClosureQueryError::InvalidRoot(ref p) if *p == absent_path()),
        "{err}"
    );
    assert!(!client.is_broken());
}

#[tokio::test]
async fn temp_and_indirect_roots_are_accepted() {
    let root = make_closure();
    let mut client = connect().await;
    client.add_temp_root(&root).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("containix-root");
    std::os::unix::fs::symlink(root.as_path(), &link).unwrap();
    client.add_indirect_root(&link).await.unwrap();
    let roots = run("nix-store", &["--gc", "--print-roots"]);
    let listed = format!("{} -> {}", link.display(), root);
    assert!(
        roots.lines().any(|line| line == listed),
        "{listed} not in:\n{roots}"
    );
    let found = client.find_roots().await.unwrap();
    assert!(
        found
            .iter()
            .any(|r| Path::new(&r.link) == link && r.path == root),
        "{found:?}"
    );
    drop(dir);
}

#[tokio::test]
async fn daemon_errors_are_typed_and_leave_the_connection_usable() {
    let mut client = connect().await;
    let mut options = DaemonOptions {
        use_substitutes: false,
        ..DaemonOptions::default()
    };
    options
        .overrides
        .insert("substituters".into(), String::new());
    client.set_options(&options).await.unwrap();

    let absent = absent_path();
    let err = client
        .build_paths(&[DerivedPath::Opaque(absent.clone())], BuildMode::Normal)
        .await
        .unwrap_err();
    match &err {
        DaemonError::Daemon { message, .. } => {
            assert!(message.contains(absent.as_str()), "{message}")
        }
        other => panic!("expected a daemon error, got {other:?}"),
    }
    assert!(!err.is_connection_lost());
    assert!(!client.is_broken());
    assert!(!client.is_valid_path(&absent).await.unwrap());

    let results = client
        .build_paths_with_results(&[DerivedPath::Opaque(absent.clone())], BuildMode::Normal)
        .await;
    // Nix 2.8 reports the missing path either as a failed result or as an error; both keep
    // the connection usable.
    match results {
        Ok(results) => assert!(!results[0].1.status.is_success(), "{results:?}"),
        Err(err) => assert!(!err.is_connection_lost(), "{err}"),
    }
    assert!(client.is_valid_path(&make_closure()).await.unwrap());
}

/// Instantiates a derivation whose builder is a static busybox added to the store; its output
/// refers to the busybox path. Returns the .drv path.
fn make_derivation() -> StorePath {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("/bin/busybox", dir.path().join("busybox")).unwrap();
    let nonce = format!("{}-{}", std::process::id(), rand_suffix());
    let expr = format!(
        r#"let bb = builtins.path {{ path = "{dir}"; name = "containix-busybox"; }};
           in derivation {{
             name = "containix-test-build-{nonce}";
             system = builtins.currentSystem;
             builder = "${{bb}}/busybox";
             args = [ "sh" "-c" "echo ${{bb}} > $out" ];
           }}"#,
        dir = dir.path().display()
    );
    let out = run("nix-instantiate", &["-E", &expr]);
    StorePath::parse(out.trim()).unwrap()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test]
async fn builds_report_results_and_progress() {
    let drv = make_derivation();
    let mut client = connect().await;
    let mut options = DaemonOptions::default();
    options
        .overrides
        .insert("substituters".into(), String::new());
    client.set_options(&options).await.unwrap();
    let progress = client.progress();
    let wanted = DerivedPath::built(drv.clone(), ["out"]).unwrap();
    let results = client
        .build_paths_with_results(std::slice::from_ref(&wanted), BuildMode::Normal)
        .await
        .unwrap();
    assert_eq!(results.len(), 1);
    let (built, result) = &results[0];
    assert_eq!(built, &wanted);
    assert_eq!(result.status, BuildStatus::Built, "{result:?}");
    assert_eq!(result.times_built, 1);
    assert!(
        result.built_outputs.keys().any(|id| id.ends_with("!out")),
        "{result:?}"
    );
    let snapshot = progress.borrow().clone();
    assert!(snapshot.paths_done >= 1, "{snapshot:?}");

    let output =
        StorePath::parse(run("nix-store", &["-q", "--outputs", drv.as_str()]).trim()).unwrap();
    let closure = query_closure(&mut client, std::slice::from_ref(&output))
        .await
        .unwrap();
    assert_eq!(
        closure.len(),
        2,
        "{:?}",
        closure.paths().collect::<Vec<_>>()
    );
    assert!(closure.paths().any(|p| p.name() == "containix-busybox"));

    // Building again finds the output valid.
    let again = client
        .build_paths_with_results(&[wanted], BuildMode::Normal)
        .await
        .unwrap();
    assert_eq!(again[0].1.status, BuildStatus::AlreadyValid);
}
