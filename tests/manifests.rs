//! The Kubernetes manifests in `deploy/`, read as YAML into JSON values, and a DaemonSet's pod
//! turned into the CRI pod and container specs a kubelet would hand containerd for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use containix_testkit::cri::{ContainerSpec, PodSandboxSpec, Propagation};
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

/// The repository's `deploy/` folder.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every `*.yaml` file under `deploy/`, sorted.
pub fn manifest_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![deploy_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The documents of a YAML stream, as JSON values; panics naming `what` on a syntax error.
pub fn documents(text: &str, what: &str) -> Vec<Value> {
    YamlLoader::load_from_str(text)
        .unwrap_or_else(|err| panic!("{what}: {err}"))
        .iter()
        .map(|doc| to_json(doc, what))
        .collect()
}

fn to_json(yaml: &Yaml, what: &str) -> Value {
    match yaml {
        Yaml::Real(text) => Value::from(
            text.parse::<f64>()
                .unwrap_or_else(|_| panic!("{what}: number {text}")),
        ),
        Yaml::Integer(n) => Value::from(*n),
        Yaml::String(s) => Value::from(s.as_str()),
        Yaml::Boolean(b) => Value::from(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(|i| to_json(i, what)).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let key = key
                        .as_str()
                        .unwrap_or_else(|| panic!("{what}: a mapping key that is not a string"));
                    (key.to_owned(), to_json(value, what))
                })
                .collect(),
        ),
        Yaml::Null => Value::Null,
        other => panic!("{what}: unexpected YAML {other:?}"),
    }
}

/// The first document of `kind` in `text`.
pub fn find_kind(text: &str, kind: &str, what: &str) -> Value {
    documents(text, what)
        .into_iter()
        .find(|doc| doc["kind"] == kind)
        .unwrap_or_else(|| panic!("{what}: no {kind}"))
}

/// The container `name` of a pod spec.
pub fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// The volume `name` of a pod spec.
pub fn volume<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

/// A string field, or a panic naming it.
pub fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string in {value}"))
}

/// The strings of a list field (`command`, `args`), empty when absent.
pub fn strings(value: &Value, field: &str) -> Vec<String> {
    value[field]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A container's environment as the kubelet resolves it: values as given, `fieldRef`s from
/// `fields` (e.g. `spec.nodeName`).
pub fn environment(container: &Value, fields: &BTreeMap<&str, &str>) -> BTreeMap<String, String> {
    container["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|var| {
                    let value = match var["value"].as_str() {
                        Some(value) => value.to_owned(),
                        None => {
                            let field = text(&var["valueFrom"]["fieldRef"], "fieldPath");
                            fields
                                .get(field)
                                .unwrap_or_else(|| panic!("no value for fieldRef {field}"))
                                .to_string()
                        }
                    };
                    (text(var, "name").to_owned(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `$(VAR)` references in `arg` replaced from `env`, as the kubelet does for command and args.
pub fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = arg.to_owned();
    for (name, value) in env {
        out = out.replace(&format!("$({name})"), value);
    }
    out
}

/// The CRI pod sandbox for a DaemonSet's pod spec: privileged when a container is, the node's
/// PID namespace with `hostPID`.
pub fn sandbox(name: &str, pod: &Value) -> PodSandboxSpec {
    let privileged = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["securityContext"]["privileged"] == true);
    PodSandboxSpec::new(name)
        .namespace("kube-system")
        .privileged(privileged)
        .host_pid(pod["hostPID"] == true)
}

/// The CRI container spec of `name` in `pod`, as the DaemonSet declares it: its image (as
/// given), command and args (with `$(VAR)` expanded), environment, privilege and every volume
/// mount with its read-only flag and propagation. Each volume's host directory comes from
/// `host_dir(volume)`: the hostPath itself unless a test moves it; a configMap needs one.
/// `DirectoryOrCreate` host paths are created, `Directory` ones must exist.
pub fn container_spec(
    pod: &Value,
    sandbox: &PodSandboxSpec,
    name: &str,
    fields: &BTreeMap<&str, &str>,
    host_dir: impl Fn(&Value) -> PathBuf,
) -> ContainerSpec {
    let container = container(pod, name);
    let env = environment(container, fields);
    let mut spec = ContainerSpec::new(name, text(container, "image"))
        .command(
            strings(container, "command")
                .iter()
                .map(|a| expand(a, &env)),
        )
        .args(strings(container, "args").iter().map(|a| expand(a, &env)))
        .privileged(container["securityContext"]["privileged"] == true)
        .namespaces(sandbox.namespace_options());
    for (key, value) in &env {
        spec = spec.env(key, value);
    }
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let volume = volume(pod, text(mount, "name"));
        let host = host_dir(volume);
        match volume["hostPath"]["type"].as_str() {
            Some("DirectoryOrCreate") => std::fs::create_dir_all(&host).unwrap(),
            Some("Directory") => assert!(host.is_dir(), "{host:?} (volume {volume}) is missing"),
            _ => {}
        }
        let propagation = match mount["mountPropagation"].as_str() {
            Some("Bidirectional") => Propagation::Bidirectional,
            Some("HostToContainer") => Propagation::HostToContainer,
            None | Some("None") => Propagation::Private,
            Some(other) => panic!("mountPropagation {other}"),
        };
        spec = spec.mount_propagating(
            host,
            text(mount, "mountPath"),
            mount["readOnly"] == true,
            propagation,
        );
    }
    spec
}
