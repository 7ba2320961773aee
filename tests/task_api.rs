//! The parts of the shim's Task API a kubelet notices, through containerd's CRI on the real
//! node, on one containix pod: a container killed for exceeding its memory limit reports
//! `OOMKilled`; Task.Pids names the exec id of an exec process; StopContainer returns only once
//! the exit is recorded, so RemoveContainer right after it works.

use containix_core::image::oci_image::EMPTY_IMAGE_NAME;
use containix_testkit::containerd::{CONTAINIX_RUNTIME_HANDLER, Containerd, ContainerdOptions};
use containix_testkit::cri::{ContainerSpec, PodSandboxSpec};
use containix_testkit::fixtures::{self, Built};
use containix_testkit::pod::CriPod;
use containix_tests::{LIMIT, eventually, stop_cleanly};

/// The memory limit of the container that outgrows it.
const MEMORY_LIMIT: i64 = 32 << 20;

/// A shell that doubles a string until the OOM killer stops it: anonymous memory, counted
/// against the container's memory cgroup.
const OUTGROW_MEMORY: &str = "x=0123456789abcdef; while :; do x=$x$x; done";

/// How many running containers are stopped and at once removed.
const STOP_REMOVE_ROUNDS: usize = 5;

async fn start_node() -> Containerd {
    let options = ContainerdOptions {
        containix_policy: "allowed-flake-prefixes = [\"path:/nix/store/\"]\nrealise = \"build\"\n"
            .to_owned(),
        ..ContainerdOptions::default()
    };
    assert!(
        options.shim_binary.is_some(),
        "containerd-shim-containix-v1 not found: run `cargo build --workspace --bins` first"
    );
    Containerd::start(options)
        .await
        .unwrap_or_else(|e| panic!("starting the test containerd: {e}"))
}

/// The pod under test and how its containers call a busybox applet.
struct Subject {
    pod: CriPod,
    busybox: String,
}

impl Subject {
    /// The argv of busybox applet `argv`.
    fn argv(&self, argv: &[&str]) -> Vec<String> {
        std::iter::once(self.busybox.clone())
            .chain(argv.iter().map(|&arg| arg.to_owned()))
            .collect()
    }

    /// A container `name` of this pod running busybox applet `argv`.
    fn container(&self, name: &str, argv: &[&str]) -> ContainerSpec {
        ContainerSpec::new(name, EMPTY_IMAGE_NAME).command(self.argv(argv))
    }
}

fn busybox_of(built: &Built) -> String {
    let dir = built.closure_member("busybox").unwrap();
    format!("{}/busybox", dir.display())
}

#[tokio::test]
async fn a_kubelet_sees_oom_kills_exec_pids_and_stopped_containers() {
    let hello = fixtures::example_hello().unwrap();
    let node = start_node().await;
    let subject = Subject {
        pod: CriPod::run(
            &node,
            PodSandboxSpec::new("task-api").annotation("containix.dev/flake", &hello.flake_ref()),
            CONTAINIX_RUNTIME_HANDLER,
        )
        .await
        .unwrap(),
        busybox: busybox_of(&hello),
    };
    // One container runs throughout, so the closure's store view outlives each short-lived
    // container below and every start reuses it.
    let holder = subject.container("holds-the-view", &["sleep", "1000"]);
    subject.pod.start(&holder).await.unwrap();

    oom_killed_is_the_reason(&subject).await;
    pids_name_exec_processes(&node, &subject).await;
    stop_then_remove_at_once(&subject).await;

    subject.pod.remove(LIMIT).await.unwrap();
    stop_cleanly(node).await;
}

/// A container past its memory limit is OOM-killed, and CRI's container status says so.
async fn oom_killed_is_the_reason(subject: &Subject) {
    let spec = subject
        .container("outgrows", &["sh", "-c", OUTGROW_MEMORY])
        .memory_limit(MEMORY_LIMIT);
    let id = subject.pod.start(&spec).await.unwrap();
    let status = subject.pod.cri.wait_for_exit(&id, LIMIT).await.unwrap();
    assert_eq!(status.exit_code, 128 + 9, "{status:?}");
    // containerd applies TaskOOM from its event stream and the exit from the TaskExit event:
    // the reason may land just after the exit.
    eventually("the OOMKilled reason", async || {
        subject.pod.cri.container_status(&id).await.unwrap().reason == "OOMKilled"
    })
    .await;
    subject.pod.cri.remove_container(&id).await.unwrap();
}

/// `ctr task ps` (Task.Pids) lists init without details and an exec process with its exec id.
async fn pids_name_exec_processes(node: &Containerd, subject: &Subject) {
    let spec = subject.container("execs", &["sleep", "1000"]);
    let id = subject.pod.start(&spec).await.unwrap();
    let exec = {
        let cri = subject.pod.cri.clone();
        let id = id.clone();
        let argv = subject.argv(&["sleep", "1000"]);
        tokio::spawn(async move {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            cri.exec_sync(&id, &argv, 0).await
        })
    };
    let mut listing = String::new();
    eventually("the exec in Task.Pids", async || {
        listing = task_ps(node, &id).await;
        listing.lines().count() == 3
    })
    .await;
    // The header, then init and the exec in either order. ctr prints the exec's
    // ProcessDetails: `&ProcessDetails{ExecID:…}` (containerd 1.x) or `exec_id:"…"` (2.x).
    let mut infos: Vec<&str> = listing
        .lines()
        .skip(1)
        .map(|line| line.split_once(char::is_whitespace).unwrap().1.trim())
        .collect();
    infos.sort_by_key(|info| *info != "-");
    assert_eq!(infos[0], "-", "init has no details:\n{listing}");
    assert!(
        infos[1].contains("ExecID:") || infos[1].contains("exec_id:"),
        "the exec is named by its exec id:\n{listing}"
    );

    subject.pod.cri.stop_container(&id, 0).await.unwrap();
    // The exec dies with the container; ExecSync then answers one way or another.
    let _ = tokio::time::timeout(LIMIT, exec).await.unwrap();
    subject.pod.cri.remove_container(&id).await.unwrap();
}

/// `ctr task ps CONTAINER` in the node's CRI namespace.
async fn task_ps(node: &Containerd, container: &str) -> String {
    let out = tokio::process::Command::new("ctr")
        .arg("--address")
        .arg(node.socket())
        .args(["--namespace", "k8s.io", "task", "ps", container])
        .output()
        .await
        .expect("running ctr");
    assert!(
        out.status.success(),
        "ctr task ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// StopContainer of a running container returns once the exit is recorded: RemoveContainer
/// right after it works, every time.
async fn stop_then_remove_at_once(subject: &Subject) {
    for round in 0..STOP_REMOVE_ROUNDS {
        let spec = subject.container(&format!("stopped-{round}"), &["sleep", "1000"]);
        let id = subject.pod.start(&spec).await.unwrap();
        subject.pod.cri.stop_container(&id, 0).await.unwrap();
        let status = subject.pod.cri.container_status(&id).await.unwrap();
        assert_eq!(status.exit_code, 128 + 9, "round {round}: {status:?}");
        subject
            .pod
            .cri
            .remove_container(&id)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
}
