//! Pods through CRI for the end-to-end benchmarks (`pod_start`, `store_views`): timing a pod
//! from RunPodSandbox to its first line of output, the image that holds store paths for the runc
//! baseline, and the resident memory of shim processes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use containix_core::image::oci_image::{ImageLayer, LayerEntry, OciImage, OciImageBuilder};
use containix_testkit::containerd::Containerd;
use containix_testkit::cri::{ContainerLog, ContainerSpec, PodSandboxSpec};
use containix_testkit::pod::CriPod;

/// Hang guard for a pod that never prints or never stops; not a performance bound.
pub const LIMIT: Duration = Duration::from_secs(120);
/// How often a container's log file is read while waiting for its first line.
const LOG_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// A pod started by [`start_to_first_line`]: still there (its container may have exited), to be
/// removed with [`StartedPod::remove`].
pub struct StartedPod {
    /// The pod.
    pub pod: CriPod,
    /// Its container's CRI log file.
    pub log: PathBuf,
}

impl StartedPod {
    /// The container's log as parsed CRI lines.
    pub async fn read_log(&self) -> ContainerLog {
        ContainerLog::read(&self.log)
            .await
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.log.display()))
    }

    /// Removes the pod as a kubelet does (stop and remove the container, then the sandbox).
    pub async fn remove(self) {
        let id = self.pod.id.clone();
        self.pod
            .remove(LIMIT)
            .await
            .unwrap_or_else(|e| panic!("removing pod {id}: {e}"));
    }
}

/// One pod: RunPodSandbox (`spec` with runtime `handler`), CreateContainer and StartContainer of
/// `container`, then polling its CRI log file until it holds a complete line. Returns the pod and
/// the time from RunPodSandbox to that line. Panics naming `what` if a call fails.
pub async fn start_to_first_line(
    node: &Containerd,
    spec: PodSandboxSpec,
    handler: &str,
    container: &ContainerSpec,
    what: &str,
) -> (StartedPod, Duration) {
    let start = Instant::now();
    let pod = CriPod::run(node, spec, handler)
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox ({what}): {e}{}", log_tail(node)));
    pod.start(container).await.unwrap_or_else(|e| {
        panic!(
            "CreateContainer/StartContainer ({what}): {e}{}",
            log_tail(node)
        )
    });
    let log = pod.log_dir.join(container.relative_log_path());
    first_line(&log).await;
    let elapsed = start.elapsed();
    (StartedPod { pod, log }, elapsed)
}

/// How many of containerd's last log lines a failed pod's panic shows.
const LOG_TAIL_LINES: usize = 40;

/// The end of `node`'s containerd log (where the shims log too), for a panic message: the node
/// and its log are gone once the panic has unwound.
pub fn log_tail(node: &Containerd) -> String {
    let log = std::fs::read_to_string(node.layout().log()).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    format!("\n-- the end of containerd's log --\n{}", tail.join("\n"))
}

/// Waits until the CRI log file at `path` holds a complete line.
pub async fn first_line(path: &Path) {
    let deadline = Instant::now() + LIMIT;
    loop {
        if std::fs::read(path).is_ok_and(|log| log.contains(&b'\n')) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no output in {} after {LIMIT:?}",
            path.display()
        );
        tokio::time::sleep(LOG_POLL_INTERVAL).await;
    }
}

/// An image named `name` whose one layer holds `store_paths` (absolute, copied with their
/// contents) at the same paths, with entrypoint `entrypoint`: the same program a containix pod
/// runs from the store, as an ordinary image.
pub fn store_image(name: &str, store_paths: &[PathBuf], entrypoint: &[&str]) -> OciImage {
    let mut layer = ImageLayer::new()
        .with(LayerEntry::directory("etc", 0o755))
        .with(LayerEntry::directory("tmp", 0o1777))
        .with(LayerEntry::directory("nix", 0o755))
        .with(LayerEntry::directory("nix/store", 0o755));
    for path in store_paths {
        add_tree(&mut layer, path);
    }
    OciImageBuilder::new(name)
        .and_then(|builder| {
            builder
                .layer(layer)
                .entrypoint(entrypoint.iter().copied())
                .build()
        })
        .unwrap_or_else(|e| panic!("building image {name}: {e}"))
}

/// Adds `path` (absolute) and everything below it to `layer`, parents first.
fn add_tree(layer: &mut ImageLayer, path: &Path) {
    use std::os::unix::fs::PermissionsExt;

    let metadata = std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let inside = path
        .to_str()
        .expect("UTF-8 store path")
        .trim_start_matches('/');
    let mode = metadata.permissions().mode() & 0o7777;
    if metadata.is_symlink() {
        let target = std::fs::read_link(path).expect("reading a symlink");
        layer.push(LayerEntry::symlink(
            inside,
            target.to_str().expect("UTF-8 link target"),
        ));
    } else if metadata.is_dir() {
        layer.push(LayerEntry::directory(inside, mode));
        let mut children: Vec<PathBuf> = std::fs::read_dir(path)
            .expect("listing a store directory")
            .map(|entry| entry.expect("a directory entry").path())
            .collect();
        children.sort();
        for child in children {
            add_tree(layer, &child);
        }
    } else {
        let contents = std::fs::read(path).expect("reading a store file");
        layer.push(LayerEntry::file(inside, mode, contents));
    }
}

/// Resident memory of a set of processes, from `/proc/<pid>/status`, in KiB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resident {
    /// How many processes.
    pub processes: usize,
    /// Summed `VmRSS`.
    pub total: u64,
    /// Summed `RssAnon` (heap, stacks: private to each process).
    pub anon: u64,
    /// Summed `RssFile` (mapped files, mostly the binary and libraries; shared between processes
    /// of one binary, but counted in each one's `VmRSS`).
    pub file: u64,
    /// Summed `Threads`.
    pub threads: u64,
    /// Summed proportional set size (`Pss` in `smaps_rollup`): each shared page divided among
    /// the processes that map it, so processes of one binary share its pages' cost.
    pub pss: u64,
    /// Resident KiB per mapping (the file's name, `[heap]`, `[anonymous]`...) summed over the
    /// processes, largest first.
    pub mappings: Vec<(String, u64)>,
}

impl Resident {
    /// The processes of `node` whose command line contains one of `names` (a re-executed shim
    /// shows its file's real path).
    pub fn of(node: &Containerd, names: &[String]) -> Resident {
        let mut sum = Resident::default();
        for process in node.leftover_processes() {
            if !names.iter().any(|name| process.command.contains(name)) {
                continue;
            }
            let status = std::fs::read_to_string(format!("/proc/{}/status", process.pid))
                .unwrap_or_else(|e| panic!("reading the status of {process}: {e}"));
            let field = |key: &str| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix(key))
                    .and_then(|value| {
                        value
                            .trim()
                            .trim_end_matches("kB")
                            .trim()
                            .parse::<u64>()
                            .ok()
                    })
                    .unwrap_or_else(|| panic!("no {key} for {process}"))
            };
            sum.processes += 1;
            sum.total += field("VmRSS:");
            sum.anon += field("RssAnon:");
            sum.file += field("RssFile:");
            sum.threads += field("Threads:");
            let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", process.pid))
                .unwrap_or_else(|e| panic!("reading the mappings of {process}: {e}"));
            for (mapping, kib) in resident_per_mapping(&smaps) {
                match sum.mappings.iter_mut().find(|(name, _)| *name == mapping) {
                    Some((_, total)) => *total += kib,
                    None => sum.mappings.push((mapping, kib)),
                }
            }
            let rollup = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", process.pid))
                .unwrap_or_else(|e| panic!("reading the memory of {process}: {e}"));
            sum.pss += kib_field(&rollup, "Pss:").unwrap_or(0);
        }
        sum.mappings.sort_by_key(|(_, kib)| std::cmp::Reverse(*kib));
        sum
    }
}

/// The value of a `Key:   123 kB` line.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `Rss` per mapped file (or `[heap]`, `[stack]`, `[anonymous]` for unnamed mappings) in the
/// text of `/proc/<pid>/smaps`.
fn resident_per_mapping(smaps: &str) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    let mut current = String::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: `start-end perms offset dev inode [name]`.
            current = fields.nth(4).unwrap_or("[anonymous]").to_owned();
        } else if first == "Rss:" {
            let kib: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match out.iter_mut().find(|(name, _)| *name == current) {
                Some((_, total)) => *total += kib,
                None => out.push((current.clone(), kib)),
            }
        }
    }
    out
}

/// KiB as MiB with two decimals.
pub fn mib(kib: f64) -> String {
    format!("{:.2} MiB", kib / 1024.0)
}
