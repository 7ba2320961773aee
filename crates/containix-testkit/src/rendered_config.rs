//! The testkit's own containerd config for a private test node, in the layout of the
//! containerd it is for: version 2 for containerd 1.6 and 1.7, version 3 for containerd 2.x.
//!
//! Both start from the keys `containerd config default` prints and set what a private test node
//! needs: private paths, no TCP/debug/metrics listeners, CRI with `restrict_oom_score_adj`
//! (required on VMs that cannot lower `oom_score_adj`), the pause image as the sandbox image,
//! CNI pointed at empty private directories (host-network pods need no CNI), runc with a
//! private root, and the containix runtime handler.

use std::path::PathBuf;

use containix_core::node::containerd_config;

use crate::containerd_layout::ContainerdLayout;

/// Renders the config for a containerd that reads config `version` (2 or 3; anything else is
/// taken as 2, the layout every containerd 1.x reads).
pub fn render_config(layout: &ContainerdLayout, sandbox_image: &str, version: i64) -> String {
    let keys = Keys::new(layout, sandbox_image);
    if version >= 3 {
        render_v3(&keys)
    } else {
        render_v2(&keys)
    }
}

/// The values both layouts set, as TOML strings.
struct Keys {
    root: String,
    state: String,
    socket: String,
    ttrpc: String,
    opt: String,
    sandbox_image: String,
    cni_bin: String,
    cni_conf: String,
    runc_root: String,
    handler: &'static str,
    runtime_type: String,
    pod_annotations: String,
}

impl Keys {
    fn new(layout: &ContainerdLayout, sandbox_image: &str) -> Self {
        let path = |p: PathBuf| toml_string(&p.to_string_lossy());
        Self {
            root: path(layout.root()),
            state: path(layout.state()),
            socket: path(layout.socket()),
            ttrpc: path(layout.ttrpc_socket()),
            opt: path(layout.opt()),
            sandbox_image: toml_string(sandbox_image),
            cni_bin: path(layout.cni().join("bin")),
            cni_conf: path(layout.cni().join("net.d")),
            runc_root: path(layout.runc_root()),
            handler: containerd_config::HANDLER,
            runtime_type: toml_string(containerd_config::RUNTIME_TYPE),
            pod_annotations: toml_string(containerd_config::POD_ANNOTATIONS),
        }
    }
}

/// Version 2 (containerd 1.6 and 1.7): CRI is one plugin, `io.containerd.grpc.v1.cri`.
fn render_v2(keys: &Keys) -> String {
    let Keys {
        root,
        state,
        socket,
        ttrpc,
        opt,
        sandbox_image,
        cni_bin,
        cni_conf,
        runc_root,
        handler,
        runtime_type,
        pod_annotations,
    } = keys;
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    format!(
        r#"version = 2
root = {root}
state = {state}
oom_score = 0
required_plugins = ["io.containerd.grpc.v1.cri"]
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = {socket}

[ttrpc]
  address = {ttrpc}

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = {opt}

  [{cri}]
    sandbox_image = {sandbox_image}
    restrict_oom_score_adj = true
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false

    [{cri}.cni]
      bin_dir = {cni_bin}
      conf_dir = {cni_conf}

    [{cri}.containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"

      [{cri}.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [{cri}.containerd.runtimes.runc.options]
          Root = {runc_root}
          SystemdCgroup = false

      [{cri}.containerd.runtimes.{handler}]
        runtime_type = {runtime_type}
        pod_annotations = [{pod_annotations}]
"#
    )
}

/// Version 3 (containerd 2.x): CRI is split into `io.containerd.cri.v1.images` (the sandbox
/// image is a pinned image), `io.containerd.cri.v1.runtime` (runtimes, CNI, OOM score) and
/// `io.containerd.grpc.v1.cri` (the streaming server). NRI, on by default in 2.x, would listen
/// on a host-wide socket, so it is off.
fn render_v3(keys: &Keys) -> String {
    let Keys {
        root,
        state,
        socket,
        ttrpc,
        opt,
        sandbox_image,
        cni_bin,
        cni_conf,
        runc_root,
        handler,
        runtime_type,
        pod_annotations,
    } = keys;
    let runtime = "plugins.\"io.containerd.cri.v1.runtime\"";
    format!(
        r#"version = 3
root = {root}
state = {state}
oom_score = 0
required_plugins = ["io.containerd.grpc.v1.cri"]
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = {socket}

[ttrpc]
  address = {ttrpc}

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = {opt}

  [plugins."io.containerd.nri.v1.nri"]
    disable = true

  [plugins."io.containerd.grpc.v1.cri"]
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"

  [plugins."io.containerd.cri.v1.images"]
    snapshotter = "overlayfs"

    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = {sandbox_image}

  [{runtime}]
    restrict_oom_score_adj = true
    enable_selinux = false

    [{runtime}.cni]
      bin_dirs = [{cni_bin}]
      conf_dir = {cni_conf}

    [{runtime}.containerd]
      default_runtime_name = "runc"

      [{runtime}.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [{runtime}.containerd.runtimes.runc.options]
          Root = {runc_root}
          SystemdCgroup = false

      [{runtime}.containerd.runtimes.{handler}]
        runtime_type = {runtime_type}
        pod_annotations = [{pod_annotations}]
"#
    )
}

/// A TOML basic string.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_points_every_path_into_the_instance_dir_and_sets_required_cri_keys() {
        let layout = ContainerdLayout::new("/tmp/x");
        let config = render_config(&layout, "localhost/p:1", 2);
        for expected in [
            "version = 2",
            "root = \"/tmp/x/root\"",
            "state = \"/tmp/x/state\"",
            "address = \"/tmp/x/containerd.sock\"",
            "address = \"/tmp/x/containerd.ttrpc.sock\"",
            "restrict_oom_score_adj = true",
            "sandbox_image = \"localhost/p:1\"",
            "conf_dir = \"/tmp/x/cni/net.d\"",
            "Root = \"/tmp/x/runc\"",
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.containix]",
            "runtime_type = \"io.containerd.containix.v1\"",
            "pod_annotations = [\"containix.dev/*\"]",
        ] {
            assert!(
                config.contains(expected),
                "missing {expected:?} in\n{config}"
            );
        }
    }

    #[test]
    fn version_3_puts_each_key_in_the_split_cri_plugins() {
        let layout = ContainerdLayout::new("/tmp/x");
        let config = render_config(&layout, "localhost/p:1", 3);
        let document: toml_edit::DocumentMut = config.parse().unwrap();
        assert_eq!(document["version"].as_integer(), Some(3));
        let plugins = &document["plugins"];
        let images = &plugins["io.containerd.cri.v1.images"];
        assert_eq!(
            images["pinned_images"]["sandbox"].as_str(),
            Some("localhost/p:1")
        );
        let runtime = &plugins["io.containerd.cri.v1.runtime"];
        assert_eq!(runtime["restrict_oom_score_adj"].as_bool(), Some(true));
        assert_eq!(
            runtime["cni"]["conf_dir"].as_str(),
            Some("/tmp/x/cni/net.d")
        );
        let runtimes = &runtime["containerd"]["runtimes"];
        assert_eq!(
            runtimes["runc"]["options"]["Root"].as_str(),
            Some("/tmp/x/runc")
        );
        assert_eq!(
            runtimes["containix"]["runtime_type"].as_str(),
            Some("io.containerd.containix.v1")
        );
        assert_eq!(
            plugins["io.containerd.nri.v1.nri"]["disable"].as_bool(),
            Some(true)
        );
        let cri = &plugins["io.containerd.grpc.v1.cri"];
        assert_eq!(cri["stream_server_address"].as_str(), Some("127.0.0.1"));
        assert!(cri.get("sandbox_image").is_none());
        // What core's checker finds is what `containix node install` would: the handler, in
        // the version 3 table.
        let handler = containerd_config::check(&config).unwrap();
        assert_eq!(handler.version, 3);
    }

    #[test]
    fn toml_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_string("a\nb"), "\"a\\u000Ab\"");
    }
}
