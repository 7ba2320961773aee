//! The nix-daemon killed in the middle of a pod's start, on a real node: containerd's CRI,
//! the shim, and a nix-daemon of the test's own (the machine's shared daemon is never killed)
//! substituting from the testkit's cache. The cache holds the daemon at the chosen moment: a
//! narinfo it never answers (the daemon is looking the path up) or a NAR it stops sending
//! half-way (the daemon is writing the path). Then the daemon, listener and connection workers,
//! is killed with SIGKILL, as a crash or a service restart would. The start fails with a
//! `containix:` error naming what the daemon was doing, nothing is left on the node or in the
//! store, and once the daemon is back the next start runs the pod.
//!
//! One node for the whole file: the faults run one after the other on it.

use std::time::Duration;

use containix_testkit::faulty_cache::CacheFault;
use containix_tests::node_faults::{
    CRI_DEADLINE, SubstitutingNode, assert_nothing_left, attempt, containix_message,
};
use containix_tests::stop_cleanly;

/// Starts a pod while the cache holds the daemon with `stall`, kills the daemon once it is
/// held: the error the pod's events would show. Then checks what is left, restarts the daemon
/// and retries.
async fn daemon_killed_during(node: &mut SubstitutingNode, stall: CacheFault, pod: &str) -> String {
    node.cache.set_fault(stall).unwrap();
    let pod = node.pod(pod).await;
    let stalls = node.cache.stalls();
    let (result, ()) = tokio::join!(attempt(&pod, 0, CRI_DEADLINE), async {
        while node.cache.stalls() == stalls {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        node.daemon.kill().unwrap();
    });
    let error = result.expect_err("the start must fail when the daemon dies");
    let message = containix_message(&error)
        .unwrap_or_else(|| panic!("{stall:?}: no containix message in {error}"))
        .to_owned();
    eprintln!("daemon killed during {stall:?}: {message}");
    assert_nothing_left(&node.node, &format!("{stall:?}, after the failed start")).await;
    assert!(!node.substituted(), "{stall:?}: the closure became valid");

    node.cache.set_fault(CacheFault::Healthy).unwrap();
    node.daemon.restart().unwrap();
    node.retry_succeeds_and_clean_up(pod, 1, &format!("{stall:?}"))
        .await;
    message
}

#[tokio::test]
async fn a_daemon_killed_mid_query_or_mid_substitution_fails_the_start_clearly_and_a_retry_succeeds()
 {
    let mut node = SubstitutingNode::start().await;
    let root = node.built.out_path.display().to_string();

    // Mid-query: the daemon is looking the path up in the cache (its narinfo).
    let query = daemon_killed_during(&mut node, CacheFault::StallNarinfo, "daemon-query").await;
    assert!(
        query.contains("the Nix daemon closed the connection"),
        "{query}"
    );
    assert!(query.contains(&format!("substituting {root}")), "{query}");

    // Mid-substitution: the daemon is half-way through writing the path.
    let substitution = daemon_killed_during(&mut node, CacheFault::StallNar, "daemon-nar").await;
    assert!(
        substitution.contains("the Nix daemon closed the connection"),
        "{substitution}"
    );
    assert!(
        substitution.contains(&format!("substituting {root}")),
        "{substitution}"
    );

    stop_cleanly(node.node).await;
}
