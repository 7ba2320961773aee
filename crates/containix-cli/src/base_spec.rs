//! The base OCI spec of a CLI bundle: what `runc spec` writes, built in Rust.
//!
//! Root user, no terminal, root filesystem `rootfs` read-only, the standard mounts (`/proc`,
//! `/dev`, `/dev/pts`, `/dev/shm`, `/dev/mqueue`, `/sys`, `/sys/fs/cgroup`), new pid, network,
//! ipc, uts, mount and cgroup namespaces, runc's masked and read-only paths, the default
//! capability set, no new privileges and a deny-all device cgroup. The process's args are the
//! user's arguments; the plan puts the program in front.

use anyhow::Result;
use oci_spec::runtime::{LinuxDeviceCgroupBuilder, RootBuilder, Spec};

/// The container's hostname.
pub const HOSTNAME: &str = "containix";

/// The base spec, with `args` as the process's arguments.
pub fn base_spec(args: &[String]) -> Result<Spec> {
    let mut spec = Spec::default();
    spec.set_hostname(Some(HOSTNAME.into()));
    spec.set_root(Some(
        RootBuilder::default()
            .path("rootfs")
            .readonly(true)
            .build()?,
    ));
    if let Some(process) = spec.process_mut() {
        process.set_terminal(Some(false));
        process.set_args(Some(args.to_vec()));
        process.set_cwd("/".into());
    }
    if let Some(linux) = spec.linux_mut()
        && let Some(resources) = linux.resources_mut()
    {
        resources.set_devices(Some(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()?,
        ]));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_spec_matches_runc_defaults() {
        let spec = base_spec(&["--flag".into()]).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["root"]["path"], "rootfs");
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(json["process"]["terminal"], false);
        assert_eq!(json["process"]["args"], serde_json::json!(["--flag"]));
        assert_eq!(json["process"]["user"]["uid"], 0);
        let destinations: Vec<&str> = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        for wanted in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
        ] {
            assert!(
                destinations.contains(&wanted),
                "{wanted} in {destinations:?}"
            );
        }
        let namespaces: Vec<&str> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        for wanted in ["pid", "network", "ipc", "uts", "mount"] {
            assert!(namespaces.contains(&wanted), "{wanted} in {namespaces:?}");
        }
    }
}
