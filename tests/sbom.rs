//! `containix sbom` writes a valid CycloneDX 1.6 document for the example's closure: it
//! validates against the official JSON schema (vendored in tests/schemas/cyclonedx, with the two
//! constraints the vendored copy drops checked here), every `bom-ref` is unique, the root is the
//! subject (`metadata.component`, type `application`), every component has a purl
//! `pkg:nix/<name>[@<version>]?store_path=<path>` and the SHA-256 of its NAR as Nix records it,
//! and the dependency graph is the store's references. Run `cargo build -p containix-cli` first.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use containix_testkit::fixtures::{self, repo_root};
use containix_tests::{containix_bin, nar_hash_hex};
use serde_json::Value;

/// The vendored CycloneDX 1.6 schema with the documents it references registered under the
/// URIs it names them by.
fn cyclonedx_validator() -> jsonschema::Validator {
    let dir = repo_root().join("tests/schemas/cyclonedx");
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
    };
    let registry = jsonschema::Registry::new()
        .add(
            "http://cyclonedx.org/schema/spdx.SNAPSHOT.schema.json",
            read("spdx.SNAPSHOT.schema.json"),
        )
        .unwrap()
        .add(
            "http://cyclonedx.org/schema/jsf-0.82.SNAPSHOT.schema.json",
            read("jsf-0.82.SNAPSHOT.schema.json"),
        )
        .unwrap()
        .prepare()
        .unwrap();
    jsonschema::options()
        .with_registry(&registry)
        .build(&read("bom-1.6.SNAPSHOT.schema.json"))
        .unwrap()
}

/// Schema errors of `document`, as `path: message` lines, plus the two constraints of the
/// published schema that the vendored copy drops (tests/schemas/cyclonedx/README.md).
fn cyclonedx_errors(document: &Value) -> Vec<String> {
    let validator = cyclonedx_validator();
    let mut errors: Vec<String> = validator
        .iter_errors(document)
        .map(|error| format!("{}: {error}", error.instance_path()))
        .collect();
    if document["version"].as_u64().is_none_or(|v| v < 1) {
        errors.push("/version: missing, or not an integer of at least 1".to_owned());
    }
    if document["$schema"] != "http://cyclonedx.org/schema/bom-1.6.schema.json" {
        errors.push(format!(
            "/$schema: {} is not the 1.6 schema",
            document["$schema"]
        ));
    }
    errors
}

fn sbom(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(containix_bin())
        .arg("sbom")
        .args(args)
        .env("XDG_CACHE_HOME", dir.path())
        .env_remove("CONTAINIX_CONFIG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "containix sbom {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The subject and the components, by `bom-ref`; fails on a repeated `bom-ref`.
fn components_by_ref(document: &Value) -> BTreeMap<String, Value> {
    let mut by_ref = BTreeMap::new();
    let all = std::iter::once(&document["metadata"]["component"])
        .chain(document["components"].as_array().unwrap());
    for component in all {
        let reference = component["bom-ref"].as_str().unwrap().to_owned();
        assert!(
            by_ref
                .insert(reference.clone(), component.clone())
                .is_none(),
            "bom-ref {reference} is not unique"
        );
    }
    by_ref
}

#[test]
fn the_validator_rejects_what_the_schema_forbids() {
    let valid = serde_json::json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "components": [{ "type": "library", "name": "x", "bom-ref": "x" }]
    });
    assert_eq!(cyclonedx_errors(&valid), Vec::<String>::new());
    // Each change breaks one rule of the schema (or of the two checked beside it).
    let changes: [(&str, &str, Value); 4] = [
        ("/components/0", "type", serde_json::json!("package")),
        (
            "/components/0",
            "hashes",
            serde_json::json!([{ "alg": "SHA-256", "content": "xyz" }]),
        ),
        ("", "specVersion", serde_json::json!(1.6)),
        ("", "version", serde_json::json!(0)),
    ];
    for (object, key, bad) in changes {
        let mut document = valid.clone();
        document.pointer_mut(object).unwrap()[key] = bad;
        assert!(
            !cyclonedx_errors(&document).is_empty(),
            "{object}/{key} accepted"
        );
    }
}

#[test]
fn the_examples_sbom_is_valid_cyclonedx_and_matches_the_store() {
    let hello = fixtures::example_hello().unwrap();
    let document = sbom(&[&hello.flake_ref()]);
    assert_eq!(cyclonedx_errors(&document), Vec::<String>::new());
    assert_eq!(document["specVersion"], "1.6");

    let by_ref = components_by_ref(&document);
    let closure: BTreeSet<String> = hello
        .closure
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(by_ref.keys().cloned().collect::<BTreeSet<_>>(), closure);

    let subject = &document["metadata"]["component"];
    assert_eq!(subject["type"], "application");
    assert_eq!(subject["bom-ref"], hello.out_path.display().to_string());
    assert_eq!(subject["name"], "hello");
    assert_eq!(subject["version"], "1.0");
    for component in document["components"].as_array().unwrap() {
        assert_eq!(component["type"], "library", "{component}");
    }

    let infos: Vec<Value> = serde_json::from_str(
        &containix_testkit::nix_cli::NixCommand::nix()
            .args(["path-info", "--json", "-r"])
            .arg(&hello.out_path)
            .run()
            .unwrap(),
    )
    .unwrap();
    for info in &infos {
        let path = info["path"].as_str().unwrap();
        let component = &by_ref[path];
        let name = fixtures::store_path_name(std::path::Path::new(path)).unwrap();
        let (pname, version) = match name.rsplit_once('-') {
            Some((pname, version)) if version.starts_with(|c: char| c.is_ascii_digit()) => {
                (pname, Some(version))
            }
            _ => (name, None),
        };
        let expected_purl = match version {
            Some(version) => format!("pkg:nix/{pname}@{version}?store_path={path}"),
            None => format!("pkg:nix/{pname}?store_path={path}"),
        };
        assert_eq!(component["purl"], expected_purl.as_str(), "{path}");
        assert_eq!(
            component["hashes"],
            serde_json::json!([{
                "alg": "SHA-256",
                "content": nar_hash_hex(info["narHash"].as_str().unwrap())
            }]),
            "{path}"
        );
        let references: BTreeSet<&str> = info["references"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .filter(|r| *r != path)
            .collect();
        let dependency = document["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["ref"] == path)
            .unwrap_or_else(|| panic!("no dependencies entry for {path}"));
        let depends_on: BTreeSet<&str> = dependency["dependsOn"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert_eq!(depends_on, references, "{path}");
    }
    assert_eq!(infos.len(), closure.len());
}

#[test]
fn a_closure_of_several_roots_is_valid_with_a_subject_of_its_own() {
    let hello = fixtures::example_hello().unwrap();
    let greeting = hello.closure_member("hello-greeting-1.0").unwrap();
    let busybox = hello.closure_member("busybox").unwrap();
    let document = sbom(&[
        "--store-paths",
        greeting.to_str().unwrap(),
        busybox.to_str().unwrap(),
    ]);
    assert_eq!(cyclonedx_errors(&document), Vec::<String>::new());
    let by_ref = components_by_ref(&document);
    assert_eq!(by_ref.len(), 3, "the two paths and the subject");
    let subject = &document["metadata"]["component"];
    assert_eq!(subject["type"], "application");
    let roots: BTreeSet<&str> = document["dependencies"][0]["dependsOn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(document["dependencies"][0]["ref"], subject["bom-ref"]);
    assert_eq!(
        roots,
        BTreeSet::from([greeting.to_str().unwrap(), busybox.to_str().unwrap()])
    );
}
