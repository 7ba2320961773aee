//! Store views through containerd's CRI, as a kubelet drives pods: one view per distinct
//! closure on the node, shared by its pods, exactly that closure visible, nothing left after the
//! last pod goes, and nothing lost or leaked when a shim is killed or containerd restarts.
//!
//! Each closure is the example's (for busybox) plus a synthetic graph of store paths of its
//! own, so two closures on the node share some paths and not others.

use std::path::{Path, PathBuf};

use containix_core::image::oci_image::EMPTY_IMAGE_NAME;
use containix_testkit::containerd::{CONTAINIX_RUNTIME_HANDLER, Containerd, ContainerdOptions};
use containix_testkit::cri::proto::ContainerState;
use containix_testkit::cri::{ContainerSpec, PodSandboxSpec};
use containix_testkit::fixtures::{self, Built};
use containix_testkit::pod::CriPod;
use containix_testkit::synthetic_store::SyntheticGraph;
use containix_tests::{LIMIT, eventually, shim_side_processes, stop_cleanly};

/// Closures on the node in the many-pods test, and pods per closure.
const CLOSURES: usize = 5;
const PODS_PER_CLOSURE: usize = 10;
/// Store paths in each closure's synthetic part.
const SYNTHETIC_PATHS: usize = 40;
/// Seeds of the synthetic graphs (distinct from the benchmarks' so both can run).
const FIRST_SEED: u64 = 0x5157_0000;

async fn start_node(extra: &str) -> Containerd {
    let options = ContainerdOptions {
        containix_policy: format!("allowed-flake-prefixes = [\"path:/nix/store/\"]\n{extra}"),
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

/// One closure the tests run: its `containix.dev/store-paths` value and its members' names.
struct TestClosure {
    store_paths: String,
    members: Vec<String>,
}

fn test_closures(hello: &Built, count: usize) -> Vec<TestClosure> {
    (0..count as u64)
        .map(|k| {
            let graph = SyntheticGraph::plan(SYNTHETIC_PATHS, FIRST_SEED + k).unwrap();
            graph.import().unwrap();
            let mut members: Vec<String> = hello
                .closure
                .iter()
                .chain(graph.paths.iter().map(|p| &p.path))
                .map(|p| base_name(p))
                .collect();
            members.sort();
            members.dedup();
            TestClosure {
                store_paths: format!("{} {}", hello.out_path.display(), graph.root().display()),
                members,
            }
        })
        .collect()
}

fn base_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn busybox_of(hello: &Built) -> String {
    format!(
        "{}/busybox",
        hello.closure_member("busybox").unwrap().display()
    )
}

async fn run_pod(node: &Containerd, name: &str, closure: &TestClosure) -> CriPod {
    let spec =
        PodSandboxSpec::new(name).annotation("containix.dev/store-paths", &closure.store_paths);
    CriPod::run(node, spec, CONTAINIX_RUNTIME_HANDLER)
        .await
        .unwrap()
}

fn idle(busybox: &str) -> ContainerSpec {
    ContainerSpec::new("idle", EMPTY_IMAGE_NAME).command([busybox, "sleep", "1000"])
}

/// The node's store views: the directories named by an id under the views dir.
fn views(node: &Containerd) -> Vec<PathBuf> {
    let dir = node.layout().containix_state().join("views");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| base_name(p).len() == 32)
        .collect();
    found.sort();
    found
}

fn users_of(view: &Path) -> usize {
    std::fs::read_dir(view.join("users")).map_or(0, Iterator::count)
}

/// Waits until `view` has exactly `count` users. A detached resolution's worker holds the view
/// it made until its pods have taken it, and lets go a moment later, in its own process.
async fn settle_users(view: &Path, count: usize) {
    let what = format!("{} to have {count} users", view.display());
    eventually(&what, async || users_of(view) == count).await;
}

/// Files and links left under the containix state dir, other than the resolver's cache.
fn leftovers(node: &Containerd) -> Vec<PathBuf> {
    fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                files_under(&entry.path(), out);
            } else {
                out.push(entry.path());
            }
        }
    }
    let mut out = Vec::new();
    let state = node.layout().containix_state();
    for dir in ["gcroots", "containers", "views"] {
        files_under(&state.join(dir), &mut out);
    }
    out
}

/// `ls /nix/store` and an attempt to write there, in a running container.
async fn store_listing(pod: &CriPod, container: &str, busybox: &str) -> (Vec<String>, i32) {
    let result = pod
        .cri
        .exec_sync(
            container,
            &[
                busybox,
                "sh",
                "-c",
                "ls /nix/store; touch /nix/store/x 2>/dev/null",
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
    (listed, result.exit_code)
}

#[tokio::test]
async fn fifty_pods_over_five_closures_share_five_views_and_leave_nothing() {
    let hello = fixtures::example_hello().unwrap();
    let busybox = busybox_of(&hello);
    let closures = test_closures(&hello, CLOSURES);
    let node = start_node("").await;

    let mut pods = Vec::new();
    for (k, closure) in closures.iter().enumerate() {
        for i in 0..PODS_PER_CLOSURE {
            let pod = run_pod(&node, &format!("c{k}-p{i}"), closure).await;
            let container = pod.start(&idle(&busybox)).await.unwrap();
            pods.push((k, pod, container));
        }
    }
    let made = views(&node);
    assert_eq!(made.len(), CLOSURES, "one view per closure: {made:?}");
    for view in &made {
        settle_users(view, PODS_PER_CLOSURE).await;
    }

    // Every container sees exactly its own closure, read-only: nothing of the other closures,
    // although they share the node (and some store paths).
    for (k, pod, container) in pods
        .iter()
        .filter(|(_, _, _)| true)
        .step_by(PODS_PER_CLOSURE)
    {
        let (listed, write_status) = store_listing(pod, container, &busybox).await;
        assert_eq!(listed, closures[*k].members, "closure {k}");
        assert_ne!(write_status, 0, "closure {k}: /nix/store must be read-only");
        for (j, other) in closures.iter().enumerate().filter(|(j, _)| j != k) {
            let foreign: Vec<&String> = other
                .members
                .iter()
                .filter(|m| !closures[*k].members.contains(m))
                .collect();
            assert!(!foreign.is_empty());
            assert!(
                foreign.iter().all(|m| !listed.contains(m)),
                "closure {k} sees members of closure {j}"
            );
        }
    }

    for (_, pod, _) in pods {
        pod.remove(LIMIT).await.unwrap();
    }
    eventually("the views to go with their last pod", async || {
        views(&node).is_empty()
    })
    .await;
    // The view's lock file goes last, after its directory.
    eventually("nothing to be left", async || leftovers(&node).is_empty()).await;
    stop_cleanly(node).await;
}

#[tokio::test]
async fn a_killed_shim_and_a_containerd_restart_lose_nothing_and_leak_nothing() {
    let hello = fixtures::example_hello().unwrap();
    let busybox = busybox_of(&hello);
    let closure = test_closures(&hello, 1).pop().unwrap();
    let mut node = start_node("").await;

    let doomed = run_pod(&node, "doomed", &closure).await;
    doomed.start(&idle(&busybox)).await.unwrap();
    let survivor = run_pod(&node, "survivor", &closure).await;
    let survivor_container = survivor.start(&idle(&busybox)).await.unwrap();
    let view = views(&node);
    assert_eq!(view.len(), 1);
    settle_users(&view[0], 2).await;

    let shim = node
        .leftover_processes()
        .into_iter()
        .find(|p| {
            p.command.contains("containerd-shim-containix-v1") && p.command.contains(&doomed.id)
        })
        .expect("the doomed pod's shim");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim.pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    node.restart().await.unwrap();

    // The other pod kept running on its view, which kept both users.
    let cri = node.cri();
    let status = cri.container_status(&survivor_container).await.unwrap();
    assert_eq!(status.state(), ContainerState::ContainerRunning);
    assert_eq!(views(&node), view);
    let survivor = CriPod { cri, ..survivor };
    let (listed, _) = store_listing(&survivor, &survivor_container, &busybox).await;
    assert_eq!(listed, closure.members);

    // A new pod of the same closure reuses the view.
    let late = run_pod(&node, "late", &closure).await;
    late.start(&idle(&busybox)).await.unwrap();
    assert_eq!(views(&node), view);

    let doomed = CriPod {
        cri: node.cri(),
        ..doomed
    };
    for pod in [doomed, survivor, late] {
        pod.remove(LIMIT).await.unwrap();
    }
    eventually("the view to go with its last pod", async || {
        views(&node).is_empty()
    })
    .await;
    eventually("the shims to go", async || {
        shim_side_processes(&node).is_empty()
    })
    .await;
    // The view's lock file goes last, after its directory.
    eventually("nothing to be left", async || leftovers(&node).is_empty()).await;
    stop_cleanly(node).await;
}

#[tokio::test]
async fn the_root_is_writable_unless_the_pod_asks_otherwise_and_the_store_never_is() {
    let hello = fixtures::example_hello().unwrap();
    let busybox = busybox_of(&hello);
    let closure = test_closures(&hello, 1).pop().unwrap();
    let node = start_node("").await;
    let pod = run_pod(&node, "rootfs", &closure).await;
    let script = "mkdir -p /var && echo written > /var/x && cat /var/x; \
                  if touch /nix/store/x 2>/dev/null; then echo store-writable; fi";
    let writer = |name: &str, readonly: bool| {
        ContainerSpec::new(name, EMPTY_IMAGE_NAME)
            .command([busybox.as_str(), "sh", "-c", script])
            .readonly_rootfs(readonly)
    };

    let (status, log) = pod
        .run_to_exit(&writer("writable", false), LIMIT)
        .await
        .unwrap();
    assert_eq!(status.exit_code, 0, "{log:?}");
    assert_eq!(log.stdout().trim_end(), "written", "{log:?}");

    let (_, log) = pod
        .run_to_exit(&writer("readonly", true), LIMIT)
        .await
        .unwrap();
    assert!(log.stderr().contains("Read-only file system"), "{log:?}");
    assert!(!log.stdout().contains("written"), "{log:?}");
    assert!(!log.stdout().contains("store-writable"), "{log:?}");

    pod.remove(LIMIT).await.unwrap();
    eventually("the view to go", async || views(&node).is_empty()).await;
    stop_cleanly(node).await;
}

#[tokio::test]
async fn a_bind_tree_view_shows_the_same_closure_and_unmounts_with_its_last_pod() {
    let hello = fixtures::example_hello().unwrap();
    let busybox = busybox_of(&hello);
    let closure = test_closures(&hello, 1).pop().unwrap();
    let node = start_node("store-view = \"bind-tree\"\n").await;
    let pod = run_pod(&node, "binds", &closure).await;
    let container = pod.start(&idle(&busybox)).await.unwrap();

    let (listed, write_status) = store_listing(&pod, &container, &busybox).await;
    assert_eq!(listed, closure.members);
    assert_ne!(write_status, 0, "/nix/store must be read-only");
    let view = views(&node);
    assert_eq!(view.len(), 1);
    let record = std::fs::read_to_string(view[0].join("ready.json")).unwrap();
    assert!(record.contains("\"bind-tree\""), "{record}");
    let binds = containix_testkit::containerd::mounts_under(&view[0]);
    assert_eq!(binds.len(), closure.members.len(), "one bind per member");

    pod.remove(LIMIT).await.unwrap();
    eventually("the view to go", async || views(&node).is_empty()).await;
    assert_eq!(
        containix_testkit::containerd::mounts_under(&node.layout().containix_state()),
        Vec::<PathBuf>::new()
    );
    // The view's lock file goes last, after its directory.
    eventually("nothing to be left", async || leftovers(&node).is_empty()).await;
    stop_cleanly(node).await;
}

/// A view records its closure's CA bundle when it is made, and every container of the closure
/// gets `SSL_CERT_FILE` from that record without searching the store again.
#[tokio::test]
async fn containers_of_a_view_get_the_ca_bundle_it_recorded() {
    let hello = fixtures::example_hello().unwrap();
    let busybox = busybox_of(&hello);
    let certs_dir = tempfile::tempdir().unwrap();
    let certs_source = certs_dir.path().join("certs");
    std::fs::create_dir_all(certs_source.join("etc/ssl/certs")).unwrap();
    std::fs::write(
        certs_source.join("etc/ssl/certs/ca-bundle.crt"),
        "containix test bundle\n",
    )
    .unwrap();
    let certs = containix_testkit::nix_cli::NixCommand::nix_store()
        .arg("--add")
        .arg(&certs_source)
        .run()
        .unwrap();
    let certs = certs.trim();
    let closure = TestClosure {
        store_paths: format!("{} {certs}", hello.out_path.display()),
        members: Vec::new(),
    };
    let node = start_node("").await;
    let pod = run_pod(&node, "certs", &closure).await;
    pod.start(&idle(&busybox)).await.unwrap();
    let view = views(&node);
    assert_eq!(view.len(), 1);
    let bundle = format!("{certs}/etc/ssl/certs/ca-bundle.crt");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(view[0].join("ready.json")).unwrap()).unwrap();
    assert_eq!(record["caBundles"], serde_json::json!([bundle]), "{record}");

    let printer = ContainerSpec::new("printer", EMPTY_IMAGE_NAME).command([
        busybox.as_str(),
        "sh",
        "-c",
        "echo \"$SSL_CERT_FILE $NIX_SSL_CERT_FILE\"; cat \"$SSL_CERT_FILE\"",
    ]);
    let (status, log) = pod.run_to_exit(&printer, LIMIT).await.unwrap();
    assert_eq!(status.exit_code, 0, "{log:?}");
    assert_eq!(
        log.stdout(),
        format!("{bundle} {bundle}\ncontainix test bundle"),
        "{log:?}"
    );

    pod.remove(LIMIT).await.unwrap();
    eventually("the view to go", async || views(&node).is_empty()).await;
    stop_cleanly(node).await;
}
