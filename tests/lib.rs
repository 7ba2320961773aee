//! Integration and end-to-end tests of containix. Each test file is a `[[test]]` target in
//! `tests/Cargo.toml`; the real node they run against comes from `containix-testkit`. This
//! library holds the checks several test files share.

pub mod manifests;
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

/// Words a message must not say twice in a row of this many: a longer repeat is a clause said
/// twice (`connecting to the Nix daemon at X: cannot connect to the Nix daemon at X`).
pub const REPEAT_WORDS: usize = 4;

/// The first run of [`REPEAT_WORDS`] words that `message` says twice (not overlapping), ignoring
/// case and the punctuation around words; `None` when every clause is said once.
pub fn repeated_phrase(message: &str) -> Option<String> {
    let words: Vec<String> = message
        .split_whitespace()
        .map(|word| {
            word.trim_matches(|c: char| "`'\"()[]{},;:.".contains(c))
                .to_lowercase()
        })
        .filter(|word| !word.is_empty())
        .collect();
    let n = REPEAT_WORDS;
    for first in 0..words.len().saturating_sub(n) {
        for second in first + n..=words.len() - n {
            if words[first..first + n] == words[second..second + n] {
                return Some(words[first..first + n].join(" "));
            }
        }
    }
    None
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

/// Checks `output`, what `containix <command> --json` printed, against the schema docs/json.md
/// gives in its section `` ## `containix <command> --json` `` (the first `json` block there).
/// tests/doc_commands.rs validates the documented runs; this lets other tests validate outputs
/// the docs cannot produce, such as a node's status while a build runs.
pub fn assert_matches_documented_json(command: &str, output: &serde_json::Value) {
    let text =
        std::fs::read_to_string(containix_testkit::fixtures::repo_root().join("docs/json.md"))
            .unwrap();
    let heading = format!("## `containix {command} --json`");
    let section = text
        .split(&heading)
        .nth(1)
        .unwrap_or_else(|| panic!("docs/json.md has no section {heading}"));
    let section = section.split("\n## ").next().unwrap();
    let schema = section
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .unwrap_or_else(|| panic!("{heading}: no json block"));
    let schema: serde_json::Value = serde_json::from_str(schema).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(output)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "containix {command} --json does not match docs/json.md: {errors:#?}\n{output:#}"
    );
}
