//! CycloneDX 1.6 SBOM of a closure: the closure is the bill of materials.
//!
//! Each store path is a component: its name and version split from the store path name the way
//! `builtins.parseDrvName` does, a purl `pkg:nix/<name>@<version>?store_path=<path>`, the NAR
//! hash as its SHA-256 and the store path as its `bom-ref`. The root is the document's subject
//! (`metadata.component`, type `application`) and the other paths are `components` (type
//! `library`); a closure with several roots gets a subject of its own that depends on each. Each
//! path's references are its dependencies. The output is deterministic: the same closure gives
//! the same bytes (so no timestamp and no random serial number).

use serde::Serialize;

use crate::store::closure::Closure;
use crate::store::drv_name::parse_drv_name;
use crate::store::path_info::PathInfo;
use crate::store::store_path::StorePath;

/// The CycloneDX specification version written.
pub const SPEC_VERSION: &str = "1.6";

/// The JSON schema the document names in `$schema`.
pub const SCHEMA_URL: &str = "http://cyclonedx.org/schema/bom-1.6.schema.json";

/// The purl qualifier that carries a component's store path.
pub const STORE_PATH_QUALIFIER: &str = "store_path";

/// The `bom-ref` of the subject of a closure with several roots.
pub const CLOSURE_REF: &str = "containix:closure";

/// Builds the SBOM of a closure as a JSON value. `tool_version` is containix's version.
pub fn cyclonedx(closure: &Closure, tool_version: &str) -> serde_json::Value {
    let roots: Vec<&PathInfo> = closure
        .roots()
        .iter()
        .filter_map(|root| closure.get(root))
        .collect();
    let (subject, subject_path) = match roots.as_slice() {
        [root] => (component(root, "application"), Some(&root.path)),
        _ => (closure_subject(&roots), None),
    };
    let components: Vec<Component<'_>> = closure
        .infos()
        .filter(|info| Some(&info.path) != subject_path)
        .map(|info| component(info, "library"))
        .collect();
    let mut dependencies: Vec<Dependency<'_>> = Vec::new();
    if subject_path.is_none() {
        dependencies.push(Dependency {
            reference: CLOSURE_REF,
            depends_on: roots.iter().map(|root| root.path.as_str()).collect(),
        });
    }
    dependencies.extend(closure.infos().map(|info| {
        Dependency {
            reference: info.path.as_str(),
            depends_on: info
                .references
                .iter()
                .filter(|r| **r != info.path)
                .map(StorePath::as_str)
                .collect(),
        }
    }));
    let document = Document {
        schema: SCHEMA_URL,
        bom_format: "CycloneDX",
        spec_version: SPEC_VERSION,
        version: 1,
        metadata: Metadata {
            tools: Tools {
                components: vec![ToolComponent {
                    kind: "application",
                    name: "containix",
                    version: tool_version,
                }],
            },
            component: subject,
        },
        components,
        dependencies,
    };
    serde_json::to_value(document).expect("an SBOM always serialises")
}

/// The subject of a closure with several roots (or none): an application made of them.
fn closure_subject<'a>(roots: &[&'a PathInfo]) -> Component<'a> {
    let names: Vec<&str> = roots
        .iter()
        .map(|root| parse_drv_name(root.path.name()).0)
        .collect();
    Component {
        kind: "application",
        bom_ref: CLOSURE_REF,
        name: if names.is_empty() {
            "closure".to_owned()
        } else {
            names.join("+")
        },
        version: None,
        purl: None,
        hashes: Vec::new(),
        properties: Vec::new(),
    }
}

fn component<'a>(info: &'a PathInfo, kind: &'static str) -> Component<'a> {
    let (name, version) = parse_drv_name(info.path.name());
    Component {
        kind,
        bom_ref: info.path.as_str(),
        name: name.to_owned(),
        version,
        purl: Some(purl(name, version, &info.path)),
        hashes: vec![Hash {
            alg: "SHA-256",
            content: &info.nar_hash,
        }],
        properties: vec![
            Property {
                name: "nix:store_path",
                value: info.path.to_string(),
            },
            Property {
                name: "nix:nar_size",
                value: info.nar_size.to_string(),
            },
        ],
    }
}

/// `pkg:nix/<name>[@<version>]?store_path=<path>`, each part percent-encoded as the purl
/// specification asks (a qualifier value keeps its `/` and `:`).
pub fn purl(name: &str, version: Option<&str>, path: &StorePath) -> String {
    let mut text = format!("pkg:nix/{}", percent_encode(name, ""));
    if let Some(version) = version {
        text.push('@');
        text.push_str(&percent_encode(version, ""));
    }
    text.push('?');
    text.push_str(STORE_PATH_QUALIFIER);
    text.push('=');
    text.push_str(&percent_encode(path.as_str(), "/:"));
    text
}

/// `text` with every byte outside `A-Z a-z 0-9 . - _ ~` and `keep` written as `%XX`.
fn percent_encode(text: &str, keep: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let c = char::from(byte);
        if c.is_ascii_alphanumeric() || ".-_~".contains(c) || keep.contains(c) {
            out.push(c);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    bom_format: &'static str,
    spec_version: &'static str,
    version: u32,
    metadata: Metadata<'a>,
    components: Vec<Component<'a>>,
    dependencies: Vec<Dependency<'a>>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    tools: Tools<'a>,
    component: Component<'a>,
}

#[derive(Serialize)]
struct Tools<'a> {
    components: Vec<ToolComponent<'a>>,
}

#[derive(Serialize)]
struct ToolComponent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'static str,
    version: &'a str,
}

#[derive(Serialize)]
struct Component<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "bom-ref")]
    bom_ref: &'a str,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purl: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hashes: Vec<Hash<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    properties: Vec<Property>,
}

#[derive(Serialize)]
struct Hash<'a> {
    alg: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct Property {
    name: &'static str,
    value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Dependency<'a> {
    #[serde(rename = "ref")]
    reference: &'a str,
    depends_on: Vec<&'a str>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn info(hash_char: char, name: &str, refs: &[&StorePath]) -> PathInfo {
        PathInfo::new(
            store_path(hash_char, name),
            format!("{:064x}", u64::from(hash_char)),
            1000,
            refs.iter().map(|r| (*r).clone()),
        )
    }

    fn store_path(hash_char: char, name: &str) -> StorePath {
        StorePath::parse(&format!(
            "/nix/store/{}-{name}",
            hash_char.to_string().repeat(32)
        ))
        .unwrap()
    }

    /// Every `bom-ref` in the document: the subject's and the components'.
    fn bom_refs(sbom: &serde_json::Value) -> Vec<String> {
        std::iter::once(&sbom["metadata"]["component"])
            .chain(sbom["components"].as_array().unwrap())
            .map(|c| c["bom-ref"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn the_root_is_the_subject_and_every_other_path_a_component() {
        let libc = store_path('a', "glibc-2.39-52");
        let app = store_path('b', "app-1.0");
        let closure = Closure::new(
            vec![app.clone()],
            [
                info('b', "app-1.0", &[&app, &libc]),
                info('a', "glibc-2.39-52", &[]),
            ],
        )
        .unwrap();
        let sbom = cyclonedx(&closure, "0.1.0");
        assert_eq!(sbom["bomFormat"], "CycloneDX");
        assert_eq!(sbom["specVersion"], "1.6");
        assert_eq!(sbom["$schema"], SCHEMA_URL);
        let subject = &sbom["metadata"]["component"];
        assert_eq!(subject["type"], "application");
        assert_eq!(subject["name"], "app");
        assert_eq!(subject["bom-ref"], app.as_str());
        assert_eq!(
            subject["purl"],
            format!("pkg:nix/app@1.0?store_path={app}").as_str()
        );
        assert_eq!(
            sbom["metadata"]["tools"]["components"][0]["version"],
            "0.1.0"
        );
        let components = sbom["components"].as_array().unwrap();
        assert_eq!(components.len(), 1, "the subject is not repeated");
        assert_eq!(components[0]["type"], "library");
        assert_eq!(components[0]["name"], "glibc");
        assert_eq!(components[0]["version"], "2.39-52");
        assert_eq!(components[0]["hashes"][0]["alg"], "SHA-256");
        assert_eq!(
            components[0]["hashes"][0]["content"]
                .as_str()
                .unwrap()
                .len(),
            64
        );
        let refs = bom_refs(&sbom);
        assert_eq!(refs.len(), refs.iter().collect::<BTreeSet<_>>().len());
        let deps = sbom["dependencies"].as_array().unwrap();
        assert_eq!(deps.len(), 2);
        let app_deps = deps.iter().find(|d| d["ref"] == app.as_str()).unwrap();
        assert_eq!(app_deps["dependsOn"], serde_json::json!([libc.as_str()]));
        assert_eq!(cyclonedx(&closure, "0.1.0"), sbom, "deterministic");
    }

    #[test]
    fn several_roots_get_a_subject_that_depends_on_each() {
        let a = store_path('a', "curl-8.0");
        let b = store_path('b', "jq-1.7");
        let closure = Closure::new(
            vec![a.clone(), b.clone()],
            [info('a', "curl-8.0", &[]), info('b', "jq-1.7", &[])],
        )
        .unwrap();
        let sbom = cyclonedx(&closure, "0.1.0");
        let subject = &sbom["metadata"]["component"];
        assert_eq!(subject["bom-ref"], CLOSURE_REF);
        assert_eq!(subject["name"], "curl+jq");
        assert_eq!(sbom["components"].as_array().unwrap().len(), 2);
        let refs = bom_refs(&sbom);
        assert_eq!(refs.len(), refs.iter().collect::<BTreeSet<_>>().len());
        assert_eq!(
            sbom["dependencies"][0],
            serde_json::json!({ "ref": CLOSURE_REF, "dependsOn": [a.as_str(), b.as_str()] })
        );
    }

    #[test]
    fn purls_encode_what_the_purl_spec_reserves() {
        let path = store_path('a', "python3.12-a+b-1.0");
        assert_eq!(
            purl("python3.12-a+b", Some("1.0"), &path),
            format!(
                "pkg:nix/python3.12-a%2Bb@1.0?store_path={}",
                path.as_str().replace('+', "%2B")
            )
        );
        let bare = store_path('c', "source");
        assert_eq!(
            purl("source", None, &bare),
            format!("pkg:nix/source?store_path={bare}")
        );
    }
}
