//! A stock `containerd config default`, made private to one test instance.
//!
//! [`isolate`] changes only the keys through which an instance would touch shared host state
//! (`/var/lib/containerd`, `/run/containerd`, `/opt/containerd`, `/etc/cni`, `/opt/cni`, runc's
//! default root, `/run/netns`, NRI's socket) or listen on TCP, plus the two CRI keys a test node on these
//! machines cannot do without (the pause image and `restrict_oom_score_adj`). Every other line,
//! comment and the order of tables stay exactly as given, so a tool that merges into an
//! existing config (such as `containix node install`) is tested against the real thing.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use toml_edit::{Array, DocumentMut, Item, Table, Value};

use crate::containerd_layout::ContainerdLayout;

/// The CRI plugin's table in a version 2 config; in version 3 it keeps the streaming server.
const CRI_PLUGIN: &str = "io.containerd.grpc.v1.cri";
/// Version 3: the CRI plugin that holds the runtimes, CNI and `restrict_oom_score_adj`.
const CRI_RUNTIME_PLUGIN: &str = "io.containerd.cri.v1.runtime";
/// Version 3: the CRI plugin that holds the pinned sandbox image.
const CRI_IMAGES_PLUGIN: &str = "io.containerd.cri.v1.images";
/// The NRI plugin (containerd 1.7 and 2.x), which listens on a host-wide socket.
const NRI_PLUGIN: &str = "io.containerd.nri.v1.nri";
/// Runtime types whose handlers run runc and therefore get the private runc root.
const RUNC_RUNTIME_TYPES: [&str; 2] = ["io.containerd.runc.v2", "io.containerd.runc.v1"];

/// Why a stock config could not be obtained or isolated.
#[derive(Debug, thiserror::Error)]
pub enum StockConfigError {
    /// `containerd config default` could not be executed.
    #[error("running `{program} config default`: {source} (install the containerd package)")]
    Run {
        /// The containerd binary.
        program: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `containerd config default` failed.
    #[error("`{program} config default` exited with {status}: {stderr}")]
    Failed {
        /// The containerd binary.
        program: PathBuf,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The config is not valid TOML.
    #[error("the containerd config is not valid TOML: {0}")]
    Parse(#[from] toml_edit::TomlError),
    /// The config is neither version 2 (containerd 1.6/1.7) nor 3 (containerd 2.x).
    #[error(
        "the containerd config has `version = {found}`, expected `version = 2` or `version = 3`"
    )]
    UnsupportedVersion {
        /// The version found, or `(missing)`.
        found: String,
    },
    /// A key the patch must set holds something of another kind.
    #[error("the containerd config has `{key}` as {found}, expected {expected}")]
    Shape {
        /// The dotted key.
        key: String,
        /// What was expected there.
        expected: &'static str,
        /// What was found.
        found: &'static str,
    },
}

type Result<T, E = StockConfigError> = std::result::Result<T, E>;

/// Runs `<containerd_binary> config default` and returns what it prints.
pub fn containerd_config_default(containerd_binary: &Path) -> Result<String> {
    let output = std::process::Command::new(containerd_binary)
        .args(["config", "default"])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| StockConfigError::Run {
            program: containerd_binary.to_owned(),
            source,
        })?;
    if !output.status.success() {
        return Err(StockConfigError::Failed {
            program: containerd_binary.to_owned(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One key [`isolate`] sets: the tables leading to it, its name and its new value.
#[derive(Debug, Clone)]
struct Setting {
    table: Vec<String>,
    key: &'static str,
    value: Value,
}

impl Setting {
    fn new(table: &[&str], key: &'static str, value: impl Into<Value>) -> Self {
        Self {
            table: table.iter().map(|&segment| segment.to_owned()).collect(),
            key,
            value: value.into(),
        }
    }
}

/// Makes a version 2 (containerd 1.x) or version 3 (containerd 2.x) config private to the
/// instance at `layout`.
///
/// Sets `root`, `state`, the gRPC and ttrpc sockets, and the `opt` plugin path inside the
/// instance dir; empties `grpc.tcp_address`, `debug.address` and `metrics.address`; and in
/// CRI sets the sandbox image (`sandbox_image`, or in version 3 `pinned_images.sandbox`),
/// `restrict_oom_score_adj = true`, `disable_tcp_service = true`, the stream server to
/// `127.0.0.1` on an ephemeral port (exec and attach need it), `netns_mounts_under_state_dir =
/// true`, private empty CNI directories, and `options.Root` of every runc handler to a private
/// runc root. NRI's socket, where the config has NRI, moves into the instance dir. Keys that
/// are missing are added; everything else stays byte for byte. No runtime handler is added.
pub fn isolate(config: &str, layout: &ContainerdLayout, sandbox_image: &str) -> Result<String> {
    let mut document: DocumentMut = config.parse()?;
    let version = check_version(&document)?;
    for setting in isolation_settings(&document, layout, sandbox_image, version) {
        apply(document.as_table_mut(), &setting)?;
    }
    Ok(document.to_string())
}

/// The config's version: 2 or 3.
fn check_version(document: &DocumentMut) -> Result<i64> {
    match document.get("version") {
        Some(item) if matches!(item.as_integer(), Some(2 | 3)) => {
            Ok(item.as_integer().unwrap_or(2))
        }
        Some(item) => Err(StockConfigError::UnsupportedVersion {
            found: item.to_string().trim().to_owned(),
        }),
        None => Err(StockConfigError::UnsupportedVersion {
            found: "(missing)".to_owned(),
        }),
    }
}

/// What [`isolate`] sets for config `version`, in order; the runc handlers and whether NRI is
/// configured are read from `document`.
fn isolation_settings(
    document: &DocumentMut,
    layout: &ContainerdLayout,
    sandbox_image: &str,
    version: i64,
) -> Vec<Setting> {
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    let mut settings = vec![
        Setting::new(&[], "root", path(layout.root())),
        Setting::new(&[], "state", path(layout.state())),
        Setting::new(&["grpc"], "address", path(layout.socket())),
        Setting::new(&["grpc"], "tcp_address", ""),
        Setting::new(&["ttrpc"], "address", path(layout.ttrpc_socket())),
        Setting::new(&["debug"], "address", ""),
        Setting::new(&["metrics"], "address", ""),
        Setting::new(
            &["plugins", "io.containerd.internal.v1.opt"],
            "path",
            path(layout.opt()),
        ),
    ];
    let cri = ["plugins", CRI_PLUGIN];
    // Version 2 keeps all of CRI in one plugin; version 3 splits images and runtime off it.
    let runtime_plugin = if version >= 3 {
        let images = ["plugins", CRI_IMAGES_PLUGIN, "pinned_images"];
        settings.push(Setting::new(&images, "sandbox", sandbox_image));
        CRI_RUNTIME_PLUGIN
    } else {
        settings.push(Setting::new(&cri, "sandbox_image", sandbox_image));
        CRI_PLUGIN
    };
    let runtime = ["plugins", runtime_plugin];
    let cni = ["plugins", runtime_plugin, "cni"];
    let cni_bin = path(layout.cni().join("bin"));
    settings.extend([
        Setting::new(&runtime, "restrict_oom_score_adj", true),
        Setting::new(&cri, "disable_tcp_service", true),
        Setting::new(&cri, "stream_server_address", "127.0.0.1"),
        Setting::new(&cri, "stream_server_port", "0"),
        Setting::new(&runtime, "netns_mounts_under_state_dir", true),
        if version >= 3 {
            Setting::new(&cni, "bin_dirs", Array::from_iter([cni_bin]))
        } else {
            Setting::new(&cni, "bin_dir", cni_bin)
        },
        Setting::new(&cni, "conf_dir", path(layout.cni().join("net.d"))),
    ]);
    if document
        .get("plugins")
        .and_then(|plugins| plugins.get(NRI_PLUGIN))
        .is_some()
    {
        let nri = ["plugins", NRI_PLUGIN];
        settings.push(Setting::new(&nri, "socket_path", path(layout.nri_socket())));
    }
    for handler in runc_handlers(document, runtime_plugin) {
        let options = [
            "plugins",
            runtime_plugin,
            "containerd",
            "runtimes",
            handler.as_str(),
            "options",
        ];
        settings.push(Setting::new(&options, "Root", path(layout.runc_root())));
    }
    settings
}

/// Names of the CRI runtime handlers that run runc, in the runtimes of `runtime_plugin`.
fn runc_handlers(document: &DocumentMut, runtime_plugin: &str) -> Vec<String> {
    let runtimes = document
        .get("plugins")
        .and_then(|plugins| plugins.get(runtime_plugin))
        .and_then(|cri| cri.get("containerd"))
        .and_then(|containerd| containerd.get("runtimes"))
        .and_then(Item::as_table_like);
    let Some(runtimes) = runtimes else {
        return Vec::new();
    };
    runtimes
        .iter()
        .filter(|(_, runtime)| {
            runtime
                .get("runtime_type")
                .and_then(Item::as_str)
                .is_some_and(|runtime_type| RUNC_RUNTIME_TYPES.contains(&runtime_type))
        })
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Sets one key, creating missing tables and keeping the old value's surrounding whitespace
/// and trailing comment.
fn apply(root: &mut Table, setting: &Setting) -> Result<()> {
    let mut table = root;
    for (depth, segment) in setting.table.iter().enumerate() {
        let item = table.entry(segment).or_insert_with(|| {
            let mut created = Table::new();
            created.set_implicit(true);
            Item::Table(created)
        });
        let found = item.type_name();
        table = item.as_table_mut().ok_or_else(|| StockConfigError::Shape {
            key: dotted(&setting.table[..=depth], None),
            expected: "a table",
            found,
        })?;
    }
    let mut value = setting.value.clone();
    match table.get_mut(setting.key) {
        // Already what it should be: the line stays as written (quotes included).
        Some(Item::Value(old)) if same_value(old, &value) => {}
        Some(Item::Value(old)) => {
            *value.decor_mut() = old.decor().clone();
            *old = value;
        }
        Some(other) => {
            return Err(StockConfigError::Shape {
                key: dotted(&setting.table, Some(setting.key)),
                expected: "a value",
                found: other.type_name(),
            });
        }
        None => {
            table.insert(setting.key, Item::Value(value));
        }
    }
    Ok(())
}

/// Whether two TOML values are equal, however they are written.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(a), Value::String(b)) => a.value() == b.value(),
        (Value::Boolean(a), Value::Boolean(b)) => a.value() == b.value(),
        (Value::Integer(a), Value::Integer(b)) => a.value() == b.value(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b.iter()).all(|(a, b)| same_value(a, b))
        }
        _ => false,
    }
}

/// `a."b.c".d` for error messages.
fn dotted(table: &[String], key: Option<&str>) -> String {
    table
        .iter()
        .map(String::as_str)
        .chain(key)
        .map(|segment| {
            let bare = !segment.is_empty()
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if bare {
                segment.to_owned()
            } else {
                format!("{segment:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSTANCE: &str = "/tmp/containix-ctrd-unit";
    const PAUSE: &str = "localhost/containix-test/pause:1";

    fn layout() -> ContainerdLayout {
        ContainerdLayout::new(INSTANCE)
    }

    /// The real `containerd config default` of this machine's containerd.
    fn stock() -> String {
        containerd_config_default(Path::new("containerd"))
            .unwrap_or_else(|error| panic!("these tests need containerd installed: {error}"))
    }

    /// `containerd config default` of the newer builds the version matrix runs, as printed by
    /// the Debian packages' binaries (kept in containix-core's testdata).
    const STOCK_1_7: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../containix-core/src/node/containerd_config/testdata/containerd-1.7.24-default.toml"
    ));
    const STOCK_2_1: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../containix-core/src/node/containerd_config/testdata/containerd-2.1.9-default.toml"
    ));

    /// Every stock config the tests know: this machine's, 1.7's and 2.1's, with its version.
    fn stocks() -> [(String, i64); 3] {
        [
            (stock(), 2),
            (STOCK_1_7.to_owned(), 2),
            (STOCK_2_1.to_owned(), 3),
        ]
    }

    /// The table of the runtimes' plugin and of the plugin with the stream server.
    fn cri_tables(version: i64) -> (&'static str, &'static str) {
        if version >= 3 {
            (CRI_RUNTIME_PLUGIN, CRI_PLUGIN)
        } else {
            (CRI_PLUGIN, CRI_PLUGIN)
        }
    }

    fn isolated(config: &str) -> DocumentMut {
        isolate(config, &layout(), PAUSE).unwrap().parse().unwrap()
    }

    /// Every string value in `item` with its dotted key.
    fn strings(prefix: &str, item: &Item, out: &mut Vec<(String, String)>) {
        match item {
            Item::Table(table) => {
                for (key, item) in table.iter() {
                    strings(&format!("{prefix}.{key}"), item, out);
                }
            }
            Item::Value(value) => value_strings(prefix, value, out),
            Item::ArrayOfTables(tables) => {
                for table in tables.iter() {
                    for (key, item) in table.iter() {
                        strings(&format!("{prefix}[].{key}"), item, out);
                    }
                }
            }
            Item::None => {}
        }
    }

    fn value_strings(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
        match value {
            Value::String(s) => out.push((prefix.to_owned(), s.value().clone())),
            Value::Array(array) => {
                for value in array.iter() {
                    value_strings(&format!("{prefix}[]"), value, out);
                }
            }
            Value::InlineTable(table) => {
                for (key, value) in table.iter() {
                    value_strings(&format!("{prefix}.{key}"), value, out);
                }
            }
            _ => {}
        }
    }

    fn item_at<'a>(document: &'a DocumentMut, path: &[&str]) -> &'a Item {
        path.iter().fold(document.as_item(), |item, segment| {
            item.get(segment)
                .unwrap_or_else(|| panic!("{path:?} missing"))
        })
    }

    fn str_at<'a>(document: &'a DocumentMut, path: &[&str]) -> &'a str {
        item_at(document, path)
            .as_str()
            .unwrap_or_else(|| panic!("{path:?} is not a string"))
    }

    fn bool_at(document: &DocumentMut, path: &[&str]) -> bool {
        item_at(document, path)
            .as_bool()
            .unwrap_or_else(|| panic!("{path:?} is not a bool"))
    }

    #[test]
    fn every_path_in_the_isolated_stock_config_lies_inside_the_instance_dir() {
        for (stock, version) in stocks() {
            let document = isolated(&stock);
            let mut found = Vec::new();
            strings("", document.as_item(), &mut found);
            let outside: Vec<_> = found
                .iter()
                // Only read, and only when a feature the test node never uses is asked for:
                // ocicrypt's keys (encrypted layers), CDI specs (devices), NRI plugins (NRI is
                // off or private), image verifiers (pulls).
                .filter(|(key, _)| !key.starts_with(".stream_processors.io.containerd.ocicrypt."))
                .filter(|(key, _)| !key.ends_with(".cdi_spec_dirs[]"))
                .filter(|(key, _)| {
                    !key.ends_with(".plugin_path") && !key.ends_with(".plugin_config_path")
                })
                .filter(|(key, _)| !key.contains(".io.containerd.image-verifier.v1.bindir."))
                .filter(|(_, value)| {
                    let path = value.rsplit('=').next().unwrap_or(value);
                    path.starts_with('/') && !Path::new(path).starts_with(INSTANCE)
                })
                .collect();
            assert_eq!(
                outside,
                Vec::<&(String, String)>::new(),
                "version {version}"
            );
            // The patched paths are really set, not just absent.
            assert_eq!(str_at(&document, &["root"]), format!("{INSTANCE}/root"));
            assert_eq!(str_at(&document, &["state"]), format!("{INSTANCE}/state"));
            assert_eq!(
                str_at(&document, &["grpc", "address"]),
                format!("{INSTANCE}/containerd.sock")
            );
            assert_eq!(
                str_at(&document, &["ttrpc", "address"]),
                format!("{INSTANCE}/containerd.ttrpc.sock")
            );
            let (runtime, _) = cri_tables(version);
            let runc = [
                "plugins",
                runtime,
                "containerd",
                "runtimes",
                "runc",
                "options",
                "Root",
            ];
            assert_eq!(str_at(&document, &runc), format!("{INSTANCE}/runc"));
            let sandbox = if version >= 3 {
                str_at(
                    &document,
                    &["plugins", CRI_IMAGES_PLUGIN, "pinned_images", "sandbox"],
                )
            } else {
                str_at(&document, &["plugins", CRI_PLUGIN, "sandbox_image"])
            };
            assert_eq!(sandbox, PAUSE);
            let runtime = ["plugins", runtime];
            assert!(bool_at(
                &document,
                &[&runtime[..], &["restrict_oom_score_adj"]].concat()
            ));
            assert!(bool_at(
                &document,
                &[&runtime[..], &["netns_mounts_under_state_dir"]].concat()
            ));
        }
    }

    #[test]
    fn the_only_tcp_listener_left_is_the_loopback_stream_server() {
        for (stock, version) in stocks() {
            let document = isolated(&stock);
            assert_eq!(str_at(&document, &["grpc", "tcp_address"]), "");
            assert_eq!(str_at(&document, &["debug", "address"]), "");
            assert_eq!(str_at(&document, &["metrics", "address"]), "");
            let (_, streaming) = cri_tables(version);
            let cri = ["plugins", streaming];
            assert!(bool_at(
                &document,
                &[&cri[..], &["disable_tcp_service"]].concat()
            ));
            assert_eq!(
                str_at(&document, &[&cri[..], &["stream_server_address"]].concat()),
                "127.0.0.1"
            );
            assert_eq!(
                str_at(&document, &[&cri[..], &["stream_server_port"]].concat()),
                "0"
            );
        }
    }

    #[test]
    fn no_containix_handler_is_added() {
        for (stock, version) in stocks() {
            let output = isolate(&stock, &layout(), PAUSE).unwrap();
            assert!(!output.contains("containix."), "{output}");
            assert!(!output.contains("runtimes.containix"), "{output}");
            let document: DocumentMut = output.parse().unwrap();
            let (runtime, _) = cri_tables(version);
            let runtimes = document["plugins"][runtime]["containerd"]["runtimes"]
                .as_table()
                .unwrap();
            let names: Vec<&str> = runtimes.iter().map(|(name, _)| name).collect();
            assert_eq!(names, ["runc"]);
        }
    }

    #[test]
    fn nri_listens_inside_the_instance_where_the_config_has_it() {
        for stock in [STOCK_1_7, STOCK_2_1] {
            let document = isolated(stock);
            assert_eq!(
                str_at(&document, &["plugins", NRI_PLUGIN, "socket_path"]),
                format!("{INSTANCE}/nri.sock")
            );
        }
        // containerd 1.6 has no NRI: nothing is added for it.
        let output = isolate(&stock(), &layout(), PAUSE).unwrap();
        assert!(!output.contains(NRI_PLUGIN), "{output}");
    }

    #[test]
    fn version_3_changes_only_the_patched_lines() {
        let output = isolate(STOCK_2_1, &layout(), PAUSE).unwrap();
        let (before, after): (Vec<&str>, Vec<&str>) =
            (STOCK_2_1.lines().collect(), output.lines().collect());
        assert_eq!(before.len(), after.len(), "lines were added:\n{output}");
        let changed: Vec<&str> = before
            .iter()
            .zip(&after)
            .filter(|(old, new)| old != new)
            .map(|(old, _)| old.split('=').next().unwrap().trim())
            .collect();
        assert_eq!(
            changed,
            [
                "root",
                "state",
                "address",
                "address",
                "sandbox",
                "restrict_oom_score_adj",
                "netns_mounts_under_state_dir",
                "Root",
                "bin_dirs",
                "conf_dir",
                "path",
                "socket_path",
            ]
        );
    }

    #[test]
    fn only_patched_lines_change_and_comments_survive_byte_for_byte() {
        let stock = stock();
        let input = format!(
            "# Managed by hand; keep this comment.\n{}\n# trailing comment\n",
            stock
                .replacen(
                    "[grpc]\n",
                    "[grpc]\n  # the socket the kubelet talks to\n",
                    1
                )
                .replacen(
                    "root = \"/var/lib/containerd\"",
                    "root = \"/var/lib/containerd\"  # big disk",
                    1
                )
        );
        let output = isolate(&input, &layout(), PAUSE).unwrap();
        let (before, after): (Vec<&str>, Vec<&str>) =
            (input.lines().collect(), output.lines().collect());
        assert_eq!(
            before.len(),
            after.len(),
            "lines were added or removed:\n{output}"
        );
        let patched_keys = [
            "root",
            "state",
            "address",
            "tcp_address",
            "path",
            "sandbox_image",
            "restrict_oom_score_adj",
            "disable_tcp_service",
            "stream_server_address",
            "stream_server_port",
            "netns_mounts_under_state_dir",
            "bin_dir",
            "conf_dir",
            "Root",
        ];
        for (line, (old, new)) in before.iter().zip(&after).enumerate() {
            if old == new {
                continue;
            }
            let key = old.split('=').next().unwrap().trim();
            let new_key = new.split('=').next().unwrap().trim();
            assert!(
                patched_keys.contains(&key) && key == new_key,
                "line {} changed from {old:?} to {new:?}",
                line + 1
            );
            // Indentation is kept.
            let indent = |s: &str| s.len() - s.trim_start().len();
            assert_eq!(indent(old), indent(new), "{old:?} -> {new:?}");
        }
        assert!(after.contains(&"# Managed by hand; keep this comment."));
        assert!(after.contains(&"  # the socket the kubelet talks to"));
        assert!(after.contains(&"# trailing comment"));
        assert!(
            after.contains(&format!("root = \"{INSTANCE}/root\"  # big disk").as_str()),
            "{output}"
        );
        // Unrelated keys, including ones near patched keys, are untouched.
        for kept in [
            "    sandbox_image = \"registry.k8s.io/pause:3.6\"",
            "  max_recv_message_size = 16777216",
            "    max_container_log_line_size = 16384",
            "          runtime_type = \"io.containerd.runc.v2\"",
            "            SystemdCgroup = false",
            "  \"io.containerd.timeout.shim.load\" = \"5s\"",
        ] {
            let was_there = before.contains(&kept);
            let is_there = after.contains(&kept);
            if kept.contains("sandbox_image") {
                assert!(was_there && !is_there, "{kept:?} must be replaced");
            } else {
                assert!(was_there && is_there, "{kept:?} must survive");
            }
        }
    }

    #[test]
    fn missing_keys_and_tables_are_added() {
        let config = "version = 2\n# only a comment\n";
        let document = isolated(config);
        assert_eq!(str_at(&document, &["root"]), format!("{INSTANCE}/root"));
        assert_eq!(
            str_at(&document, &["plugins", CRI_PLUGIN, "cni", "conf_dir"]),
            format!("{INSTANCE}/cni/net.d")
        );
        assert!(bool_at(
            &document,
            &["plugins", CRI_PLUGIN, "restrict_oom_score_adj"]
        ));
        let text = document.to_string();
        assert!(text.contains("# only a comment\n"), "{text}");
    }

    #[test]
    fn every_runc_handler_gets_the_private_runc_root_and_others_are_left_alone() {
        let config = r#"version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.gvisor]
  runtime_type = "io.containerd.runsc.v1"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata.options]
    Root = "/run/kata-runc"
    BinaryName = "/usr/bin/kata-runc"
"#;
        let document = isolated(config);
        let runtimes = ["plugins", CRI_PLUGIN, "containerd", "runtimes"];
        for handler in ["runc", "kata"] {
            let root = [&runtimes[..], &[handler, "options", "Root"]].concat();
            assert_eq!(str_at(&document, &root), format!("{INSTANCE}/runc"));
        }
        let binary = [&runtimes[..], &["kata", "options", "BinaryName"]].concat();
        assert_eq!(str_at(&document, &binary), "/usr/bin/kata-runc");
        assert!(
            document["plugins"][CRI_PLUGIN]["containerd"]["runtimes"]["gvisor"]
                .get("options")
                .is_none()
        );
    }

    #[test]
    fn bad_configs_are_rejected_naming_what_is_wrong() {
        let error = isolate("root = \"/x\"\n", &layout(), PAUSE).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("`version = (missing)`, expected `version = 2`"),
            "{error}"
        );
        let error = isolate("version = 4\n", &layout(), PAUSE).unwrap_err();
        assert!(error.to_string().contains("`version = 4`"), "{error}");
        let error = isolate("version = 2\ngrpc = 1\n", &layout(), PAUSE).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the containerd config has `grpc` as integer, expected a table"
        );
        let error = isolate("version = 2\n[grpc.address]\n", &layout(), PAUSE).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the containerd config has `grpc.address` as table, expected a value"
        );
        assert!(matches!(
            isolate("version = = 2", &layout(), PAUSE),
            Err(StockConfigError::Parse(_))
        ));
    }

    #[test]
    fn a_missing_containerd_binary_is_reported_by_name() {
        let error = containerd_config_default(Path::new("/nonexistent/containerd")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("running `/nonexistent/containerd config default`"),
            "{error}"
        );
    }
}
