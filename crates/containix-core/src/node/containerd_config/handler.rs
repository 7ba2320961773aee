//! The names containix registers with containerd, and where they go in its config by
//! config version.

/// The CRI runtime handler (RuntimeClass `handler`) containix pods use.
pub const HANDLER: &str = "containix";
/// The runtime type containerd maps to `containerd-shim-containix-v1`.
pub const RUNTIME_TYPE: &str = "io.containerd.containix.v1";
/// The shim binary containerd derives from [`RUNTIME_TYPE`] and looks up on its PATH.
pub const SHIM_BINARY: &str = "containerd-shim-containix-v1";
/// The pod annotation pattern containerd must pass to the shim.
pub const POD_ANNOTATIONS: &str = "containix.dev/*";
/// Where containerd reads its config unless told otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/containerd/config.toml";
/// containerd's gRPC socket unless its config names another.
pub const DEFAULT_ADDRESS: &str = "/run/containerd/containerd.sock";

/// The CRI plugin table (the one holding `containerd.runtimes`) for a config version: `cri`
/// for version 1, `io.containerd.grpc.v1.cri` for 2 (containerd 1.x), and
/// `io.containerd.cri.v1.runtime` for 3 (containerd 2.x).
pub fn cri_runtime_plugin(version: i64) -> Option<&'static str> {
    match version {
        1 => Some("cri"),
        2 => Some("io.containerd.grpc.v1.cri"),
        3 => Some("io.containerd.cri.v1.runtime"),
        _ => None,
    }
}

/// The config version containerd `major` writes with `containerd config default`: 2 for 1.x,
/// 3 for 2.x and later.
pub fn version_for_containerd_major(major: u64) -> i64 {
    if major >= 2 { 3 } else { 2 }
}

/// The dotted name of the handler table under `plugin`, as the TOML header spells it.
pub fn handler_table_name(plugin: &str) -> String {
    format!("plugins.\"{plugin}\".containerd.runtimes.{HANDLER}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_map_to_their_cri_tables() {
        assert_eq!(cri_runtime_plugin(1), Some("cri"));
        assert_eq!(cri_runtime_plugin(2), Some("io.containerd.grpc.v1.cri"));
        assert_eq!(cri_runtime_plugin(3), Some("io.containerd.cri.v1.runtime"));
        assert_eq!(cri_runtime_plugin(4), None);
        assert_eq!(version_for_containerd_major(1), 2);
        assert_eq!(version_for_containerd_major(2), 3);
    }
}
