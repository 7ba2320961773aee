//! CycloneDX 1.5 SBOM of a closure: the closure is the bill of materials.
//!
//! Each store path becomes a component (name and version split from the store path name the way
//! `builtins.parseDrvName` does, the NAR hash as its SHA-256), and each path's references become
//! its dependencies. The output is deterministic: the same closure gives the same bytes.

use serde::Serialize;

use crate::store::closure::Closure;
use crate::store::drv_name::parse_drv_name;
use crate::store::path_info::PathInfo;

/// The CycloneDX specification version written.
pub const SPEC_VERSION: &str = "1.5";

/// Builds the SBOM of a closure as a JSON value. `tool_version` is containix's version.
pub fn cyclonedx(closure: &Closure, tool_version: &str) -> serde_json::Value {
    let components: Vec<Component<'_>> = closure.infos().map(component).collect();
    let dependencies: Vec<Dependency<'_>> = closure
        .infos()
        .map(|info| Dependency {
            reference: info.path.as_str(),
            depends_on: info
                .references
                .iter()
                .filter(|r| **r != info.path)
                .map(|r| r.as_str())
                .collect(),
        })
        .collect();
    let root = closure.roots().first().and_then(|r| closure.get(r));
    let document = Document {
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
            component: root.map(component),
        },
        components,
        dependencies,
    };
    serde_json::to_value(document).expect("an SBOM always serialises")
}

fn component(info: &PathInfo) -> Component<'_> {
    let (name, version) = parse_drv_name(info.path.name());
    Component {
        kind: "library",
        bom_ref: info.path.as_str(),
        name,
        version,
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
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
    #[serde(skip_serializing_if = "Option::is_none")]
    component: Option<Component<'a>>,
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
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    hashes: Vec<Hash<'a>>,
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
    use super::*;
    use crate::store::store_path::StorePath;

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

    #[test]
    fn describes_the_closure() {
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
        assert_eq!(sbom["specVersion"], "1.5");
        assert_eq!(sbom["metadata"]["component"]["name"], "app");
        assert_eq!(
            sbom["metadata"]["tools"]["components"][0]["version"],
            "0.1.0"
        );
        let components = sbom["components"].as_array().unwrap();
        assert_eq!(components.len(), 2);
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
        let deps = sbom["dependencies"].as_array().unwrap();
        let app_deps = deps.iter().find(|d| d["ref"] == app.as_str()).unwrap();
        assert_eq!(app_deps["dependsOn"], serde_json::json!([libc.as_str()]));
        assert_eq!(cyclonedx(&closure, "0.1.0"), sbom, "deterministic");
    }
}
