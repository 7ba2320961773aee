//! containix pods end to end, through containerd's CRI as a kubelet drives it, with the
//! `containix` runtime handler, the real shim, the real Nix daemon and real runc.
//!
//! The test node's shim reads a node policy the testkit writes (state dir inside the node's
//! temp dir); these tests allow `path:/nix/store/` refs so the offline fixture flakes resolve.
//! Note on CRI: containerd creates the task (and so runs the containix step) at StartContainer,
//! and CreateContainer never reaches the shim. The pod's annotations reach it first with the
//! sandbox at RunPodSandbox: annotations that are wrong in themselves are refused there, the
//! rest (a disallowed ref, an entrypoint the closure lacks) at StartContainer.

use std::path::{Path, PathBuf};

use containix_core::image::oci_image::EMPTY_IMAGE_NAME;
use containix_testkit::containerd::{CONTAINIX_RUNTIME_HANDLER, Containerd, ContainerdOptions};
use containix_testkit::cri::proto::{self, ContainerState};
use containix_testkit::cri::{ContainerLog, ContainerSpec, CriClient, PodSandboxSpec};
use containix_testkit::fixtures::{self, BUILD_LOG_LAST_WORDS, BUILD_LOG_MARKER, Built, Fixture};
use containix_tests::{LIMIT, eventually, shim_side_processes, stop_cleanly};

/// The policy every test node here gets, plus `extra` lines.
async fn start_node(extra: &str) -> Containerd {
    start_node_with_policy(format!(
        "allowed-flake-prefixes = [\"path:/nix/store/\"]\nrealise = \"build\"\n{extra}"
    ))
    .await
}

/// A test node whose shim reads `policy`.
async fn start_node_with_policy(policy: String) -> Containerd {
    let options = ContainerdOptions {
        containix_policy: policy,
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

struct Pod {
    cri: CriClient,
    id: String,
    config: proto::PodSandboxConfig,
    log_dir: PathBuf,
}

impl Pod {
    async fn run(node: &Containerd, name: &str, annotations: &[(&str, &str)]) -> Pod {
        Self::run_in(node, "default", name, annotations).await
    }

    /// A pod in Kubernetes namespace `namespace`.
    async fn run_in(
        node: &Containerd,
        namespace: &str,
        name: &str,
        annotations: &[(&str, &str)],
    ) -> Pod {
        Self::try_run_in(node, namespace, name, annotations)
            .await
            .unwrap()
    }

    /// RunPodSandbox with `annotations`: the pod, or the call's error.
    async fn try_run(
        node: &Containerd,
        name: &str,
        annotations: &[(&str, &str)],
    ) -> Result<Pod, String> {
        Self::try_run_in(node, "default", name, annotations).await
    }

    /// [`Pod::try_run`] in Kubernetes namespace `namespace`.
    async fn try_run_in(
        node: &Containerd,
        namespace: &str,
        name: &str,
        annotations: &[(&str, &str)],
    ) -> Result<Pod, String> {
        let log_dir = node.create_pod_log_dir(name).unwrap();
        let mut spec = PodSandboxSpec::new(name)
            .namespace(namespace)
            .log_directory(&log_dir);
        for (key, value) in annotations {
            spec = spec.annotation(key, value);
        }
        let config = spec.build();
        let cri = node.cri();
        let id = cri
            .run_pod_sandbox(&config, CONTAINIX_RUNTIME_HANDLER)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Pod {
            cri,
            id,
            config,
            log_dir,
        })
    }

    /// Creates and starts `spec`; the error of whichever call failed.
    async fn start(&self, spec: &ContainerSpec) -> Result<String, String> {
        let id = self
            .cri
            .create_container(&self.id, &spec.build(), &self.config)
            .await
            .map_err(|e| e.to_string())?;
        self.cri
            .start_container(&id)
            .await
            .map_err(|e| e.to_string())?;
        Ok(id)
    }

    /// Runs `spec` to completion: its exit code and log.
    async fn run_to_exit(&self, spec: &ContainerSpec) -> (i32, ContainerLog) {
        let id = self.start(spec).await.unwrap();
        let status = self.cri.wait_for_exit(&id, LIMIT).await.unwrap();
        let log = ContainerLog::read(&self.log_dir.join(spec.relative_log_path()))
            .await
            .unwrap();
        (status.exit_code, log)
    }

    /// What a kubelet does when the pod goes away.
    async fn remove(self) {
        self.stop_containers().await;
        self.cri.remove_pod_sandbox(&self.id).await.unwrap();
    }

    /// [`Pod::remove`] after the pod's shim died: RemovePodSandbox is retried until it succeeds,
    /// as the kubelet's garbage collection retries it. containerd 2.x can refuse the first
    /// attempt ("failed to delete task: ttrpc: closed") while it still cleans up after the
    /// dead shim itself; 1.6 and 1.7 accept it at once.
    async fn remove_after_shim_death(self) {
        self.stop_containers().await;
        let deadline = tokio::time::Instant::now() + LIMIT;
        while let Err(error) = self.cri.remove_pod_sandbox(&self.id).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "RemovePodSandbox kept failing: {error}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Stops and removes the pod's containers, then stops its sandbox.
    async fn stop_containers(&self) {
        for container in self.cri.list_containers(Some(&self.id)).await.unwrap() {
            self.cri.stop_container(&container.id, 0).await.unwrap();
            // StopContainer can return before the exit is recorded; RemoveContainer refuses a
            // running container.
            self.cri.wait_for_exit(&container.id, LIMIT).await.unwrap();
            self.cri.remove_container(&container.id).await.unwrap();
        }
        self.cri.stop_pod_sandbox(&self.id).await.unwrap();
    }
}

/// Files and symlinks under the node's containix state dir (GC roots, per-container state);
/// caches and locks of the resolver are not per-container and are left out.
fn containix_leftovers(node: &Containerd) -> Vec<PathBuf> {
    let state = node.layout().containix_state();
    ["gcroots", "containers"]
        .iter()
        .flat_map(|dir| files_under(&state.join(dir)))
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                files_under(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

fn busybox_of(built: &Built) -> String {
    let dir = built.closure_member("busybox").unwrap();
    format!("{}/busybox", dir.display())
}

#[tokio::test]
async fn a_flake_pod_runs_from_the_empty_image_execs_and_cleans_up() {
    let hello = fixtures::example_hello().unwrap();
    let node = start_node("").await;
    let pod = Pod::run(
        &node,
        "hello",
        &[("containix.dev/flake", &hello.flake_ref())],
    )
    .await;

    // No command: the package's meta.mainProgram runs.
    let (code, log) = pod
        .run_to_exit(&ContainerSpec::new("hello", EMPTY_IMAGE_NAME))
        .await;
    assert_eq!(code, 0, "{}", log.stderr());
    assert!(log.stdout().contains("Hello from containix!"), "{log:?}");

    // Exit codes propagate; the pod's command is looked up in the closure.
    let busybox = busybox_of(&hello);
    let fails = ContainerSpec::new("fails", EMPTY_IMAGE_NAME).command([
        busybox.as_str(),
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(pod.run_to_exit(&fails).await.0, 3);

    // ExecSync of a closure program by name: the root output's bin dir is on PATH.
    let idle =
        ContainerSpec::new("idle", EMPTY_IMAGE_NAME).command([busybox.as_str(), "sleep", "1000"]);
    let idle_id = pod.start(&idle).await.unwrap();
    assert_eq!(
        pod.cri.container_status(&idle_id).await.unwrap().state(),
        ContainerState::ContainerRunning
    );
    let result = pod.cri.exec_sync(&idle_id, &["hello"], 30).await.unwrap();
    assert_eq!(result.exit_code, 0);
    assert!(String::from_utf8_lossy(&result.stdout).contains("Hello from containix!"));
    // The store holds the closure and nothing else, read-only.
    let result = pod
        .cri
        .exec_sync(
            &idle_id,
            &[
                busybox.as_str(),
                "sh",
                "-c",
                "ls /nix/store; touch /nix/store/x",
            ],
            30,
        )
        .await
        .unwrap();
    let mut listed: Vec<String> = String::from_utf8_lossy(&result.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    listed.sort();
    let mut expected: Vec<String> = hello
        .closure
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
    assert_ne!(result.exit_code, 0, "writing under /nix/store must fail");

    assert!(
        !containix_leftovers(&node).is_empty(),
        "GC roots are held while the pod runs"
    );
    pod.remove().await;
    eventually("containix state to be released", async || {
        containix_leftovers(&node).is_empty()
    })
    .await;
    stop_cleanly(node).await;
}

#[tokio::test]
async fn store_paths_and_passthrough_containers_run_without_evaluation() {
    let hello = fixtures::example_hello().unwrap();
    // Any evaluation would fail: the node's nix command does not exist.
    let node = start_node("nix-command = \"/nonexistent/nix\"").await;
    let out = hello.out_path.display().to_string();
    let pod = Pod::run(
        &node,
        "mixed",
        &[
            ("containix.dev/store-paths", &out),
            ("containix.dev/entrypoint", "hello"),
            ("containix.dev/passthrough", "plain"),
        ],
    )
    .await;
    let (code, log) = pod
        .run_to_exit(&ContainerSpec::new("app", EMPTY_IMAGE_NAME))
        .await;
    assert_eq!(code, 0, "{}", log.stderr());
    assert!(log.stdout().contains("Hello from containix!"), "{log:?}");

    let plain = ContainerSpec::new("plain", node.busybox_image()).command(["echo", "plain"]);
    let (code, log) = pod.run_to_exit(&plain).await;
    assert_eq!((code, log.stdout()), (0, "plain".to_owned()));

    pod.remove().await;
    eventually("containix state to be released", async || {
        containix_leftovers(&node).is_empty()
    })
    .await;
    stop_cleanly(node).await;
}

#[tokio::test]
async fn bad_annotations_fail_the_pod_or_container_with_a_containix_message_and_leave_nothing() {
    let hello = fixtures::example_hello().unwrap();
    let node = start_node("").await;
    let out = hello.out_path.display().to_string();
    // (pod name, its annotations, what the error must mention)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

    // Wrong in themselves: refused with the sandbox, at RunPodSandbox.
    let at_sandbox: [Case<'_>; 3] = [
        (
            "unknown-key",
            vec![("containix.dev/flak", "github:org/app")],
            "containix.dev/flak",
        ),
        (
            "two-sources",
            vec![
                ("containix.dev/flake", "github:org/app"),
                ("containix.dev/store-paths", &out),
            ],
            "containix.dev/store-paths",
        ),
        (
            "bad-ref",
            vec![("containix.dev/flake", "github:org")],
            "containix.dev/flake",
        ),
    ];
    for (name, annotations, expected) in at_sandbox {
        let Err(err) = Pod::try_run(&node, name, &annotations).await else {
            panic!("{name}: the pod sandbox started");
        };
        assert!(err.contains("containix: "), "{name}: {err}");
        assert!(err.contains(expected), "{name}: {err}");
        let sandboxes = node.cri().list_pod_sandboxes().await.unwrap();
        assert!(
            sandboxes
                .iter()
                .all(|s| s.metadata.as_ref().is_none_or(|m| m.name != name)),
            "{name}: a sandbox is left: {sandboxes:?}"
        );
        assert_eq!(containix_leftovers(&node), Vec::<PathBuf>::new(), "{name}");
    }

    // Known only once the closure or the node's policy is looked at: at StartContainer.
    let at_start: [Case<'_>; 2] = [
        (
            "no-entrypoint",
            vec![
                ("containix.dev/store-paths", &out),
                ("containix.dev/entrypoint", "not-in-the-closure"),
            ],
            "not-in-the-closure",
        ),
        (
            "disallowed",
            vec![("containix.dev/flake", "github:org/app")],
            "not allowed on this node",
        ),
    ];
    for (name, annotations, expected) in at_start {
        let pod = Pod::run(&node, name, &annotations).await;
        let err = pod
            .start(&ContainerSpec::new("app", EMPTY_IMAGE_NAME))
            .await
            .expect_err(name);
        assert!(err.contains("containix: "), "{name}: {err}");
        assert!(err.contains(expected), "{name}: {err}");
        // A closure that resolved is held by its resolution's worker until it sees that no pod
        // waits any more.
        eventually(&format!("{name}: containix state to go"), async || {
            containix_leftovers(&node).is_empty()
        })
        .await;
        pod.remove().await;
    }
    stop_cleanly(node).await;
}

#[tokio::test]
async fn a_killed_shim_is_cleaned_up_when_the_pod_is_removed() {
    let hello = fixtures::example_hello().unwrap();
    let node = start_node("").await;
    let pod = Pod::run(
        &node,
        "doomed",
        &[("containix.dev/flake", &hello.flake_ref())],
    )
    .await;
    let busybox = busybox_of(&hello);
    let idle =
        ContainerSpec::new("idle", EMPTY_IMAGE_NAME).command([busybox.as_str(), "sleep", "1000"]);
    pod.start(&idle).await.unwrap();
    assert!(!containix_leftovers(&node).is_empty());

    let shims: Vec<i32> = node
        .leftover_processes()
        .into_iter()
        // A detached resolution's worker runs the same binary; it is not a shim.
        .filter(|p| {
            p.command.contains("containerd-shim-containix-v1")
                && !p.command.contains("containix-resolve")
        })
        .map(|p| p.pid)
        .collect();
    assert_eq!(shims.len(), 1, "one shim per pod");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shims[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    pod.remove_after_shim_death().await;
    eventually("containix state to be released", async || {
        containix_leftovers(&node).is_empty()
    })
    .await;
    eventually("the pod's processes to go", async || {
        shim_side_processes(&node).is_empty()
    })
    .await;
    stop_cleanly(node).await;
}

#[tokio::test]
async fn ctr_run_with_the_containix_runtime_runs_a_closure() {
    let hello = fixtures::example_hello().unwrap();
    let node = start_node("").await;
    let annotation = format!("containix.dev/flake={}", hello.flake_ref());
    let output = tokio::process::Command::new(node.ctr_binary())
        .arg("--address")
        .arg(node.socket())
        .args(["--namespace", "k8s.io", "run", "--rm"])
        .args(["--runtime", "io.containerd.containix.v1"])
        .args(["--annotation", &annotation])
        .arg(format!("docker.io/{EMPTY_IMAGE_NAME}"))
        .arg("ctr-hello")
        .arg("hello")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ctr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Hello from containix!"), "{stdout}");
    eventually("containix state to be released", async || {
        containix_leftovers(&node).is_empty()
    })
    .await;
    stop_cleanly(node).await;
}

/// The line of containerd's log that contains `needle`, once the shim has written it.
async fn containerd_log_line(node: &Containerd, needle: &str) -> String {
    let mut found = None;
    eventually(&format!("{needle:?} in containerd's log"), async || {
        let log = std::fs::read_to_string(node.layout().log()).unwrap_or_default();
        found = log
            .lines()
            .find(|line| line.contains(needle))
            .map(str::to_owned);
        found.is_some()
    })
    .await;
    found.unwrap()
}

#[tokio::test]
async fn a_pods_build_output_and_stage_timings_are_in_containerds_log() {
    // Nothing of this flake is built: the shim's resolution runs both builds.
    let flake = Fixture::BuildLog.unbuilt_isolated().unwrap();
    let node = start_node("").await;

    // A build that fails: the pod's error is containix's, and the log has the build's last line.
    let pod = Pod::run(
        &node,
        "broken-build",
        &[("containix.dev/flake", &flake.flake_ref("broken"))],
    )
    .await;
    let err = pod
        .start(&ContainerSpec::new("app", EMPTY_IMAGE_NAME))
        .await
        .expect_err("the build fails");
    assert!(err.contains("containix: "), "{err}");
    pod.remove().await;
    let last_words = format!("{BUILD_LOG_LAST_WORDS}{}", flake.salt);
    let line = containerd_log_line(&node, &last_words).await;
    assert!(line.starts_with("time=\""), "{line}");
    assert!(line.contains(" level=info "), "{line}");
    assert!(line.contains(" drv=/nix/store/"), "{line}");
    assert!(line.contains("-build-log-broken-1.0.drv"), "{line}");
    assert!(
        line.contains("runtime=io.containerd.containix.v1"),
        "{line}"
    );

    // A build that succeeds: its output line, then the core's stage timings.
    let pod = Pod::run(
        &node,
        "marker-build",
        &[("containix.dev/flake", &flake.flake_ref("default"))],
    )
    .await;
    let (code, log) = pod
        .run_to_exit(&ContainerSpec::new("app", EMPTY_IMAGE_NAME))
        .await;
    assert_eq!(code, 0, "{}", log.stderr());
    assert!(log.stdout().contains("marker ran"), "{log:?}");
    pod.remove().await;
    let marker = format!("{BUILD_LOG_MARKER}{}", flake.salt);
    let line = containerd_log_line(&node, &marker).await;
    assert!(line.contains("-build-log-1.0.drv"), "{line}");
    let timing = containerd_log_line(&node, "msg=\"container prepared\"").await;
    assert!(timing.contains("-build-log-1.0 "), "{timing}");
    for field in [
        " resolve_ms=",
        " view_ms=",
        " assemble_ms=",
        " plan_ms=",
        " paths=2 ",
    ] {
        assert!(timing.contains(field), "{field}: {timing}");
    }
    // The serving shim's first line, from before any container: it serves both task API names.
    let serving = containerd_log_line(&node, "serving containerd.task.v2.Task and").await;
    assert!(
        serving.contains("containerd.task.v3.Task")
            && serving.contains("runtime=io.containerd.containix.v1"),
        "{serving}"
    );

    eventually("containix state to be released", async || {
        containix_leftovers(&node).is_empty()
    })
    .await;
    stop_cleanly(node).await;
    flake.delete_from_store().unwrap();
}

/// The allow-list through CRI: the three refs that got past the string prefixes, and the
/// per-namespace policy, whose namespace is the one containerd reports (a pod cannot claim
/// another).
#[tokio::test]
async fn the_allow_list_matches_the_fetched_source_and_scopes_namespaces_through_cri() {
    let hello = fixtures::example_hello().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let srv = scratch.path().canonicalize().unwrap().join("srv");
    for folder in ["flakes/app", "other", "flakesX"] {
        std::fs::create_dir_all(srv.join(folder)).unwrap();
    }
    let flakes = format!("path:{}/flakes", srv.display());
    let node = start_node_with_policy(format!(
        "allowed-flake-prefixes = [\"github:myorg/\", \"{flakes}\"]\n\
         [namespaces.trusted]\nallowed-flake-prefixes = [\"path:/nix/store/\"]\n\
         realise = \"build\"\n"
    ))
    .await;
    let app = || ContainerSpec::new("app", EMPTY_IMAGE_NAME);
    let other = format!("path:{}/flakes/../other", srv.display());
    let sibling = format!("path:{}/flakesX", srv.display());
    let hello_ref = hello.flake_ref();
    // (namespace, pod, its annotations, what the error must say)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, String);
    let cases: Vec<Case<'_>> = vec![
        (
            "default",
            "host-bypass",
            vec![("containix.dev/flake", "github:myorg/repo?host=evil.example")],
            "rule `github:myorg/` allows host github.com, not evil.example".to_owned(),
        ),
        (
            "default",
            "dotdot-bypass",
            vec![("containix.dev/flake", &other)],
            format!("rule `{flakes}` resolves outside"),
        ),
        (
            "default",
            "sibling-bypass",
            vec![("containix.dev/flake", &sibling)],
            format!("rule `{flakes}` resolves outside"),
        ),
        (
            "default",
            "not-trusted",
            vec![("containix.dev/flake", &hello_ref)],
            format!("rule `{flakes}` resolves outside"),
        ),
        (
            "default",
            "spoofed-cri-namespace",
            vec![
                ("containix.dev/flake", &hello_ref),
                ("io.kubernetes.cri.sandbox-namespace", "trusted"),
            ],
            "is not allowed on this node: ".to_owned(),
        ),
        (
            "default",
            "spoofed-annotation",
            vec![
                ("containix.dev/flake", &hello_ref),
                ("containix.dev/namespace", "trusted"),
            ],
            "unknown annotation `containix.dev/namespace`".to_owned(),
        ),
        (
            "trusted",
            "trusted-elsewhere",
            vec![("containix.dev/flake", "github:myorg/repo")],
            "is not allowed on this node for namespace `trusted`".to_owned(),
        ),
    ];
    for (namespace, name, annotations, expected) in &cases {
        // A key containix does not know is refused with the sandbox already; the policy's
        // verdicts come at StartContainer.
        let pod = Pod::try_run_in(&node, namespace, name, annotations).await;
        let err = match &pod {
            Ok(pod) => pod.start(&app()).await.expect_err(name),
            Err(err) => err.clone(),
        };
        assert!(err.contains("containix: "), "{name}: {err}");
        assert!(err.contains(expected.as_str()), "{name}: {err}");
        assert_eq!(containix_leftovers(&node), Vec::<PathBuf>::new(), "{name}");
        if let Ok(pod) = pod {
            pod.remove().await;
        }
    }

    // The namespace containerd reports picks the namespace's settings.
    let pod = Pod::run_in(
        &node,
        "trusted",
        "trusted-hello",
        &[("containix.dev/flake", &hello_ref)],
    )
    .await;
    let (code, log) = pod.run_to_exit(&app()).await;
    assert_eq!(code, 0, "{}", log.stderr());
    assert!(log.stdout().contains("Hello from containix!"), "{log:?}");
    // Under /nix the container sees the closure's store paths and nothing else: no /nix/var, so
    // no daemon socket, GC roots or database of the node.
    let busybox = busybox_of(&hello);
    let look = ContainerSpec::new("look", EMPTY_IMAGE_NAME).command([
        busybox.as_str(),
        "sh",
        "-c",
        "ls -A /nix; test ! -e /nix/var && test ! -e /nix/var/nix/daemon-socket/socket",
    ]);
    let (code, log) = pod.run_to_exit(&look).await;
    assert_eq!((code, log.stdout()), (0, "store".to_owned()), "{log:?}");
    pod.remove().await;
    eventually("containix state to be released", async || {
        containix_leftovers(&node).is_empty()
    })
    .await;
    stop_cleanly(node).await;
}
