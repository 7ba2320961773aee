//! What the fault-injection tests (`faults_*.rs`) share: starting a container as a kubelet does
//! (with a CRI deadline, removing a container whose start failed), and the check every fault
//! ends with, that the node holds nothing of containix any more: no file under its state dir
//! (views, GC roots, container state, in-flight resolutions, temporary files), no mount under
//! it, no resolution worker.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containix_core::image::oci_image::EMPTY_IMAGE_NAME;
use containix_testkit::binary_cache::BinaryCache;
use containix_testkit::containerd::{
    CONTAINIX_RUNTIME_HANDLER, Containerd, ContainerdOptions, mounts_under,
};
use containix_testkit::cri::{ContainerLog, ContainerSpec, PodSandboxSpec};
use containix_testkit::faulty_cache::FaultyCache;
use containix_testkit::fixtures::{Built, Fixture, is_valid_path};
use containix_testkit::pod::CriPod;
use containix_testkit::private_daemon::PrivateNixDaemon;

use crate::{LIMIT, eventually};

/// The deadline a kubelet gives StartContainer here (its default is 2 minutes): long enough
/// for any closure of these tests, short enough that a stall shows up as a failed start.
pub const CRI_DEADLINE: Duration = Duration::from_secs(15);

/// A container of the empty image that runs the closure's main program.
pub fn app(attempt: u32) -> ContainerSpec {
    ContainerSpec::new(&format!("app-{attempt}"), EMPTY_IMAGE_NAME)
}

/// What a kubelet does to start a pod's container: create attempt `n`, start it within
/// `deadline`; on failure the container is removed and the error is the text the pod's events
/// would show.
pub async fn attempt(pod: &CriPod, n: u32, deadline: Duration) -> Result<String, String> {
    let spec = app(n);
    let id = pod
        .cri
        .create_container(&pod.id, &spec.build(), &pod.config)
        .await
        .map_err(|e| e.to_string())?;
    match pod.cri.start_container_within(&id, Some(deadline)).await {
        Ok(()) => Ok(id),
        Err(err) => {
            let _ = pod.cri.remove_container(&id).await;
            Err(err.to_string())
        }
    }
}

/// Waits for container `id` (attempt `n`) to exit: its exit code and standard output.
pub async fn output_of(pod: &CriPod, id: &str, n: u32) -> (i32, String) {
    let status = pod.cri.wait_for_exit(id, LIMIT).await.unwrap();
    let log = ContainerLog::read(&pod.log_dir.join(app(n).relative_log_path()))
        .await
        .unwrap();
    (status.exit_code, log.stdout())
}

/// The part of a CRI error a pod's events show from containix: from `containix: ` on.
pub fn containix_message(error: &str) -> Option<&str> {
    error.find("containix: ").map(|at| &error[at..])
}

/// Every file (and empty directory) under the node's containix state dir except the
/// resolution cache (`cache/`, evaluation results kept on purpose) and the directories
/// containix keeps (their entries are listed instead).
pub fn state_leftovers(state_dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let before = out.len();
                walk(&path, out);
                if out.len() == before && !KEPT_DIRS.iter().any(|kept| path.ends_with(kept)) {
                    out.push(path);
                }
            } else {
                out.push(path);
            }
        }
    }
    /// Directories containix creates once and keeps, empty, between pods.
    const KEPT_DIRS: [&str; 6] = [
        "gcroots",
        "containers",
        "views",
        "views/locks",
        "inflight",
        "volumes",
    ];
    let mut out = Vec::new();
    for entry in std::fs::read_dir(state_dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_name() == "cache" {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&path, &mut out);
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Detached resolution workers whose environment names `policy` (the node's policy file).
pub fn resolution_workers(policy: &Path) -> Vec<i32> {
    let policy = policy.to_string_lossy();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            (String::from_utf8_lossy(&cmdline).contains("containix-resolve")
                && String::from_utf8_lossy(&environ).contains(policy.as_ref()))
            .then_some(pid)
        })
        .collect()
}

/// Waits until the node holds nothing of containix: no file under its state dir (see
/// [`state_leftovers`]), no mount there, no resolution worker. `what` names the moment, for
/// the failure message.
pub async fn assert_nothing_left(node: &Containerd, what: &str) {
    let state = node.layout().containix_state();
    let policy = node.layout().containix_policy();
    // Mounts below the state dir (not of it: a test may put it on a filesystem of its own).
    let mounts = || -> Vec<PathBuf> {
        mounts_under(&state)
            .into_iter()
            .filter(|m| *m != state)
            .collect()
    };
    let check = async || {
        state_leftovers(&state).is_empty()
            && mounts().is_empty()
            && resolution_workers(&policy).is_empty()
    };
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !check().await {
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "{what}: containix left files {:#?}, mounts {:#?}, workers {:?}",
                state_leftovers(&state),
                mounts(),
                resolution_workers(&policy)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Settled: stays so (nothing comes back a moment later).
    eventually(what, check).await;
}

/// A test node that substitutes from a [`FaultyCache`]: a private nix-daemon whose `nix.conf`
/// names the cache (its only substituter, its key the only trusted one, `require-sigs`), and a
/// containerd whose containix policy uses that daemon and never builds. The closure the pods
/// ask for (the diamond fixture, built privately) is in the cache and not in the store.
pub struct SubstitutingNode {
    /// containerd with the containix handler.
    pub node: Containerd,
    /// The daemon containix talks to, which a test may kill.
    pub daemon: PrivateNixDaemon,
    /// The cache the daemon substitutes from, whose faults a test switches.
    pub cache: FaultyCache,
    /// The closure pods ask for by store path.
    pub built: Built,
    /// Holds the cache's files.
    _store: BinaryCache,
}

/// The resolution deadline of the [`SubstitutingNode`]'s policy: a stall fails the resolution
/// after this long.
pub const RESOLUTION_DEADLINE: &str = "6s";

impl SubstitutingNode {
    /// Builds the closure, pushes it to a fresh cache (NARs uncompressed), removes it from the
    /// store and starts the daemon and containerd.
    pub async fn start() -> SubstitutingNode {
        let built = Fixture::Diamond.build_isolated().unwrap();
        let store = BinaryCache::create().unwrap();
        store.push_uncompressed(&[&built.out_path]).unwrap();
        built.delete_from_store().unwrap();
        let cache = FaultyCache::serve(store.dir()).unwrap();
        // One download attempt: a refused connection fails at once instead of after Nix's
        // back-off (5 attempts by default), which only delays the same answer.
        let daemon = PrivateNixDaemon::start(&format!(
            "substituters = {}\ntrusted-public-keys = {}\nrequire-sigs = true\n\
             download-attempts = 1\n",
            cache.url(),
            store.public_key()
        ))
        .unwrap();
        let options = ContainerdOptions {
            containix_policy: format!(
                "daemon-socket = {:?}\nrealise = \"substitute\"\ndefault-timeout = \"{}\"\n",
                daemon.socket_path().display().to_string(),
                RESOLUTION_DEADLINE
            ),
            ..ContainerdOptions::default()
        };
        let node = Containerd::start(options)
            .await
            .unwrap_or_else(|e| panic!("starting the test containerd: {e}"));
        SubstitutingNode {
            node,
            daemon,
            cache,
            built,
            _store: store,
        }
    }

    /// A pod whose containers run the closure (`containix.dev/store-paths`).
    pub async fn pod(&self, name: &str) -> CriPod {
        let spec = PodSandboxSpec::new(name)
            .annotation(
                "containix.dev/store-paths",
                &self.built.out_path.display().to_string(),
            )
            .annotation("containix.dev/entrypoint", "/bin/diamond");
        CriPod::run(&self.node, spec, CONTAINIX_RUNTIME_HANDLER)
            .await
            .unwrap()
    }

    /// Whether the closure's root is valid in the store.
    pub fn substituted(&self) -> bool {
        is_valid_path(&self.built.out_path).unwrap()
    }

    /// Starts the pod's container once the fault is gone (attempt `n`) and checks that it ran
    /// the closure's program; then removes the pod, checks nothing is left, and removes the
    /// closure from the store again for the next fault.
    pub async fn retry_succeeds_and_clean_up(&self, pod: CriPod, n: u32, fault: &str) {
        let id = attempt(&pod, n, CRI_DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("{fault}: the retry without the fault failed: {e}"));
        let (code, stdout) = output_of(&pod, &id, n).await;
        assert_eq!(code, 0, "{fault}: {stdout}");
        assert!(stdout.starts_with("top over "), "{fault}: {stdout}");
        pod.remove(LIMIT).await.unwrap();
        assert_nothing_left(&self.node, &format!("{fault}, after the pod")).await;
        self.assert_no_daemon_work(fault).await;
        self.built.delete_from_store().unwrap();
    }

    /// The daemon serves no connection (containix keeps none open once a resolution ends).
    pub async fn assert_no_daemon_work(&self, fault: &str) {
        let what = format!("{fault}: the daemon's connections to close");
        eventually(&what, async || self.daemon.connection_workers().is_empty()).await;
    }
}
