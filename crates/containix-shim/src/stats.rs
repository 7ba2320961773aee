//! Container metrics read from cgroupfs: `io.containerd.cgroups.v2.Metrics` on a unified
//! hierarchy, `io.containerd.cgroups.v1.Metrics` on a legacy one, as containerd's runc shim
//! reports them.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use containerd_shim::protos::{
    cgroups::metrics as v1,
    cgroups_v2::metrics as v2,
    protobuf::{MessageDyn, well_known_types::any::Any},
};

use crate::error::{Result, ShimError};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Where a process's cgroup lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroup {
    /// Unified hierarchy: one directory.
    V2(PathBuf),
    /// Legacy hierarchies: one directory per controller.
    V1(HashMap<String, PathBuf>),
}

impl Cgroup {
    /// The cgroup of `pid`, read from `/proc/<pid>/cgroup`.
    pub fn of_pid(pid: i32) -> Result<Cgroup> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(ShimError::io(format!("read the cgroup of pid {pid}")))?;
        let unified = Path::new(CGROUP_ROOT).join("cgroup.controllers").exists();
        parse_proc_cgroup(&text, Path::new(CGROUP_ROOT), unified).ok_or_else(|| {
            ShimError::Other(format!("pid {pid} has no cgroup in /proc/{pid}/cgroup"))
        })
    }

    /// Current metrics, packed as containerd expects them in a StatsResponse.
    pub fn metrics(&self) -> Result<Any> {
        let message: Box<dyn MessageDyn> = match self {
            Cgroup::V2(dir) => Box::new(v2_metrics(dir)),
            Cgroup::V1(dirs) => Box::new(v1_metrics(dirs)),
        };
        containerd_shim::util::convert_to_any(message).map_err(ShimError::from)
    }

    /// How many processes of this cgroup the kernel's OOM killer has killed so far.
    pub fn oom_kills(&self) -> u64 {
        match self {
            Cgroup::V2(dir) => keyed(&dir.join("memory.events"))
                .get("oom_kill")
                .copied()
                .unwrap_or(0),
            Cgroup::V1(dirs) => dirs
                .get("memory")
                .map(|d| {
                    keyed(&d.join("memory.oom_control"))
                        .get("oom_kill")
                        .copied()
                        .unwrap_or(0)
                })
                .unwrap_or(0),
        }
    }
}

/// Parses `/proc/<pid>/cgroup` into directories under `root`.
pub fn parse_proc_cgroup(text: &str, root: &Path, unified: bool) -> Option<Cgroup> {
    let mut v1_dirs = HashMap::new();
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let relative = path.trim_start_matches('/');
        if unified {
            if controllers.is_empty() {
                return Some(Cgroup::V2(root.join(relative)));
            }
        } else {
            for controller in controllers.split(',').filter(|c| !c.is_empty()) {
                let controller = controller.trim_start_matches("name=");
                v1_dirs.insert(controller.to_owned(), root.join(controller).join(relative));
            }
        }
    }
    (!unified && !v1_dirs.is_empty()).then_some(Cgroup::V1(v1_dirs))
}

/// Parses `key value` lines (cpu.stat, memory.stat, memory.events, ...).
pub fn parse_keyed(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let key = parts.next()?;
            let value = parts.next()?.parse().ok()?;
            Some((key.to_owned(), value))
        })
        .collect()
}

/// Parses a single-value file; `max` (no limit) reads as 0, as containerd reports it.
pub fn parse_single(text: &str) -> u64 {
    text.trim().parse().unwrap_or(0)
}

/// Parses cgroup v2 `io.stat`.
pub fn parse_io_stat(text: &str) -> Vec<v2::IOEntry> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (major, minor) = parts.next()?.split_once(':')?;
            let mut entry = v2::IOEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                ..Default::default()
            };
            for part in parts {
                let Some((key, value)) = part.split_once('=') else {
                    continue;
                };
                let value = value.parse().unwrap_or(0);
                match key {
                    "rbytes" => entry.rbytes = value,
                    "wbytes" => entry.wbytes = value,
                    "rios" => entry.rios = value,
                    "wios" => entry.wios = value,
                    _ => {}
                }
            }
            Some(entry)
        })
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn keyed(path: &Path) -> HashMap<String, u64> {
    parse_keyed(&read(path))
}

fn single(path: &Path) -> u64 {
    parse_single(&read(path))
}

/// Reads a unified-hierarchy cgroup directory; missing files (controllers not enabled)
/// read as zero.
pub fn v2_metrics(dir: &Path) -> v2::Metrics {
    let cpu = keyed(&dir.join("cpu.stat"));
    let mem = keyed(&dir.join("memory.stat"));
    let events = keyed(&dir.join("memory.events"));
    let get = |map: &HashMap<String, u64>, key: &str| map.get(key).copied().unwrap_or(0);
    let mut metrics = v2::Metrics::new();
    metrics.pids = Some(v2::PidsStat {
        current: single(&dir.join("pids.current")),
        limit: single(&dir.join("pids.max")),
        ..Default::default()
    })
    .into();
    metrics.cpu = Some(v2::CPUStat {
        usage_usec: get(&cpu, "usage_usec"),
        user_usec: get(&cpu, "user_usec"),
        system_usec: get(&cpu, "system_usec"),
        nr_periods: get(&cpu, "nr_periods"),
        nr_throttled: get(&cpu, "nr_throttled"),
        throttled_usec: get(&cpu, "throttled_usec"),
        ..Default::default()
    })
    .into();
    metrics.memory = Some(v2::MemoryStat {
        anon: get(&mem, "anon"),
        file: get(&mem, "file"),
        kernel_stack: get(&mem, "kernel_stack"),
        slab: get(&mem, "slab"),
        sock: get(&mem, "sock"),
        shmem: get(&mem, "shmem"),
        file_mapped: get(&mem, "file_mapped"),
        file_dirty: get(&mem, "file_dirty"),
        file_writeback: get(&mem, "file_writeback"),
        anon_thp: get(&mem, "anon_thp"),
        inactive_anon: get(&mem, "inactive_anon"),
        active_anon: get(&mem, "active_anon"),
        inactive_file: get(&mem, "inactive_file"),
        active_file: get(&mem, "active_file"),
        unevictable: get(&mem, "unevictable"),
        slab_reclaimable: get(&mem, "slab_reclaimable"),
        slab_unreclaimable: get(&mem, "slab_unreclaimable"),
        pgfault: get(&mem, "pgfault"),
        pgmajfault: get(&mem, "pgmajfault"),
        workingset_refault: get(&mem, "workingset_refault"),
        workingset_activate: get(&mem, "workingset_activate"),
        workingset_nodereclaim: get(&mem, "workingset_nodereclaim"),
        pgrefill: get(&mem, "pgrefill"),
        pgscan: get(&mem, "pgscan"),
        pgsteal: get(&mem, "pgsteal"),
        pgactivate: get(&mem, "pgactivate"),
        pgdeactivate: get(&mem, "pgdeactivate"),
        pglazyfree: get(&mem, "pglazyfree"),
        pglazyfreed: get(&mem, "pglazyfreed"),
        thp_fault_alloc: get(&mem, "thp_fault_alloc"),
        thp_collapse_alloc: get(&mem, "thp_collapse_alloc"),
        usage: single(&dir.join("memory.current")),
        usage_limit: single(&dir.join("memory.max")),
        swap_usage: single(&dir.join("memory.swap.current")),
        swap_limit: single(&dir.join("memory.swap.max")),
        max_usage: single(&dir.join("memory.peak")),
        ..Default::default()
    })
    .into();
    metrics.memory_events = Some(v2::MemoryEvents {
        low: get(&events, "low"),
        high: get(&events, "high"),
        max: get(&events, "max"),
        oom: get(&events, "oom"),
        oom_kill: get(&events, "oom_kill"),
        ..Default::default()
    })
    .into();
    metrics.io = Some(v2::IOStat {
        usage: parse_io_stat(&read(&dir.join("io.stat"))),
        ..Default::default()
    })
    .into();
    metrics
}

/// Reads legacy-hierarchy cgroup directories (cpu, memory, pids).
pub fn v1_metrics(dirs: &HashMap<String, PathBuf>) -> v1::Metrics {
    let dir = |controller: &str| dirs.get(controller).cloned().unwrap_or_default();
    let mut metrics = v1::Metrics::new();
    let pids = dir("pids");
    metrics.pids = Some(v1::PidsStat {
        current: single(&pids.join("pids.current")),
        limit: single(&pids.join("pids.max")),
        ..Default::default()
    })
    .into();
    let cpuacct = dir("cpuacct");
    let cpu = dir("cpu");
    let ticks = keyed(&cpuacct.join("cpuacct.stat"));
    // cpuacct.stat counts USER_HZ ticks (100 per second on Linux); the proto wants ns.
    let ticks_to_ns = 10_000_000;
    let throttling = keyed(&cpu.join("cpu.stat"));
    let get = |map: &HashMap<String, u64>, key: &str| map.get(key).copied().unwrap_or(0);
    metrics.cpu = Some(v1::CPUStat {
        usage: Some(v1::CPUUsage {
            total: single(&cpuacct.join("cpuacct.usage")),
            user: get(&ticks, "user") * ticks_to_ns,
            kernel: get(&ticks, "system") * ticks_to_ns,
            per_cpu: read(&cpuacct.join("cpuacct.usage_percpu"))
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect(),
            ..Default::default()
        })
        .into(),
        throttling: Some(v1::Throttle {
            periods: get(&throttling, "nr_periods"),
            throttled_periods: get(&throttling, "nr_throttled"),
            throttled_time: get(&throttling, "throttled_time"),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    })
    .into();
    let memory = dir("memory");
    let stat = keyed(&memory.join("memory.stat"));
    let entry = |prefix: &str| v1::MemoryEntry {
        usage: single(&memory.join(format!("{prefix}usage_in_bytes"))),
        max: single(&memory.join(format!("{prefix}max_usage_in_bytes"))),
        limit: single(&memory.join(format!("{prefix}limit_in_bytes"))),
        failcnt: single(&memory.join(format!("{prefix}failcnt"))),
        ..Default::default()
    };
    metrics.memory = Some(v1::MemoryStat {
        cache: get(&stat, "cache"),
        rss: get(&stat, "rss"),
        rss_huge: get(&stat, "rss_huge"),
        mapped_file: get(&stat, "mapped_file"),
        pg_fault: get(&stat, "pgfault"),
        pg_maj_fault: get(&stat, "pgmajfault"),
        inactive_file: get(&stat, "inactive_file"),
        active_file: get(&stat, "active_file"),
        unevictable: get(&stat, "unevictable"),
        total_inactive_file: get(&stat, "total_inactive_file"),
        total_active_file: get(&stat, "total_active_file"),
        total_rss: get(&stat, "total_rss"),
        total_cache: get(&stat, "total_cache"),
        usage: Some(entry("memory.")).into(),
        swap: Some(entry("memory.memsw.")).into(),
        kernel: Some(entry("memory.kmem.")).into(),
        ..Default::default()
    })
    .into();
    metrics
}

#[cfg(test)]
mod tests {
    use containerd_shim::protos::protobuf::Message;

    use super::*;

    #[test]
    fn unified_proc_cgroup() {
        let cg = parse_proc_cgroup("0::/k8s/pod1/c1\n", Path::new("/sys/fs/cgroup"), true);
        assert_eq!(
            cg,
            Some(Cgroup::V2(PathBuf::from("/sys/fs/cgroup/k8s/pod1/c1")))
        );
    }

    #[test]
    fn legacy_proc_cgroup() {
        let text = "12:pids:/c1\n4:cpu,cpuacct:/c1\n1:name=systemd:/c1\n0::/\n";
        let Some(Cgroup::V1(dirs)) = parse_proc_cgroup(text, Path::new("/cg"), false) else {
            panic!("expected v1");
        };
        assert_eq!(dirs["pids"], Path::new("/cg/pids/c1"));
        assert_eq!(dirs["cpuacct"], Path::new("/cg/cpuacct/c1"));
        assert_eq!(dirs["systemd"], Path::new("/cg/systemd/c1"));
    }

    #[test]
    fn v2_files_become_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write(
            "cpu.stat",
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n",
        );
        write("memory.current", "4096\n");
        write("memory.max", "max\n");
        write("memory.stat", "anon 1024\nfile 2048\n");
        write("memory.events", "low 0\nhigh 0\nmax 1\noom 1\noom_kill 1\n");
        write("pids.current", "3\n");
        write("pids.max", "100\n");
        write(
            "io.stat",
            "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
        );
        let m = v2_metrics(dir.path());
        assert_eq!(m.cpu.usage_usec, 1500);
        assert_eq!(m.cpu.system_usec, 500);
        assert_eq!(m.memory.usage, 4096);
        assert_eq!(m.memory.usage_limit, 0);
        assert_eq!(m.memory.anon, 1024);
        assert_eq!(m.memory_events.oom_kill, 1);
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.pids.limit, 100);
        assert_eq!(m.io.usage[0].wbytes, 20);
        assert_eq!(Cgroup::V2(dir.path().to_owned()).oom_kills(), 1);
        let any = Cgroup::V2(dir.path().to_owned()).metrics().unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        assert_eq!(
            v2::Metrics::parse_from_bytes(&any.value)
                .unwrap()
                .pids
                .current,
            3
        );
    }
}
