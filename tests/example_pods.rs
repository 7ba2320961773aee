//! The example pod manifests in `examples/pods/` use the annotation API correctly: every
//! manifest's annotations parse, and each container gets the request (or passthrough) the
//! manifest's comments promise. Keeps the documentation from drifting from the parser.

use std::collections::BTreeMap;
use std::path::Path;

use containix_core::request::annotations::PodAnnotations;
use containix_core::request::container_request::Source;

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
    let request = pod.request_for("app").unwrap().unwrap();
    assert!(matches!(request.source, Source::Flake(_)));
    assert_eq!(request.entrypoint.unwrap().as_str(), "/bin/myapp");

    let (pod, _) = manifest("locked-flake.yaml");
    let Source::Flake(installable) = pod.request_for("hello").unwrap().unwrap().source else {
        panic!("locked-flake.yaml asks for a flake")
    };
    assert!(installable.flake.is_locked());

    let (pod, _) = manifest("store-paths.yaml");
    let request = pod.request_for("echoserver").unwrap().unwrap();
    assert!(matches!(request.source, Source::StorePaths(ref paths) if paths.len() == 1));

    let (pod, _) = manifest("packages.yaml");
    let request = pod.request_for("toolbox").unwrap().unwrap();
    assert!(matches!(request.source, Source::Packages(ref names) if names.len() == 3));

    let (pod, _) = manifest("mixed.yaml");
    assert!(pod.request_for("shipper").unwrap().is_none());
    let Source::Flake(app) = pod.request_for("app").unwrap().unwrap().source else {
        panic!("the app comes from a flake")
    };
    let Source::Flake(migrate) = pod.request_for("migrate").unwrap().unwrap().source else {
        panic!("the migration comes from a flake")
    };
    assert_ne!(app, migrate, "the per-container override applies");
}
