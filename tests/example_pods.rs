//! The example pod manifests in `examples/pods/` use the annotation API correctly: every
//! manifest's annotations parse, and each container gets the request (or passthrough) the
//! manifest's comments promise. Keeps the documentation from drifting from the parser.
//!
//! They, and `deploy/csi/example-pod.yaml`, also name a flake that exists in `examples/` (as the
//! node folder `/srv/flakes/<name>` that examples/README.md tells you to fill), and every
//! container's request resolves offline with `containix resolve` against a copy of that folder
//! on the test node's nix-daemon. Run `cargo build -p containix-cli` first.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use containix_core::request::annotations::PodAnnotations;
use containix_core::request::container_request::Source;
use containix_testkit::fixtures;
use containix_testkit::nix_cli::NixCommand;
use containix_testkit::nix_daemon::NixDaemon;

/// The `metadata.annotations` and container names of a manifest in the simple layout the
/// examples use (two-space indentation, one `key: "value"` per line).
fn read_manifest(path: &Path) -> (BTreeMap<String, String>, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut annotations = BTreeMap::new();
    let mut containers = Vec::new();
    let mut in_annotations = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed == "annotations:" {
            in_annotations = true;
            continue;
        }
        if in_annotations && indent <= 2 {
            in_annotations = false;
        }
        if in_annotations {
            let (key, value) = trimmed.split_once(": ").unwrap();
            annotations.insert(key.to_owned(), value.trim_matches('"').to_owned());
        } else if let Some(name) = trimmed.strip_prefix("- name: ") {
            containers.push(name.to_owned());
        }
    }
    (annotations, containers)
}

fn manifest(name: &str) -> (PodAnnotations, Vec<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/pods")
        .join(name);
    let (annotations, containers) = read_manifest(&path);
    let pod = PodAnnotations::parse(&annotations)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    (pod, containers)
}

#[test]
fn every_example_manifest_parses_for_every_container() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pods");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let (pod, containers) = manifest(&name);
        assert!(!containers.is_empty(), "{name} has no containers");
        for container in containers {
            pod.request_for(&container)
                .unwrap_or_else(|err| panic!("{name}, container {container}: {err}"));
        }
        count += 1;
    }
    assert!(count >= 6, "only {count} example manifests");
}

#[test]
fn each_example_asks_for_what_its_comment_says() {
    let (pod, _) = manifest("flake.yaml");
    let request = pod.request_for("hello").unwrap().unwrap();
    assert!(matches!(request.source, Source::Flake(_)));
    assert_eq!(request.entrypoint.unwrap().as_str(), "/bin/hello");

    let (pod, _) = manifest("locked-flake.yaml");
    let Source::Flake(installable) = pod.request_for("hello").unwrap().unwrap().source else {
        panic!("locked-flake.yaml asks for a flake")
    };
    assert!(installable.flake.is_locked());

    let (pod, _) = manifest("store-paths.yaml");
    let request = pod.request_for("hello").unwrap().unwrap();
    assert!(matches!(request.source, Source::StorePaths(ref paths) if paths.len() == 1));

    let (pod, _) = manifest("packages.yaml");
    let request = pod.request_for("toolbox").unwrap().unwrap();
    assert!(matches!(request.source, Source::Packages(ref names) if names.len() == 2));

    let (pod, _) = manifest("mixed.yaml");
    assert!(pod.request_for("shipper").unwrap().is_none());
    let Source::Flake(app) = pod.request_for("app").unwrap().unwrap().source else {
        panic!("the app comes from a flake")
    };
    let Source::Flake(prepare) = pod.request_for("prepare").unwrap().unwrap().source else {
        panic!("the init container comes from a flake")
    };
    assert_ne!(app, prepare, "the per-container override applies");
}

/// Where the manifests expect the example flakes on a node (examples/README.md).
const NODE_FLAKES: &str = "/srv/flakes/";

/// The pods of a manifest file, as YAML read into JSON.
fn pods_in(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    containix_tests::manifests::documents(&text, &path.display().to_string())
        .into_iter()
        .filter(|doc| doc["kind"] == "Pod")
        .collect()
}

/// Every manifest that shows a containix pod: `examples/pods/*.yaml` and the CSI example pod.
fn example_manifests() -> Vec<std::path::PathBuf> {
    let root = fixtures::repo_root();
    let mut files: Vec<_> = std::fs::read_dir(root.join("examples/pods"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files.push(root.join("deploy/csi/example-pod.yaml"));
    files
}

/// The flake refs a value names under [`NODE_FLAKES`] must be folders of `examples/`.
fn check_node_flake(value: &str, what: &str) {
    let rest = value
        .strip_prefix("path:")
        .and_then(|rest| rest.strip_prefix(NODE_FLAKES))
        .unwrap_or_else(|| panic!("{what}: {value:?} does not name a flake in {NODE_FLAKES}"));
    let name = rest.split(['?', '#', '/']).next().unwrap();
    let flake = fixtures::repo_root()
        .join("examples")
        .join(name)
        .join("flake.nix");
    assert!(flake.is_file(), "{what}: {value:?}: no {}", flake.display());
}

/// Runs `containix resolve --json` with `args`; fails the test unless it succeeds.
fn resolve(args: &[&str], what: &str) -> serde_json::Value {
    let output = Command::new(containix_tests::containix_bin())
        .arg("resolve")
        .arg("--json")
        .args(args)
        .env_remove("CONTAINIX_CONFIG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{what}: containix resolve {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn every_manifest_names_an_example_flake_and_resolves_offline() {
    NixDaemon::start_or_reuse().unwrap();
    // The node's /srv/flakes, filled as examples/README.md says.
    let node = tempfile::tempdir().unwrap();
    let node_flakes = node.path().join("flakes");
    for entry in std::fs::read_dir(fixtures::repo_root().join("examples")).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("flake.nix").is_file() {
            let target = node_flakes.join(dir.file_name().unwrap());
            std::fs::create_dir_all(&target).unwrap();
            std::fs::copy(dir.join("flake.nix"), target.join("flake.nix")).unwrap();
        }
    }
    let on_node = |value: &str| value.replace(NODE_FLAKES, &format!("{}/", node_flakes.display()));
    let policy = node.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!("package-set = \"path:{}/hello\"\n", node_flakes.display()),
    )
    .unwrap();
    let policy = policy.to_str().unwrap();

    let hello_x86 = NixCommand::nix()
        .arg("eval")
        .arg("--raw")
        .arg(format!(
            "path:{}#packages.x86_64-linux.hello.outPath",
            fixtures::Fixture::Hello.source_dir().display()
        ))
        .run()
        .unwrap();
    let system = fixtures::current_system().unwrap();

    let mut resolved = 0;
    for file in example_manifests() {
        let what = file.display().to_string();
        let pods = pods_in(&file);
        assert!(!pods.is_empty(), "{what}: no pod");
        for pod in pods {
            let annotations = pod["metadata"]["annotations"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            // Pinned store paths first name the example's package, as the comment says.
            let mut store_paths = Vec::new();
            for (key, value) in &annotations {
                let value = value.as_str().unwrap();
                if key.starts_with("containix.dev/flake") {
                    check_node_flake(value, &what);
                }
                if key.starts_with("containix.dev/store-paths") {
                    store_paths.push(value.to_owned());
                }
            }
            for paths in &store_paths {
                assert_eq!(
                    paths, &hello_x86,
                    "{what}: not examples/hello's x86_64-linux output"
                );
            }
            if !annotations.is_empty() {
                let rewritten: serde_json::Map<_, _> = annotations
                    .iter()
                    .map(|(key, value)| (key.clone(), on_node(value.as_str().unwrap()).into()))
                    .collect();
                let file = node.path().join("annotations.json");
                std::fs::write(&file, serde_json::Value::Object(rewritten).to_string()).unwrap();
                let spec = &pod["spec"];
                let containers = spec["containers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .chain(spec["initContainers"].as_array().into_iter().flatten());
                let passthrough = annotations
                    .get("containix.dev/passthrough")
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                for container in containers {
                    let name = container["name"].as_str().unwrap();
                    if passthrough.split(',').any(|p| p.trim() == name) {
                        continue;
                    }
                    if !store_paths.is_empty() && system != "x86_64-linux" {
                        continue;
                    }
                    let args = [
                        "--annotations",
                        file.to_str().unwrap(),
                        "--container",
                        name,
                        "--policy",
                        policy,
                    ];
                    let out = resolve(&args, &format!("{what}, container {name}"));
                    assert!(out["count"].as_u64().unwrap() >= 1, "{out}");
                    resolved += 1;
                }
            }
            for volume in pod["spec"]["volumes"].as_array().into_iter().flatten() {
                let attributes = &volume["csi"]["volumeAttributes"];
                if let Some(flake) = attributes["flakeRef"].as_str() {
                    check_node_flake(flake, &what);
                    let out = resolve(&[&on_node(flake), "--policy", policy], &what);
                    assert!(out["count"].as_u64().unwrap() >= 1, "{out}");
                    resolved += 1;
                }
            }
        }
    }
    assert!(resolved >= 8, "only {resolved} requests resolved");
}
