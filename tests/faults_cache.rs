//! Binary cache faults on a real node: pods whose closure must be substituted, through
//! containerd's CRI, the shim and a nix-daemon of the test's own, from a cache that is down,
//! stalls half-way through a NAR, serves a corrupt NAR, or serves narinfos without a signature
//! or with a bad one under `require-sigs`. Each fault fails the start with a `containix:` error
//! naming the store path and what went wrong, leaves nothing behind (no file under the state
//! dir, mount, worker, daemon connection, partly substituted path), and the next start once the
//! cache is healthy runs the pod.
//!
//! One node for the whole file: the faults run one after the other on it.

use containix_testkit::faulty_cache::CacheFault;
use containix_tests::node_faults::{
    CRI_DEADLINE, RESOLUTION_DEADLINE, SubstitutingNode, assert_nothing_left, attempt,
    containix_message,
};
use containix_tests::stop_cleanly;

/// Starts a pod under `fault`: the error its events would show. Checks that containix named
/// the closure's root, left nothing behind and did not substitute anything.
async fn failed_start(node: &mut SubstitutingNode, fault: CacheFault, pod: &str) -> String {
    node.cache.set_fault(fault).unwrap();
    let pod = node.pod(pod).await;
    let error = attempt(&pod, 0, CRI_DEADLINE)
        .await
        .expect_err("the start must fail while the cache is faulty");
    let message = containix_message(&error)
        .unwrap_or_else(|| panic!("{fault:?}: no containix message in {error}"))
        .to_owned();
    eprintln!("{fault:?}: {message}");
    let root = node.built.out_path.display().to_string();
    assert!(message.contains(&root), "{fault:?}: {message}");
    assert_nothing_left(&node.node, &format!("{fault:?}, after the failed start")).await;
    node.assert_no_daemon_work(&format!("{fault:?}")).await;
    assert!(!node.substituted(), "{fault:?}: the closure became valid");
    node.cache.set_fault(CacheFault::Healthy).unwrap();
    node.retry_succeeds_and_clean_up(pod, 1, &format!("{fault:?}"))
        .await;
    message
}

#[tokio::test]
async fn cache_faults_fail_the_start_clearly_leave_nothing_and_a_retry_succeeds() {
    let mut node = SubstitutingNode::start().await;
    let root = node.built.out_path.display().to_string();
    let url = node.cache.url();

    // Down: nothing listens.
    let down = failed_start(&mut node, CacheFault::Down, "cache-down").await;
    assert!(
        down.contains(&format!("{root} could not be substituted")),
        "{down}"
    );
    assert!(down.contains(&url), "{down}");

    // Stalled half-way through the NAR: the resolution's deadline ends it.
    let stalled = failed_start(&mut node, CacheFault::StallNar, "cache-stalled").await;
    assert!(stalled.contains(RESOLUTION_DEADLINE), "{stalled}");
    assert!(
        stalled.contains(&format!("substituting {root}")),
        "{stalled}"
    );

    // A NAR whose contents changed on the way: Nix checks the hash.
    let corrupt = failed_start(&mut node, CacheFault::CorruptNar, "cache-corrupt").await;
    assert!(corrupt.contains("hash mismatch"), "{corrupt}");

    // Under require-sigs, a path without a signature, or with one that does not verify.
    for fault in [CacheFault::MissingSignature, CacheFault::BadSignature] {
        let unsigned = failed_start(&mut node, fault, "cache-unsigned").await;
        assert!(
            unsigned.contains("is not signed by any of the keys in 'trusted-public-keys'"),
            "{fault:?}: {unsigned}"
        );
    }

    stop_cleanly(node.node).await;
}
