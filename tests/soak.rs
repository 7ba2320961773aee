//! The soak: many create/delete cycles through containerd's CRI on the real test node, the way
//! a busy node sees them, then a count of everything a leak would leave and of how the
//! long-lived processes grew. `scripts/soak.sh N` runs it (the test is ignored otherwise).
//!
//! Every cycle publishes a CSI volume through the `containix-csi` plugin's gRPC, runs a
//! containix pod (a store-paths closure) with a passthrough sidecar that mounts the volume,
//! then removes the pod and unpublishes the volume. Closures rotate over a few synthetic
//! graphs, and the volume's closure is another pod's, so pods and volumes share store views.
//! One resident pod per closure lives through the whole run: its shim is long-lived, and its
//! view never goes, so cycles take and release users of a live view as well as whole views.
//!
//! The table it prints: cycles, failures, what is left once every pod and volume is gone
//! (mounts, GC roots, store views, state files, shim processes), and the RSS and open fds of
//! containerd, the resident pods' shims, the CSI plugin and the nix-daemon at the start, after
//! a warm-up, and at the end. RSS growth is measured from the warm-up (allocators and caches
//! settle in the first cycles), and must stay under 5%.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use containix_core::image::oci_image::EMPTY_IMAGE_NAME;
use containix_core::store::daemon::DaemonClient;
use containix_csi::client::{CsiClient, connect};
use containix_csi::proto::volume_capability::{AccessMode, AccessType, MountVolume, access_mode};
use containix_csi::proto::{
    NodePublishVolumeRequest, NodeUnpublishVolumeRequest, VolumeCapability,
};
use containix_testkit::containerd::{
    CONTAINIX_RUNTIME_HANDLER, Containerd, ContainerdOptions, mounts_under,
};
use containix_testkit::cri::proto::ContainerState;
use containix_testkit::cri::{ContainerSpec, PodSandboxSpec};
use containix_testkit::fixtures::{self, Built};
use containix_testkit::nix_daemon::{self, NixDaemon};
use containix_testkit::pod::CriPod;
use containix_testkit::synthetic_store::SyntheticGraph;
use containix_tests::{LIMIT, csi_bin, shim_side_processes, stop_cleanly};

/// Cycles when `CONTAINIX_SOAK_CYCLES` is not set.
const DEFAULT_CYCLES: usize = 100;
/// Distinct closures the pods and volumes rotate over.
const CLOSURES: usize = 3;
/// Store paths in each closure's synthetic part.
const SYNTHETIC_PATHS: usize = 20;
/// Seeds of the synthetic graphs (distinct from other tests' so all can run at once).
const FIRST_SEED: u64 = 0x50a6_0000;
/// The largest RSS growth accepted from the warm-up to the end, in percent.
const RSS_GROWTH_LIMIT: f64 = 5.0;

/// One closure: its `containix.dev/store-paths` (and CSI `storePaths`) value.
struct SoakClosure {
    store_paths: String,
}

fn soak_closures(hello: &Built) -> Vec<SoakClosure> {
    (0..CLOSURES as u64)
        .map(|k| {
            let graph = SyntheticGraph::plan(SYNTHETIC_PATHS, FIRST_SEED + k).unwrap();
            graph.import().unwrap();
            SoakClosure {
                store_paths: format!("{} {}", hello.out_path.display(), graph.root().display()),
            }
        })
        .collect()
}

/// The CSI plugin, sharing the node's state dir (and so its store views) with the shims.
struct Plugin {
    child: Child,
    dir: PathBuf,
}

impl Plugin {
    async fn start(dir: &Path, node_state: &Path, daemon_socket: &Path) -> Plugin {
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "daemon-socket = {:?}\nstate-dir = {:?}\ndefault-timeout = \"1m\"\n",
                daemon_socket.display().to_string(),
                node_state.display().to_string(),
            ),
        )
        .unwrap();
        let child = Command::new(csi_bin())
            .arg("--endpoint")
            .arg(format!("unix://{}", dir.join("csi.sock").display()))
            .arg("--node-id")
            .arg("soak-node")
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(dir.join("plugin.log")).unwrap())
            .spawn()
            .unwrap();
        let mut plugin = Plugin {
            child,
            dir: dir.to_owned(),
        };
        let started = Instant::now();
        while connect(&plugin.socket()).await.is_err() {
            if let Some(status) = plugin.child.try_wait().unwrap() {
                panic!("containix-csi exited with {status}: {}", plugin.log());
            }
            assert!(started.elapsed() < LIMIT, "no socket: {}", plugin.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        plugin
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("csi.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("plugin.log")).unwrap_or_default()
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM and a clean exit.
    async fn stop(mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::SIGTERM,
        )
        .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(started.elapsed() < LIMIT, "plugin did not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            status.success(),
            "plugin exited with {status}: {}",
            self.log()
        );
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

fn publish_request(volume_id: &str, target: &Path, store_paths: &str) -> NodePublishVolumeRequest {
    let context: HashMap<String, String> = [
        ("storePaths", store_paths),
        ("csi.storage.k8s.io/pod.name", volume_id),
        ("csi.storage.k8s.io/pod.namespace", "soak"),
        ("csi.storage.k8s.io/ephemeral", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    NodePublishVolumeRequest {
        volume_id: volume_id.to_owned(),
        target_path: target.display().to_string(),
        volume_capability: Some(VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume::default())),
            access_mode: Some(AccessMode {
                mode: access_mode::Mode::SingleNodeReaderOnly.into(),
            }),
        }),
        readonly: true,
        volume_context: context,
        ..Default::default()
    }
}

async fn unpublish(csi: &mut CsiClient, volume_id: &str, target: &Path) -> Result<(), String> {
    csi.node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: volume_id.to_owned(),
            target_path: target.display().to_string(),
        })
        .await
        .map(drop)
        .map_err(|status| format!("unpublish {volume_id}: {status}"))
}

/// What one cycle needs from the run.
struct Soak<'a> {
    node: &'a Containerd,
    csi: CsiClient,
    targets: PathBuf,
    closures: &'a [SoakClosure],
    busybox: String,
}

impl Soak<'_> {
    async fn run_pod(&self, name: &str, closure: &SoakClosure) -> Result<CriPod, String> {
        let spec = PodSandboxSpec::new(name)
            .namespace("soak")
            .annotation("containix.dev/store-paths", &closure.store_paths)
            .annotation("containix.dev/passthrough", "sidecar");
        CriPod::run(self.node, spec, CONTAINIX_RUNTIME_HANDLER).await
    }

    /// The containix container: it sleeps for longer than any run (the residents' must never
    /// exit on their own).
    fn app(&self) -> ContainerSpec {
        ContainerSpec::new("app", EMPTY_IMAGE_NAME).command([
            self.busybox.as_str(),
            "sleep",
            "100000000",
        ])
    }

    /// One create/delete cycle: publish, run the pod and its containers, remove, unpublish.
    /// On a failure, whatever was made is still removed (and a removal failure is reported).
    async fn cycle(&mut self, i: usize) -> Result<(), String> {
        let volume_id = format!("soak-{i}");
        let target = self.targets.join(&volume_id);
        let volume_closure = &self.closures[(i + 1) % self.closures.len()];
        self.csi
            .node
            .node_publish_volume(publish_request(
                &volume_id,
                &target,
                &volume_closure.store_paths,
            ))
            .await
            .map_err(|status| format!("publish {volume_id}: {status}"))?;
        let pod = self
            .run_pod(
                &format!("cycle-{i}"),
                &self.closures[i % self.closures.len()],
            )
            .await;
        let started = match &pod {
            Ok(pod) => {
                let sidecar = ContainerSpec::new("sidecar", self.node.busybox_image())
                    .command(["sleep", "100000000"])
                    .mount(&target, "/vol", true);
                match pod.start(&self.app()).await {
                    Ok(_) => pod.start(&sidecar).await.map(drop),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e.clone()),
        };
        let removed = match pod {
            Ok(pod) => pod.remove(LIMIT).await,
            Err(_) => Ok(()),
        };
        let unpublished = unpublish(&mut self.csi, &volume_id, &target).await;
        started.and(removed).and(unpublished)
    }
}

/// A long-lived process's RSS (KiB) and open fds.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    rss_kib: u64,
    fds: usize,
}

fn usage(pid: i32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    Usage { rss_kib, fds }
}

/// The nix-daemon's listening (parent) process: the one the testkit started, or else the
/// oldest `nix-daemon` whose parent is not one (per-connection workers are its children).
fn nix_daemon_pid() -> Option<i32> {
    let recorded = std::fs::read_to_string(Path::new(nix_daemon::STATE_DIR).join("daemon.pid"))
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        .filter(|pid| comm(*pid) == "nix-daemon");
    recorded.or_else(|| {
        let mut candidates: Vec<i32> = std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| comm(*pid) == "nix-daemon" && comm(parent(*pid)) != "nix-daemon")
            .collect();
        candidates.sort();
        candidates.first().copied()
    })
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn parent(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the parenthesised command: state, then the parent pid.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|ppid| ppid.parse().ok())
        .unwrap_or(0)
}

/// A long-lived process of the node, sampled at the start, after the warm-up and at the end.
struct Watched {
    name: String,
    pid: i32,
    samples: Vec<Usage>,
    /// RSS (KiB) after every tenth of the cycles: a leak grows steadily, a warming cache levels.
    trend: Vec<u64>,
}

impl Watched {
    fn sample(&mut self) {
        self.samples.push(usage(self.pid));
    }

    /// RSS growth from the warm-up sample to the last, in percent.
    fn rss_growth(&self) -> f64 {
        let base = self.samples[1].rss_kib as f64;
        let end = self.samples.last().unwrap().rss_kib as f64;
        (end - base) / base * 100.0
    }

    fn fd_growth(&self) -> i64 {
        self.samples.last().unwrap().fds as i64 - self.samples[1].fds as i64
    }
}

/// What a leak would leave once every pod and volume is gone.
#[derive(Debug, Default, PartialEq)]
struct Leftovers {
    mounts: Vec<PathBuf>,
    gc_roots: Vec<String>,
    views: Vec<PathBuf>,
    state_files: Vec<PathBuf>,
    processes: Vec<String>,
}

impl Leftovers {
    fn is_empty(&self) -> bool {
        *self == Leftovers::default()
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            files_under(&entry.path(), out);
        } else {
            out.push(entry.path());
        }
    }
}

async fn leftovers(node: &Containerd, plugin_dir: &Path, daemon_socket: &Path) -> Leftovers {
    let state = node.layout().containix_state();
    let mut mounts = mounts_under(node.layout().dir());
    mounts.extend(mounts_under(plugin_dir));
    let mut daemon = DaemonClient::connect(daemon_socket).await.unwrap();
    let gc_roots: Vec<String> = daemon
        .find_roots()
        .await
        .unwrap()
        .into_iter()
        .map(|root| root.link)
        .filter(|link| {
            Path::new(link).starts_with(&state) || Path::new(link).starts_with(plugin_dir)
        })
        .collect();
    let views: Vec<PathBuf> = std::fs::read_dir(state.join("views"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.len() == 32))
        .collect();
    let mut state_files = Vec::new();
    for dir in [
        state.join("gcroots"),
        state.join("containers"),
        state.join("views"),
        plugin_dir.join("state/volumes"),
        plugin_dir.join("state/gcroots"),
        plugin_dir.join("targets"),
    ] {
        files_under(&dir, &mut state_files);
    }
    Leftovers {
        mounts,
        gc_roots,
        views,
        state_files,
        processes: shim_side_processes(node),
    }
}

fn cycles() -> usize {
    std::env::var("CONTAINIX_SOAK_CYCLES")
        .ok()
        .map(|text| {
            text.parse()
                .expect("CONTAINIX_SOAK_CYCLES: a number of cycles")
        })
        .unwrap_or(DEFAULT_CYCLES)
}

#[tokio::test]
#[ignore = "the soak runs from scripts/soak.sh"]
async fn soak() {
    let cycles = cycles();
    // A tenth of the run: containerd's Go heap swings by a few percent from one GC to the next,
    // so the baseline is taken once the allocators and caches have settled.
    let warm_up = (cycles / 10).max(1);
    let hello = fixtures::example_hello().unwrap();
    let busybox = format!(
        "{}/busybox",
        hello.closure_member("busybox").unwrap().display()
    );
    let closures = soak_closures(&hello);
    let daemon = NixDaemon::start_or_reuse().unwrap();
    let daemon_socket = daemon.socket_path().to_owned();
    let node = Containerd::start(ContainerdOptions::default())
        .await
        .unwrap_or_else(|e| panic!("starting the test containerd: {e}"));
    let plugin_dir = tempfile::tempdir().unwrap();
    let plugin = Plugin::start(
        plugin_dir.path(),
        &node.layout().containix_state(),
        &daemon_socket,
    )
    .await;
    let targets = plugin_dir.path().join("targets");
    std::fs::create_dir_all(&targets).unwrap();
    let mut soak = Soak {
        node: &node,
        csi: connect(&plugin.socket()).await.unwrap(),
        targets,
        closures: &closures,
        busybox,
    };

    let mut residents = Vec::new();
    let mut resident_containers = Vec::new();
    for (k, closure) in closures.iter().enumerate() {
        let pod = soak
            .run_pod(&format!("resident-{k}"), closure)
            .await
            .unwrap();
        resident_containers.push(pod.start(&soak.app()).await.unwrap());
        residents.push(pod);
    }
    let mut watched = vec![Watched {
        name: "containerd".into(),
        pid: node.pid().unwrap() as i32,
        samples: Vec::new(),
        trend: Vec::new(),
    }];
    for (k, pod) in residents.iter().enumerate() {
        let shim = node
            .leftover_processes()
            .into_iter()
            .find(|p| {
                p.command.contains("containerd-shim-containix-v1") && p.command.contains(&pod.id)
            })
            .expect("a resident pod's shim");
        watched.push(Watched {
            name: format!("shim of resident-{k}"),
            pid: shim.pid,
            samples: Vec::new(),
            trend: Vec::new(),
        });
    }
    watched.push(Watched {
        name: "containix-csi".into(),
        pid: plugin.pid(),
        samples: Vec::new(),
        trend: Vec::new(),
    });
    if let Some(pid) = nix_daemon_pid() {
        watched.push(Watched {
            name: "nix-daemon".into(),
            pid,
            samples: Vec::new(),
            trend: Vec::new(),
        });
    }
    watched.iter_mut().for_each(Watched::sample);

    let started = Instant::now();
    let mut failures = Vec::new();
    for i in 0..cycles {
        let mut result = soak.cycle(i).await;
        // The residents run through the whole soak: a cycle must never disturb them.
        for container in &resident_containers {
            let state = node
                .cri()
                .container_status(container)
                .await
                .map(|s| s.state());
            if !matches!(state, Ok(ContainerState::ContainerRunning)) && result.is_ok() {
                result = Err(format!("resident container {container} is {state:?}"));
            }
        }
        if let Err(error) = result {
            eprintln!("soak: cycle {i} failed: {error}");
            failures.push((i, error));
        }
        if i + 1 == warm_up {
            watched.iter_mut().for_each(Watched::sample);
        }
        if (i + 1) % (cycles / 10).max(1) == 0 {
            for w in &mut watched {
                w.trend.push(usage(w.pid).rss_kib);
            }
        }
        if (i + 1) % 100 == 0 {
            eprintln!("soak: {} cycles in {:.0?}", i + 1, started.elapsed());
        }
    }
    let elapsed = started.elapsed();
    watched.iter_mut().for_each(Watched::sample);

    for pod in residents {
        pod.remove(LIMIT).await.unwrap();
    }
    drop(soak);
    let wait_until = Instant::now() + LIMIT;
    let mut left = leftovers(&node, plugin_dir.path(), &daemon_socket).await;
    while !left.is_empty() && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = leftovers(&node, plugin_dir.path(), &daemon_socket).await;
    }

    println!(
        "\nsoak: {cycles} cycles in {elapsed:.1?}, {} failures",
        failures.len()
    );
    println!(
        "left over: mounts {}, GC roots {}, store views {}, state files {}, shim-side processes {}",
        left.mounts.len(),
        left.gc_roots.len(),
        left.views.len(),
        left.state_files.len(),
        left.processes.len()
    );
    println!(
        "\n| process | RSS start (KiB) | RSS after {warm_up} cycles | RSS end | RSS growth | fds after warm-up | fds end |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for w in &watched {
        println!(
            "| {} | {} | {} | {} | {:+.1}% | {} | {} |",
            w.name,
            w.samples[0].rss_kib,
            w.samples[1].rss_kib,
            w.samples[2].rss_kib,
            w.rss_growth(),
            w.samples[1].fds,
            w.samples[2].fds
        );
    }
    println!("\nRSS (KiB) after each tenth of the cycles:");
    for w in &watched {
        let trend: Vec<String> = w.trend.iter().map(u64::to_string).collect();
        println!("  {}: {}", w.name, trend.join(" "));
    }
    println!();

    plugin.stop().await;
    assert!(failures.is_empty(), "failed cycles: {failures:?}");
    assert!(left.is_empty(), "left behind: {left:#?}");
    for w in &watched {
        assert!(
            w.rss_growth() < RSS_GROWTH_LIMIT,
            "{} grew {:.1}% in RSS",
            w.name,
            w.rss_growth()
        );
        assert!(
            w.fd_growth() <= 0,
            "{} has {} more open fds",
            w.name,
            w.fd_growth()
        );
    }
    stop_cleanly(node).await;
}
