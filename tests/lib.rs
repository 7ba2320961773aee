//! Integration and end-to-end tests of containix. Each test file is a `[[test]]` target in
//! `tests/Cargo.toml`; the real node they run against comes from `containix-testkit`. This
//! library holds the checks several test files share.

pub mod manifests;
pub mod node_faults;
pub mod source_scan;

use std::path::PathBuf;
use std::time::Duration;

use std::collections::{BTreeMap, BTreeSet};

use containix_core::store::closure::Closure;
use containix_core::store::store_path::StorePath;
use containix_testkit::containerd::{Containerd, instance_processes, mounts_under};
use containix_testkit::nix_cli::NixCommand;
use containix_testkit::workspace_binary::find_workspace_binary;

/// The built `containix` CLI: `$CONTAINIX_BIN`, else the binary in this test executable's
/// target dir (`cargo build --workspace --bins` puts it there).
pub fn containix_bin() -> PathBuf {
    workspace_bin("containix", "CONTAINIX_BIN")
}

/// The built CSI plugin: `$CONTAINIX_CSI_BIN`, else the binary in the target dir.
pub fn csi_bin() -> PathBuf {
    workspace_bin("containix-csi", "CONTAINIX_CSI_BIN")
}

/// A binary of the workspace ([`find_workspace_binary`]), which the test cannot do without.
fn workspace_bin(name: &str, env_var: &str) -> PathBuf {
    find_workspace_binary(name, env_var).unwrap_or_else(|| {
        panic!("{name} not found in the target dir; run `cargo build --workspace --bins`")
    })
}

/// Hang guard for things that should happen promptly; not a performance assertion.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Polls `check` until it holds, for at most [`LIMIT`].
pub async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Processes of the node other than containerd itself (shims, runc, containers).
pub fn shim_side_processes(node: &Containerd) -> Vec<String> {
    node.leftover_processes()
        .into_iter()
        .map(|p| p.command)
        .filter(|command| !command.starts_with("containerd "))
        .collect()
}

/// Waits for the shims to go, then stops the node and checks it left nothing behind.
pub async fn stop_cleanly(node: Containerd) {
    eventually("the shims to exit", async || {
        shim_side_processes(&node).is_empty()
    })
    .await;
    assert_eq!(
        node.leftover_mounts(),
        Vec::<PathBuf>::new(),
        "mounts left behind"
    );
    let dir = node.layout().dir().to_owned();
    let report = node.stop().await.unwrap();
    assert!(report.is_clean(), "containerd needed forcing: {report:?}");
    assert_eq!(mounts_under(&dir), Vec::<PathBuf>::new());
    assert_eq!(instance_processes(&dir), vec![]);
}

/// Checks every member of `closure` against `nix path-info --json -r` of its roots: the same
/// members, NAR sizes, NAR hashes, references and content addresses.
pub fn assert_closure_matches_nix_path_info(closure: &Closure) {
    let json = NixCommand::nix()
        .args(["path-info", "--json", "-r"])
        .args(closure.roots().iter().map(StorePath::as_str))
        .run()
        .unwrap();
    let infos: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let by_path: BTreeMap<&str, &serde_json::Value> = infos
        .iter()
        .map(|info| (info["path"].as_str().unwrap(), info))
        .collect();
    assert_eq!(by_path.len(), closure.len());
    for info in closure.infos() {
        let nix = by_path[info.path.as_str()];
        let path = &info.path;
        assert_eq!(info.nar_size, nix["narSize"].as_u64().unwrap(), "{path}");
        let hash = nar_hash_hex(nix["narHash"].as_str().unwrap());
        assert_eq!(info.nar_hash, hash, "{path}");
        let references: BTreeSet<&str> = nix["references"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let ours: BTreeSet<&str> = info.references.iter().map(StorePath::as_str).collect();
        assert_eq!(ours, references, "{path}");
        assert_eq!(
            info.content_address.as_deref(),
            nix["ca"].as_str(),
            "{path}"
        );
    }
}

/// A NAR hash as `nix path-info --json` prints it (Nix 2.8: SRI `sha256-<base64>`; newer:
/// `sha256:<nix32>` or hex) as the 64 hex digits the daemon protocol carries.
pub fn nar_hash_hex(text: &str) -> String {
    let bytes = if let Some(b64) = text.strip_prefix("sha256-") {
        base64_decode(b64)
    } else {
        let digest = text.strip_prefix("sha256:").expect("a sha256 hash");
        if digest.len() == 64 {
            return digest.to_owned();
        }
        containix_core::store::nix32::decode(digest, 32).unwrap()
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut bits, mut count, mut out) = (0u32, 0, Vec::new());
    for c in text.bytes().filter(|&c| c != b'=') {
        let value = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        bits = bits << 6 | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}
