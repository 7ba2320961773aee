//! `containerd-shim-containix-v1` against a real containerd: through `ctr` (no CRI) and
//! through CRI with the `containix` runtime handler. The shim must behave like containerd's
//! runc shim: output, exit codes, exec, kill, delete, and nothing left behind.
//!
//! Build the shim first: `cargo build -p containix-shim` (the testkit finds it next to the
//! test binary, or at `$CONTAINIX_SHIM_BIN`).

use std::process::Output;

use containix_testkit::containerd::{
    CONTAINIX_RUNTIME_HANDLER, CONTAINIX_RUNTIME_TYPE, Containerd, ContainerdOptions,
};
use containix_testkit::cri::proto::ContainerState;
use containix_testkit::cri::{ContainerLog, ContainerSpec, PodSandboxSpec};
use containix_tests::{LIMIT, eventually, shim_side_processes, stop_cleanly};

/// The namespace the testkit imports its images into.
const NAMESPACE: &str = "k8s.io";

async fn start_node() -> Containerd {
    let options = ContainerdOptions::default();
    assert!(
        options.shim_binary.is_some(),
        "containerd-shim-containix-v1 not found: run `cargo build -p containix-shim` first"
    );
    Containerd::start(options)
        .await
        .unwrap_or_else(|e| panic!("starting the test containerd: {e}"))
}

/// Runs `ctr` against the node, in the namespace holding the test images.
async fn ctr(node: &Containerd, args: &[&str]) -> Output {
    tokio::process::Command::new(node.ctr_binary())
        .arg("--address")
        .arg(node.socket())
        .args(["--namespace", NAMESPACE])
        .args(args)
        .output()
        .await
        .expect("running ctr")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn ctr_run_prints_output_and_propagates_exit_codes() {
    let node = start_node().await;
    let image = node.busybox_image();

    let out = ctr(
        &node,
        &[
            "run",
            "--rm",
            "--runtime",
            CONTAINIX_RUNTIME_TYPE,
            image,
            "echo-1",
            "echo",
            "hello",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "ctr run failed: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "hello\n");

    let out = ctr(
        &node,
        &[
            "run",
            "--rm",
            "--runtime",
            CONTAINIX_RUNTIME_TYPE,
            image,
            "exit-3",
            "sh",
            "-c",
            "echo to-stderr >&2; exit 3",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("to-stderr"),
        "{}",
        text(&out.stderr)
    );

    // Killed by a signal from outside: 128 + SIGKILL, as with the runc shim.
    let mut foreground = tokio::process::Command::new(node.ctr_binary())
        .arg("--address")
        .arg(node.socket())
        .args([
            "--namespace",
            NAMESPACE,
            "run",
            "--rm",
            "--runtime",
            CONTAINIX_RUNTIME_TYPE,
        ])
        .args([image, "killed", "sleep", "1000"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("the task to run", async || {
        text(&ctr(&node, &["task", "ls"]).await.stdout).contains("RUNNING")
    })
    .await;
    let out = ctr(&node, &["task", "kill", "--signal", "SIGKILL", "killed"]).await;
    assert!(out.status.success(), "ctr task kill: {}", text(&out.stderr));
    assert_eq!(foreground.wait().await.unwrap().code(), Some(137));

    stop_cleanly(node).await;
}

#[tokio::test]
async fn ctr_exec_kill_and_delete_leave_nothing_behind() {
    let node = start_node().await;
    let image = node.busybox_image();
    let out = ctr(
        &node,
        &[
            "run",
            "-d",
            "--runtime",
            CONTAINIX_RUNTIME_TYPE,
            image,
            "sleeper",
            "sleep",
            "1000",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "ctr run -d failed: {}",
        text(&out.stderr)
    );

    let out = ctr(
        &node,
        &[
            "task",
            "exec",
            "--exec-id",
            "e1",
            "sleeper",
            "sh",
            "-c",
            "echo from-exec; exit 4",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(4), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from-exec\n");

    // stdin reaches an exec, and its EOF ends it.
    let mut child = tokio::process::Command::new(node.ctr_binary())
        .arg("--address")
        .arg(node.socket())
        .args([
            "--namespace",
            NAMESPACE,
            "task",
            "exec",
            "--exec-id",
            "e2",
            "sleeper",
            "cat",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"through stdin\n").await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "through stdin\n");

    let out = ctr(&node, &["task", "ps", "sleeper"]).await;
    assert!(out.status.success(), "ctr task ps: {}", text(&out.stderr));

    let out = ctr(&node, &["task", "pause", "sleeper"]).await;
    assert!(
        out.status.success(),
        "ctr task pause: {}",
        text(&out.stderr)
    );
    let out = ctr(&node, &["task", "ls"]).await;
    assert!(
        text(&out.stdout).contains("PAUSED"),
        "{}",
        text(&out.stdout)
    );
    let out = ctr(&node, &["task", "resume", "sleeper"]).await;
    assert!(
        out.status.success(),
        "ctr task resume: {}",
        text(&out.stderr)
    );

    let out = ctr(&node, &["task", "metrics", "sleeper"]).await;
    assert!(
        out.status.success(),
        "ctr task metrics: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("pids.current"),
        "{}",
        text(&out.stdout)
    );

    let out = ctr(&node, &["task", "kill", "--signal", "SIGKILL", "sleeper"]).await;
    assert!(out.status.success(), "ctr task kill: {}", text(&out.stderr));
    eventually("the task to stop", async || {
        text(&ctr(&node, &["task", "ls"]).await.stdout).contains("STOPPED")
    })
    .await;
    let out = ctr(&node, &["task", "delete", "sleeper"]).await;
    assert!(
        out.status.success(),
        "ctr task delete: {}",
        text(&out.stderr)
    );
    let out = ctr(&node, &["container", "delete", "sleeper"]).await;
    assert!(
        out.status.success(),
        "ctr container delete: {}",
        text(&out.stderr)
    );

    stop_cleanly(node).await;
}

#[tokio::test]
async fn cri_pod_with_the_containix_handler_runs_execs_and_cleans_up() {
    let node = start_node().await;
    let cri = node.cri();
    let log_dir = node.create_pod_log_dir("containix-pod").unwrap();
    let config = PodSandboxSpec::new("containix-pod")
        .log_directory(&log_dir)
        .annotation("containix.dev/passthrough", "true")
        .build();
    let pod = cri
        .run_pod_sandbox(&config, CONTAINIX_RUNTIME_HANDLER)
        .await
        .unwrap();

    let hello = ContainerSpec::new("hello", node.busybox_image()).command(["echo", "hello"]);
    let hello_id = cri
        .create_container(&pod, &hello.build(), &config)
        .await
        .unwrap();
    cri.start_container(&hello_id).await.unwrap();
    let status = cri.wait_for_exit(&hello_id, LIMIT).await.unwrap();
    assert_eq!(status.exit_code, 0);
    let log = ContainerLog::read(&log_dir.join(hello.relative_log_path()))
        .await
        .unwrap();
    assert_eq!(log.stdout(), "hello");

    let fails = ContainerSpec::new("fails", node.busybox_image()).command(["sh", "-c", "exit 5"]);
    let fails_id = cri
        .create_container(&pod, &fails.build(), &config)
        .await
        .unwrap();
    cri.start_container(&fails_id).await.unwrap();
    assert_eq!(
        cri.wait_for_exit(&fails_id, LIMIT).await.unwrap().exit_code,
        5
    );

    let sleeper = ContainerSpec::new("sleeper", node.busybox_image()).command(["sleep", "1000"]);
    let sleeper_id = cri
        .create_container(&pod, &sleeper.build(), &config)
        .await
        .unwrap();
    cri.start_container(&sleeper_id).await.unwrap();
    let status = cri.container_status(&sleeper_id).await.unwrap();
    assert_eq!(status.state(), ContainerState::ContainerRunning);
    let result = cri
        .exec_sync(
            &sleeper_id,
            &["sh", "-c", "echo out; echo err >&2; exit 7"],
            30,
        )
        .await
        .unwrap();
    assert_eq!(text(&result.stdout), "out\n");
    assert_eq!(text(&result.stderr), "err\n");
    assert_eq!(result.exit_code, 7);

    // Every container of the pod is served by one shim process.
    let shims: Vec<String> = shim_side_processes(&node)
        .into_iter()
        .filter(|c| c.contains("containerd-shim-containix-v1"))
        .collect();
    assert_eq!(shims.len(), 1, "{shims:?}");

    for id in [&hello_id, &fails_id, &sleeper_id] {
        cri.stop_container(id, 0).await.unwrap();
        // StopContainer can return before the exit is recorded; RemoveContainer refuses a
        // running container.
        cri.wait_for_exit(id, LIMIT).await.unwrap();
        cri.remove_container(id).await.unwrap();
    }
    cri.stop_pod_sandbox(&pod).await.unwrap();
    cri.remove_pod_sandbox(&pod).await.unwrap();
    stop_cleanly(node).await;
}
