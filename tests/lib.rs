//! Integration and end-to-end tests of containix. Each test file is a `[[test]]` target in
//! `tests/Cargo.toml`; the real node they run against comes from `containix-testkit`. This
//! library holds the checks several test files share.

use std::path::PathBuf;
use std::time::Duration;

use containix_testkit::containerd::{Containerd, instance_processes, mounts_under};

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
