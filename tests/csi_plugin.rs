//! The CSI node plugin end to end: the built `containix-csi` binary serves a Unix socket in a
//! temporary directory, a CSI client generated from the same proto talks to it, and volumes are
//! published from fixture closures in the test node's real Nix store, with real mounts. One test
//! runs a published volume at `/nix` in a real runc container through containerd's CRI.
//!
//! Needs root (mounts) and `cargo build -p containix-csi` (or a workspace build) first; the
//! binary is found next to the test executable's target dir, or at `$CONTAINIX_CSI_BIN`.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use containix_core::store::daemon::DaemonClient;
use containix_csi::client::{CsiClient, connect};
use containix_csi::proto::controller_service_capability::{
    Type as ControllerCapabilityType, rpc as controller_rpc,
};
use containix_csi::proto::node_service_capability::{Rpc, Type as CapabilityType, rpc};
use containix_csi::proto::volume_capability::{AccessMode, AccessType, MountVolume, access_mode};
use containix_csi::proto::volume_usage::Unit;
use containix_csi::proto::{
    ControllerGetCapabilitiesRequest, GetPluginCapabilitiesRequest, GetPluginInfoRequest,
    NodeExpandVolumeRequest, NodeGetCapabilitiesRequest, NodeGetInfoRequest,
    NodeGetVolumeStatsRequest, NodePublishVolumeRequest, NodeStageVolumeRequest,
    NodeUnpublishVolumeRequest, ProbeRequest, VolumeCapability,
};
use containix_testkit::containerd::{Containerd, ContainerdOptions};
use containix_testkit::cri::{ContainerLog, ContainerSpec, PodSandboxSpec};
use containix_testkit::fixtures::{BUILD_LOG_MARKER, Built, Fixture};
use containix_testkit::nix_daemon::NixDaemon;
use containix_tests::csi_bin;
use tonic::Code;

const NODE_ID: &str = "test-node";
/// A hang guard for start-up and shutdown, not a performance assertion.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// A running plugin process and its directory (socket, state, policy).
struct Plugin {
    child: Child,
    dir: PathBuf,
}

impl Plugin {
    /// Starts the plugin against the test node's daemon.
    async fn start(dir: &Path) -> Plugin {
        Self::start_with_policy(dir, "").await
    }

    /// Starts the plugin with `extra_policy` (TOML lines) added to the test node's policy.
    async fn start_with_policy(dir: &Path, extra_policy: &str) -> Plugin {
        let daemon = NixDaemon::start_or_reuse().unwrap();
        Self::start_with_daemon_socket(dir, daemon.socket_path(), extra_policy).await
    }

    /// The policy lets pods use flakes already in the store (the fixtures' sources, offline)
    /// and build their outputs when missing.
    async fn start_with_daemon_socket(
        dir: &Path,
        daemon_socket: &Path,
        extra_policy: &str,
    ) -> Plugin {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "daemon-socket = {:?}\nstate-dir = {:?}\ndefault-timeout = \"1m\"\n\
                 allowed-flake-prefixes = [\"path:/nix/store/\"]\nrealise = \"build\"\n\
                 {extra_policy}\n",
                daemon_socket.display().to_string(),
                dir.join("policy-state").display().to_string()
            ),
        )
        .unwrap();
        let socket = dir.join("csi.sock");
        let child = Command::new(csi_bin())
            .arg("--endpoint")
            .arg(format!("unix://{}", socket.display()))
            .arg("--node-id")
            .arg(NODE_ID)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--config")
            .arg(&config)
            .arg("--log-level")
            .arg("debug")
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(dir.join("plugin.log")).unwrap())
            .spawn()
            .unwrap();
        let mut plugin = Plugin {
            child,
            dir: dir.to_owned(),
        };
        let started = tokio::time::Instant::now();
        while connect(&socket).await.is_err() {
            if let Some(status) = plugin.child.try_wait().unwrap() {
                panic!("containix-csi exited with {status}: {}", plugin.log());
            }
            assert!(
                started.elapsed() < HANG_GUARD,
                "no socket: {}",
                plugin.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        plugin
    }

    async fn client(&self) -> CsiClient {
        connect(&self.dir.join("csi.sock")).await.unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("plugin.log")).unwrap_or_default()
    }

    /// SIGTERM, and wait for a clean exit (asynchronously, so that open client connections
    /// keep being served their goodbye).
    async fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).unwrap();
        let started = tokio::time::Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < HANG_GUARD,
                "plugin did not stop: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            status.success(),
            "plugin exited with {status}: {}",
            self.log()
        );
        assert!(!self.dir.join("csi.sock").exists(), "socket left behind");
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn mount_capability() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode {
            mode: access_mode::Mode::SingleNodeWriter.into(),
        }),
    }
}

fn publish_request(
    volume_id: &str,
    target: &Path,
    readonly: bool,
    attributes: &[(&str, &str)],
) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: volume_id.to_owned(),
        target_path: target.display().to_string(),
        volume_capability: Some(mount_capability()),
        readonly,
        volume_context: attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>(),
        ..Default::default()
    }
}

fn store_paths_attributes(built: &Built) -> Vec<(&'static str, String)> {
    vec![
        ("storePaths", built.out_path.display().to_string()),
        ("csi.storage.k8s.io/pod.name", "web-0".to_owned()),
        ("csi.storage.k8s.io/pod.namespace", "shop".to_owned()),
        ("csi.storage.k8s.io/ephemeral", "true".to_owned()),
    ]
}

async fn publish(
    client: &mut CsiClient,
    volume_id: &str,
    target: &Path,
    readonly: bool,
    built: &Built,
) {
    let attributes = store_paths_attributes(built);
    let attributes: Vec<(&str, &str)> = attributes.iter().map(|(k, v)| (*k, v.as_str())).collect();
    client
        .node
        .node_publish_volume(publish_request(volume_id, target, readonly, &attributes))
        .await
        .unwrap_or_else(|status| panic!("publish {volume_id}: {status}"));
}

/// Publishes a read-only volume from `attributes` (plus the pod info a kubelet adds).
async fn publish_attributes(
    client: &mut CsiClient,
    volume_id: &str,
    target: &Path,
    attributes: &[(&str, &str)],
) {
    let mut attributes = attributes.to_vec();
    attributes.extend([
        ("csi.storage.k8s.io/pod.name", "web-0"),
        ("csi.storage.k8s.io/pod.namespace", "shop"),
    ]);
    client
        .node
        .node_publish_volume(publish_request(volume_id, target, true, &attributes))
        .await
        .unwrap_or_else(|status| panic!("publish {volume_id}: {status}"));
}

async fn unpublish(client: &mut CsiClient, volume_id: &str, target: &Path) {
    client
        .node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: volume_id.to_owned(),
            target_path: target.display().to_string(),
        })
        .await
        .unwrap_or_else(|status| panic!("unpublish {volume_id}: {status}"));
}

/// Mount points at or under `dir`, from this process's mount table.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(field.replace("\\040", " ")))
        .filter(|point| point.starts_with(dir))
        .collect()
}

fn base_names(paths: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every trace of a volume is gone: mounts, target, record, overlay and GC root.
fn assert_nothing_left(plugin_dir: &Path, target: &Path) {
    assert_eq!(mounts_under(target), Vec::<PathBuf>::new(), "mounts left");
    assert!(!target.exists(), "{target:?} left behind");
    let state = plugin_dir.join("state");
    let node_state = plugin_dir.join("policy-state");
    for dir in [
        state.join("volumes"),
        state.join("gcroots"),
        node_state.join("gcroots"),
    ] {
        if dir.exists() {
            assert_eq!(listing(&dir), Vec::<String>::new(), "{dir:?} not empty");
        }
    }
    assert_eq!(view_users(plugin_dir), Vec::<String>::new(), "views left");
}

/// The users of the node's store views (under the policy's state dir), over all views.
fn view_users(plugin_dir: &Path) -> Vec<String> {
    let views = plugin_dir.join("policy-state/views");
    let mut users = Vec::new();
    for view in std::fs::read_dir(views).into_iter().flatten().flatten() {
        if view.file_name().len() == 32 {
            users.extend(listing(&view.path().join("users")));
        }
    }
    users.sort();
    users
}

/// The GC roots the daemon knows under the node's state dir, where store views keep theirs.
async fn node_roots(plugin: &Plugin) -> Vec<String> {
    daemon_roots_under(&plugin.dir.join("policy-state/gcroots")).await
}

async fn daemon_roots_under(dir: &Path) -> Vec<String> {
    let daemon = NixDaemon::start_or_reuse().unwrap();
    let mut client = DaemonClient::connect(daemon.socket_path()).await.unwrap();
    client
        .find_roots()
        .await
        .unwrap()
        .into_iter()
        .map(|root| root.link)
        .filter(|link| Path::new(link).starts_with(dir))
        .collect()
}

#[tokio::test]
async fn a_read_only_volume_shows_exactly_the_closure_sharing_the_stores_inodes() {
    let built = Fixture::FileAndSymlink.build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugin = Plugin::start(dir.path()).await;
    let mut client = plugin.client().await;
    let target = dir.path().join("pod/volumes/nix/mount");
    publish(&mut client, "csi-ro", &target, true, &built).await;

    // store/ holds exactly the closure, bin/ the root's programs.
    assert_eq!(listing(&target), ["bin", "store"]);
    assert_eq!(listing(&target.join("store")), base_names(&built.closure));
    assert_eq!(listing(&target.join("bin")), ["show-data"]);
    let program = target.join("bin/show-data");
    assert_eq!(
        std::fs::read_link(&program).unwrap(),
        built.out_path.join("bin/show-data")
    );
    let output = Command::new(&program).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "data from a file store path\n"
    );

    // Binds, not copies: the same inode on the same device as in /nix/store.
    let inside = target
        .join("store")
        .join(built.out_path.file_name().unwrap())
        .join("bin/show-data");
    let in_volume = std::fs::metadata(&inside).unwrap();
    let in_store = std::fs::metadata(built.out_path.join("bin/show-data")).unwrap();
    assert_eq!(
        (in_volume.dev(), in_volume.ino()),
        (in_store.dev(), in_store.ino())
    );
    // A store path that is a regular file is bound too; one that is a link stays a link.
    let data = built.closure_member("fixture-data.txt").unwrap();
    let data_in_volume = target.join("store").join(data.file_name().unwrap());
    assert_eq!(
        std::fs::metadata(&data_in_volume).unwrap().ino(),
        std::fs::metadata(data).unwrap().ino()
    );
    let link = built.closure_member("fixture-data-link").unwrap();
    let link_in_volume = target.join("store").join(link.file_name().unwrap());
    assert_eq!(
        std::fs::read_link(&link_in_volume).unwrap(),
        std::fs::read_link(link).unwrap()
    );

    // Read-only everywhere: the volume's own tree and the members.
    for path in [
        target.join("new-file"),
        target.join("store/new-path"),
        inside.with_file_name("new-file"),
    ] {
        let err = std::fs::write(&path, "x").unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(nix::libc::EROFS),
            "{path:?}: {err}"
        );
    }

    // Stats: the closure's size.
    let stats = client
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "csi-ro".into(),
            volume_path: target.display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.usage.len(), 1);
    assert_eq!(stats.usage[0].unit(), Unit::Bytes);
    assert!(stats.usage[0].used > 0 && stats.usage[0].used == stats.usage[0].total);

    // The node's store view of the closure holds it, with the volume (named after its pod)
    // among its users.
    let roots = node_roots(&plugin).await;
    assert_eq!(roots.len(), 1, "{roots:?}");
    let users = view_users(&plugin.dir);
    assert_eq!(users.len(), 1, "{users:?}");
    assert!(users[0].contains("shop_web-0"), "{users:?}");

    unpublish(&mut client, "csi-ro", &target).await;
    assert_nothing_left(dir.path(), &target);
    assert_eq!(node_roots(&plugin).await, Vec::<String>::new());
    plugin.stop().await;
}

#[tokio::test]
async fn a_flake_ref_volume_holds_the_flake_s_closure_and_runs_its_program() {
    let built = Fixture::Hello.build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugin = Plugin::start(dir.path()).await;
    let mut client = plugin.client().await;
    let target = dir.path().join("pod/volumes/nix/mount");
    let flake_ref = built.flake_ref();
    publish_attributes(
        &mut client,
        "csi-flake",
        &target,
        &[("flakeRef", &flake_ref)],
    )
    .await;

    assert_eq!(listing(&target), ["bin", "store"]);
    assert_eq!(listing(&target.join("store")), base_names(&built.closure));
    assert_eq!(listing(&target.join("bin")), ["hello"]);
    let output = Command::new(target.join("bin/hello")).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("Hello from containix!"),
        "{output:?}"
    );
    // The node's store view of the closure holds it, with the volume (named after its pod)
    // among its users.
    let roots = node_roots(&plugin).await;
    assert_eq!(roots.len(), 1, "{roots:?}");
    let users = view_users(&plugin.dir);
    assert_eq!(users.len(), 1, "{users:?}");
    assert!(users[0].contains("shop_web-0"), "{users:?}");

    unpublish(&mut client, "csi-flake", &target).await;
    assert_nothing_left(dir.path(), &target);
    assert_eq!(node_roots(&plugin).await, Vec::<String>::new());
    plugin.stop().await;
}

#[tokio::test]
async fn a_packages_volume_holds_the_packages_of_the_node_s_package_set() {
    let base = Fixture::Diamond.build_package("base").unwrap();
    let leaf = Fixture::Diamond.build_package("leaf").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let package_set = format!("package-set = \"path:{}\"", leaf.flake_source.display());
    let plugin = Plugin::start_with_policy(dir.path(), &package_set).await;
    let mut client = plugin.client().await;
    let target = dir.path().join("target");
    publish_attributes(
        &mut client,
        "csi-packages",
        &target,
        &[("packages", "leaf base")],
    )
    .await;

    let mut closure: Vec<PathBuf> = base.closure.iter().chain(&leaf.closure).cloned().collect();
    closure.sort();
    closure.dedup();
    assert_eq!(listing(&target.join("store")), base_names(&closure));
    unpublish(&mut client, "csi-packages", &target).await;
    assert_nothing_left(dir.path(), &target);
    plugin.stop().await;
}

#[tokio::test]
async fn a_flake_ref_outside_the_allowed_prefixes_is_refused_naming_flake_ref() {
    let built = Fixture::Hello.build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugin = Plugin::start(dir.path()).await;
    let mut client = plugin.client().await;
    let target = dir.path().join("target");
    // The same flake, from its checkout rather than the store: a real flake the node's policy
    // (`path:/nix/store/` only) does not allow.
    let outside = format!(
        "path:{}#{}",
        built.fixture.source_dir().display(),
        built.attr
    );
    let status = client
        .node
        .node_publish_volume(publish_request(
            "csi-refused",
            &target,
            true,
            &[("flakeRef", &outside)],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    assert!(
        status
            .message()
            .contains("volume attribute `flakeRef`: flake ref `path:"),
        "{status}"
    );
    assert!(
        status
            .message()
            .contains("allowed prefixes: path:/nix/store/"),
        "{status}"
    );
    assert_nothing_left(dir.path(), &target);
    assert_eq!(node_roots(&plugin).await, Vec::<String>::new());
    plugin.stop().await;
}

/// The allow-list through the plugin: the three refs that got past string prefixes are refused
/// naming the rule, and the namespace the kubelet reports picks that namespace's settings.
#[tokio::test]
async fn the_allow_list_matches_the_fetched_source_and_scopes_namespaces() {
    let built = Fixture::Hello.build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let srv = dir.path().canonicalize().unwrap().join("srv");
    for folder in ["flakes/app", "other", "flakesX"] {
        std::fs::create_dir_all(srv.join(folder)).unwrap();
    }
    let flakes = format!("path:{}/flakes", srv.display());
    let plugin = Plugin::start_with_policy(
        dir.path(),
        &format!(
            "[namespaces.team-a]\nallowed-flake-prefixes = [\"github:myorg/\", \"{flakes}\"]\n"
        ),
    )
    .await;
    let mut client = plugin.client().await;
    let target = dir.path().join("target");
    let other = format!("path:{}/flakes/../other", srv.display());
    let sibling = format!("path:{}/flakesX", srv.display());
    let in_store = built.flake_ref();
    let outside = format!("rule `{flakes}` resolves outside");
    let cases = [
        (
            "github:myorg/repo?host=evil.example",
            "rule `github:myorg/` allows host github.com, not evil.example",
        ),
        (other.as_str(), outside.as_str()),
        (sibling.as_str(), outside.as_str()),
        (in_store.as_str(), outside.as_str()),
    ];
    for (flake_ref, expected) in cases {
        let status = client
            .node
            .node_publish_volume(publish_request(
                "csi-team-a",
                &target,
                true,
                &[
                    ("flakeRef", flake_ref),
                    ("csi.storage.k8s.io/pod.namespace", "team-a"),
                    ("csi.storage.k8s.io/pod.name", "web-0"),
                ],
            ))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{flake_ref}: {status}"
        );
        let message = status.message();
        assert!(
            message.starts_with("containix: volume attribute `flakeRef`: flake ref `"),
            "{flake_ref}: {message}"
        );
        assert!(
            message.contains("for namespace `team-a`"),
            "{flake_ref}: {message}"
        );
        assert!(message.contains(expected), "{flake_ref}: {message}");
        assert_nothing_left(dir.path(), &target);
    }
    // Pods of other namespaces get the node-wide settings, which allow the store's flakes.
    publish_attributes(&mut client, "csi-shop", &target, &[("flakeRef", &in_store)]).await;
    assert_eq!(listing(&target.join("bin")), ["hello"]);
    unpublish(&mut client, "csi-shop", &target).await;
    assert_nothing_left(dir.path(), &target);
    plugin.stop().await;
}

#[tokio::test]
async fn a_writable_volume_takes_new_entries_privately_and_discards_them() {
    let built = Fixture::FileAndSymlink.build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugin = Plugin::start(dir.path()).await;
    let mut client = plugin.client().await;
    let target = dir.path().join("pod/volumes/nix/mount");
    publish(&mut client, "csi-rw", &target, false, &built).await;

    assert_eq!(listing(&target.join("store")), base_names(&built.closure));
    let new_path = target.join("store/new-path");
    std::fs::write(&new_path, "written in the pod\n").unwrap();
    std::fs::create_dir_all(target.join("var/nix")).unwrap();
    assert!(!Path::new("/nix/store/new-path").exists());
    // Members stay immutable, as store paths are.
    let member = target
        .join("store")
        .join(built.out_path.file_name().unwrap());
    let err = std::fs::write(member.join("new-file"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS), "{err}");
    let stats = client
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "csi-rw".into(),
            volume_path: target.display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stats.usage[0].available > 0, "{stats:?}");

    unpublish(&mut client, "csi-rw", &target).await;
    assert_nothing_left(dir.path(), &target);
    // Published again, the earlier writes are gone.
    publish(&mut client, "csi-rw", &target, false, &built).await;
    assert!(!new_path.exists());
    unpublish(&mut client, "csi-rw", &target).await;
    assert_nothing_left(dir.path(), &target);
    plugin.stop().await;
}

#[tokio::test]
async fn publish_and_unpublish_are_idempotent() {
    let built = Fixture::FileAndSymlink.build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugin = Plugin::start(dir.path()).await;
    let mut client = plugin.client().await;
    let target = dir.path().join("target");
    publish(&mut client, "csi-twice", &target, true, &built).await;
    let mounts = mounts_under(&target);
    publish(&mut client, "csi-twice", &target, true, &built).await;
    assert_eq!(
        mounts_under(&target),
        mounts,
        "a second publish mounted again"
    );

    // The same volume at another target, or in another mode, is refused.
    let other = dir.path().join("other");
    let attributes = store_paths_attributes(&built);
    let attributes: Vec<(&str, &str)> = attributes.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for request in [
        publish_request("csi-twice", &other, true, &attributes),
        publish_request("csi-twice", &target, false, &attributes),
    ] {
        let status = client.node.node_publish_volume(request).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{status}");
    }
    assert!(!other.exists());

    unpublish(&mut client, "csi-twice", &target).await;
    unpublish(&mut client, "csi-twice", &target).await;
    unpublish(
        &mut client,
        "csi-never-published",
        &dir.path().join("nowhere"),
    )
    .await;
    assert_nothing_left(dir.path(), &target);
    plugin.stop().await;
}

#[tokio::test]
async fn a_restarted_plugin_unpublishes_what_an_earlier_one_published() {
    let built = Fixture::FileAndSymlink.build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    let plugin = Plugin::start(dir.path()).await;
    publish(
        &mut plugin.client().await,
        "csi-restart",
        &target,
        false,
        &built,
    )
    .await;
    plugin.stop().await;
    assert!(
        !mounts_under(&target).is_empty(),
        "mounts outlive the plugin"
    );

    let plugin = Plugin::start(dir.path()).await;
    let mut client = plugin.client().await;
    // The new process knows the volume: publishing again is a no-op, stats work.
    publish(&mut client, "csi-restart", &target, false, &built).await;
    client
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "csi-restart".into(),
            volume_path: target.display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
    unpublish(&mut client, "csi-restart", &target).await;
    assert_nothing_left(dir.path(), &target);
    plugin.stop().await;
}

#[tokio::test]
async fn volumes_of_one_closure_share_one_store_view_and_orphans_are_released_on_start() {
    let built = Fixture::Hello.build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    let plugin = Plugin::start(dir.path()).await;
    let mut client = plugin.client().await;
    publish(&mut client, "csi-share-1", &first, true, &built).await;
    publish(&mut client, "csi-share-2", &second, true, &built).await;

    // One view, two users; each volume's store/ is the view, bound once.
    let views: Vec<_> = std::fs::read_dir(dir.path().join("policy-state/views"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().len() == 32)
        .collect();
    assert_eq!(views.len(), 1, "{views:?}");
    assert_eq!(view_users(dir.path()).len(), 2);
    assert_eq!(listing(&first.join("store")), base_names(&built.closure));
    assert_eq!(
        listing(&second.join("store")),
        listing(&first.join("store"))
    );
    let store_mount = first.join("store");
    assert!(
        mounts_under(&first).contains(&store_mount),
        "{:?}",
        mounts_under(&first)
    );

    // The plugin dies between taking a view and recording its volume: a user with no record.
    plugin.stop().await;
    let users = views[0].path().join("users");
    let orphan = users.join("csi-orphan");
    std::fs::copy(
        users.read_dir().unwrap().next().unwrap().unwrap().path(),
        &orphan,
    )
    .unwrap();
    let plugin = Plugin::start(dir.path()).await;
    let mut client = plugin.client().await;
    assert!(
        !orphan.exists(),
        "the orphaned view user outlived a restart"
    );
    assert_eq!(view_users(dir.path()).len(), 2);

    unpublish(&mut client, "csi-share-1", &first).await;
    assert_eq!(listing(&second.join("store")), base_names(&built.closure));
    unpublish(&mut client, "csi-share-2", &second).await;
    assert_nothing_left(dir.path(), &first);
    assert_nothing_left(dir.path(), &second);
    plugin.stop().await;
}

#[tokio::test]
async fn bad_requests_are_invalid_arguments_naming_the_field_and_leave_nothing() {
    let built = Fixture::FileAndSymlink.build().unwrap();
    let out = built.out_path.display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let plugin = Plugin::start(dir.path()).await;
    let mut client = plugin.client().await;
    let target = dir.path().join("target");

    let cases: Vec<(NodePublishVolumeRequest, &str)> = vec![
        (publish_request("v", &target, true, &[]), "no source"),
        (
            publish_request("v", &target, true, &[("timeout", "1m")]),
            "no source",
        ),
        (
            publish_request(
                "v",
                &target,
                true,
                &[("flakeRef", "github:org/app"), ("storePaths", &out)],
            ),
            "`flakeRef` and `storePaths`",
        ),
        (
            publish_request("v", &target, true, &[("flakeRef", "not a flake ref")]),
            "`flakeRef`",
        ),
        (
            publish_request("v", &target, true, &[("flakeRef", "path:/etc")]),
            "`flakeRef`: flake ref `path:/etc` is not allowed on this node",
        ),
        (
            publish_request("v", &target, true, &[("storePaths", "/etc/passwd")]),
            "`storePaths`",
        ),
        (
            publish_request(
                "v",
                &target,
                true,
                &[("storePaths", &out), ("timeout", "soon")],
            ),
            "`timeout`",
        ),
        (
            publish_request("v", &target, true, &[("storePaths", &out), ("flake", "x")]),
            "unknown volume attribute `flake`",
        ),
        (
            NodePublishVolumeRequest {
                target_path: String::new(),
                ..publish_request("v", &target, true, &[("storePaths", &out)])
            },
            "`target_path` is required",
        ),
        (
            NodePublishVolumeRequest {
                target_path: "relative/target".into(),
                ..publish_request("v", &target, true, &[("storePaths", &out)])
            },
            "`target_path`",
        ),
        (
            NodePublishVolumeRequest {
                volume_id: String::new(),
                ..publish_request("v", &target, true, &[("storePaths", &out)])
            },
            "`volume_id` is required",
        ),
        (
            NodePublishVolumeRequest {
                volume_capability: None,
                ..publish_request("v", &target, true, &[("storePaths", &out)])
            },
            "`volume_capability` is required",
        ),
    ];
    for (request, expected) in cases {
        let status = client
            .node
            .node_publish_volume(request.clone())
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{request:?}: {status}"
        );
        assert!(
            status.message().contains(expected),
            "{expected:?} not in {:?}",
            status.message()
        );
        assert_nothing_left(dir.path(), &target);
    }
    plugin.stop().await;
}

#[tokio::test]
async fn a_store_path_missing_from_the_store_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = Plugin::start(dir.path()).await;
    let mut client = plugin.client().await;
    let target = dir.path().join("target");
    let missing = format!("/nix/store/{}-not-there-1.0", "0".repeat(32));
    let status = client
        .node
        .node_publish_volume(publish_request(
            "csi-missing",
            &target,
            true,
            &[("storePaths", &missing)],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status}");
    assert!(
        status.message().contains(&format!(
            "volume attribute `storePaths`: {missing} could not be substituted"
        )),
        "names the attribute and the step: {status}"
    );
    assert_nothing_left(dir.path(), &target);
    plugin.stop().await;
}

#[tokio::test]
async fn identity_and_capabilities_report_only_what_is_implemented() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = Plugin::start(dir.path()).await;
    let mut client = plugin.client().await;

    let info = client
        .identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "containix.dev");
    assert_eq!(info.vendor_version, containix_core::VERSION);
    let capabilities = client
        .identity
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        capabilities.capabilities.is_empty(),
        "a node-only plugin: {capabilities:?}"
    );
    let probe = client.identity.probe(ProbeRequest {}).await.unwrap();
    assert_eq!(probe.into_inner().ready, Some(true));
    // The unadvertised Controller service names no capability (one UNKNOWN entry, which
    // csi-sanity v5.1.0 needs in place of an empty list).
    let controller = client
        .controller
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<_> = controller
        .capabilities
        .iter()
        .map(|c| match &c.r#type {
            Some(ControllerCapabilityType::Rpc(rpc)) => rpc.r#type(),
            None => panic!("{c:?}"),
        })
        .collect();
    assert_eq!(kinds, [controller_rpc::Type::Unknown]);

    let node = client
        .node
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<_> = node
        .capabilities
        .iter()
        .map(|c| match &c.r#type {
            Some(CapabilityType::Rpc(Rpc { r#type })) => rpc::Type::try_from(*r#type).unwrap(),
            None => panic!("{c:?}"),
        })
        .collect();
    assert_eq!(kinds, [rpc::Type::GetVolumeStats]);
    let info = client
        .node
        .node_get_info(NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.node_id, NODE_ID);

    let status = client
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "csi-unknown".into(),
            volume_path: dir.path().join("nowhere").display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status}");
    let status = client
        .node
        .node_stage_volume(NodeStageVolumeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status}");
    let status = client
        .node
        .node_expand_volume(NodeExpandVolumeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status}");
    plugin.stop().await;
}

#[tokio::test]
async fn without_a_daemon_probe_is_not_ready_and_publish_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let plugin =
        Plugin::start_with_daemon_socket(dir.path(), &dir.path().join("no-daemon.sock"), "").await;
    let mut client = plugin.client().await;
    let probe = client.identity.probe(ProbeRequest {}).await.unwrap();
    assert_eq!(probe.into_inner().ready, Some(false));
    let target = dir.path().join("target");
    let path = format!("/nix/store/{}-app", "1".repeat(32));
    let status = client
        .node
        .node_publish_volume(publish_request(
            "csi-nodaemon",
            &target,
            true,
            &[("storePaths", &path)],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    assert!(
        status
            .message()
            .contains("volume attribute `storePaths`: connecting to the Nix daemon"),
        "{status}"
    );
    assert_nothing_left(dir.path(), &target);
    plugin.stop().await;
}

#[tokio::test]
async fn a_published_volume_at_nix_runs_its_program_in_a_runc_container() {
    let built = Fixture::Hello.build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugin = Plugin::start(dir.path()).await;
    let mut client = plugin.client().await;
    let target = dir.path().join("pod/volumes/nix/mount");
    publish(&mut client, "csi-pod", &target, true, &built).await;

    let node = Containerd::start(ContainerdOptions::default())
        .await
        .unwrap();
    let log_dir = node.create_pod_log_dir("csi").unwrap();
    let config = PodSandboxSpec::new("csi").log_directory(&log_dir).build();
    let cri = node.cri();
    let sandbox = cri.run_pod_sandbox(&config, "").await.unwrap();
    let spec = ContainerSpec::new("hello", node.busybox_image())
        .command(["/nix/bin/hello"])
        .mount(&target, "/nix", true);
    let container = cri
        .create_container(&sandbox, &spec.build(), &config)
        .await
        .unwrap();
    cri.start_container(&container).await.unwrap();
    let status = cri.wait_for_exit(&container, HANG_GUARD).await.unwrap();
    let log = ContainerLog::read(&log_dir.join(spec.relative_log_path()))
        .await
        .unwrap();
    assert_eq!(status.exit_code, 0, "{log:?}");
    assert_eq!(
        log.stdout(),
        "Hello from containix!\nYour closure came straight from the Nix store."
    );
    cri.remove_container(&container).await.unwrap();
    cri.stop_pod_sandbox(&sandbox).await.unwrap();
    cri.remove_pod_sandbox(&sandbox).await.unwrap();
    let report = node.stop().await.unwrap();
    assert!(report.is_clean(), "{report:?}");

    unpublish(&mut client, "csi-pod", &target).await;
    assert_nothing_left(dir.path(), &target);
    plugin.stop().await;
}

#[tokio::test]
async fn a_flake_volume_s_build_output_is_in_the_plugin_s_log() {
    // Nothing of this flake is built: publishing the volume runs the build.
    let flake = Fixture::BuildLog.unbuilt_isolated().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plugin = Plugin::start(dir.path()).await;
    let mut client = plugin.client().await;
    let target = dir.path().join("pod/volumes/nix/mount");
    publish_attributes(
        &mut client,
        "csi-build-log",
        &target,
        &[("flakeRef", &flake.flake_ref("default"))],
    )
    .await;
    let marker = format!("{BUILD_LOG_MARKER}{}", flake.salt);
    let log = plugin.log();
    let line = log
        .lines()
        .find(|line| line.contains(&marker))
        .unwrap_or_else(|| panic!("no {marker:?} in the plugin's log:\n{log}"));
    assert!(line.contains("INFO containix::nix"), "{line}");
    assert!(line.contains("drv=/nix/store/"), "{line}");

    unpublish(&mut client, "csi-build-log", &target).await;
    assert_nothing_left(dir.path(), &target);
    plugin.stop().await;
    flake.delete_from_store().unwrap();
}
