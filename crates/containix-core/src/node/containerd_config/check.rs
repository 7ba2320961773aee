//! Checking a containerd config for what containix needs: the `containix` runtime handler with
//! containix's runtime type and pod annotations, and CRI's `restrict_oom_score_adj`.

use std::fmt;

use toml::{Table, Value};

use super::handler::{
    HANDLER, POD_ANNOTATIONS, RUNTIME_TYPE, cri_runtime_plugin, handler_table_name,
};

/// What a containerd config that is fit for containix says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdConfig {
    /// The config `version` (1 when absent, as containerd reads it).
    pub version: i64,
    /// The dotted TOML table of the containix handler.
    pub handler_table: String,
    /// CRI's `restrict_oom_score_adj`, if set.
    pub restrict_oom_score_adj: Option<bool>,
    /// The gRPC socket the config names, if any.
    pub grpc_address: Option<String>,
}

/// Why a containerd config is not fit for containix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigProblem {
    /// Not TOML.
    Syntax(String),
    /// A `version` this check does not know.
    UnsupportedVersion(i64),
    /// No `containix` runtime handler table.
    HandlerMissing {
        /// The table that should exist.
        table: String,
    },
    /// The handler has another (or no) `runtime_type`.
    WrongRuntimeType {
        /// The handler table.
        table: String,
        /// The runtime type found, if any.
        found: Option<String>,
    },
    /// The handler's `pod_annotations` lacks `containix.dev/*`.
    PodAnnotationsMissing {
        /// The handler table.
        table: String,
        /// The patterns found.
        found: Vec<String>,
    },
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(message) => write!(f, "not valid TOML: {message}"),
            Self::UnsupportedVersion(version) => {
                write!(f, "config version {version} is not one of 1, 2, 3")
            }
            Self::HandlerMissing { table } => {
                write!(f, "no `{HANDLER}` runtime handler: [{table}] is missing")
            }
            Self::WrongRuntimeType { table, found } => match found {
                Some(found) => write!(
                    f,
                    "[{table}] has runtime_type = \"{found}\", expected \"{RUNTIME_TYPE}\""
                ),
                None => write!(
                    f,
                    "[{table}] has no runtime_type, expected \"{RUNTIME_TYPE}\""
                ),
            },
            Self::PodAnnotationsMissing { table, found } => write!(
                f,
                "[{table}] pod_annotations {found:?} does not include \"{POD_ANNOTATIONS}\", so \
                 pods' containix annotations never reach the shim"
            ),
        }
    }
}

impl ConfigProblem {
    /// One line telling how to fix the problem.
    pub fn fix(&self) -> String {
        match self {
            Self::Syntax(_) => "correct the TOML syntax at the position named".to_owned(),
            Self::UnsupportedVersion(_) => {
                "use a config written by `containerd config default` (version 2 or 3)".to_owned()
            }
            Self::HandlerMissing { table } => format!(
                "run `containix node install`, or add [{table}] with runtime_type = \"{RUNTIME_TYPE}\" and pod_annotations = \
                 [\"{POD_ANNOTATIONS}\"], then restart containerd"
            ),
            Self::WrongRuntimeType { table, .. } => format!(
                "run `containix node install`, or set runtime_type = \"{RUNTIME_TYPE}\" in [{table}], then restart containerd"
            ),
            Self::PodAnnotationsMissing { table, .. } => format!(
                "run `containix node install`, or add \"{POD_ANNOTATIONS}\" to pod_annotations in [{table}], then restart containerd"
            ),
        }
    }
}

/// Checks containerd config text for the containix runtime handler.
pub fn check(text: &str) -> Result<ContainerdConfig, ConfigProblem> {
    let root: Table = text
        .parse()
        .map_err(|err: toml::de::Error| ConfigProblem::Syntax(err.to_string().trim().to_owned()))?;
    let version = root.get("version").and_then(Value::as_integer).unwrap_or(1);
    let plugin = cri_runtime_plugin(version).ok_or(ConfigProblem::UnsupportedVersion(version))?;
    let table = handler_table_name(plugin);
    let cri = lookup(&root, &["plugins", plugin]);
    let handler = cri
        .and_then(|cri| lookup(cri, &["containerd", "runtimes", HANDLER]))
        .ok_or_else(|| ConfigProblem::HandlerMissing {
            table: table.clone(),
        })?;
    let runtime_type = handler.get("runtime_type").and_then(Value::as_str);
    if runtime_type != Some(RUNTIME_TYPE) {
        return Err(ConfigProblem::WrongRuntimeType {
            table,
            found: runtime_type.map(str::to_owned),
        });
    }
    let annotations: Vec<String> = handler
        .get("pod_annotations")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if !annotations.iter().any(|a| a == POD_ANNOTATIONS) {
        return Err(ConfigProblem::PodAnnotationsMissing {
            table,
            found: annotations,
        });
    }
    let restrict_oom_score_adj = cri
        .and_then(|cri| cri.get("restrict_oom_score_adj"))
        .and_then(Value::as_bool);
    let grpc_address = grpc_address_of(&root);
    Ok(ContainerdConfig {
        version,
        handler_table: table,
        restrict_oom_score_adj,
        grpc_address,
    })
}

/// The gRPC socket a containerd config names (`grpc.address`), whether or not it has the
/// containix handler; `None` when unset, empty, or the text is not TOML.
pub fn grpc_address(text: &str) -> Option<String> {
    grpc_address_of(&text.parse().ok()?)
}

fn grpc_address_of(root: &Table) -> Option<String> {
    lookup(root, &["grpc"])
        .and_then(|grpc| grpc.get("address"))
        .and_then(Value::as_str)
        .filter(|address| !address.is_empty())
        .map(str::to_owned)
}

/// The nested table at `keys`, if every step is a table.
fn lookup<'a>(table: &'a Table, keys: &[&str]) -> Option<&'a Table> {
    keys.iter()
        .try_fold(table, |table, key| table.get(*key)?.as_table())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = r#"
version = 2
[grpc]
  address = "/tmp/node/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.containix]
    runtime_type = "io.containerd.containix.v1"
    pod_annotations = ["example.com/*", "containix.dev/*"]
"#;

    const V3: &str = r#"
version = 3
[plugins]
  [plugins.'io.containerd.cri.v1.runtime']
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes]
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.containix]
          runtime_type = 'io.containerd.containix.v1'
          pod_annotations = ['containix.dev/*']
"#;

    #[test]
    fn version_2_with_the_handler_passes() {
        let config = check(V2).unwrap();
        assert_eq!(config.version, 2);
        assert_eq!(
            config.handler_table,
            "plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.containix"
        );
        assert_eq!(config.restrict_oom_score_adj, Some(true));
        assert_eq!(
            config.grpc_address.as_deref(),
            Some("/tmp/node/containerd.sock")
        );
    }

    #[test]
    fn the_grpc_address_is_read_without_the_handler() {
        let text = "version = 2\n[grpc]\n  address = \"/run/k3s/containerd.sock\"\n";
        assert!(check(text).is_err());
        assert_eq!(
            grpc_address(text).as_deref(),
            Some("/run/k3s/containerd.sock")
        );
        assert_eq!(
            grpc_address("version = 2\n[grpc]\n  address = \"\"\n"),
            None
        );
        assert_eq!(grpc_address("not toml ="), None);
    }

    #[test]
    fn version_3_with_the_handler_passes() {
        let config = check(V3).unwrap();
        assert_eq!(config.version, 3);
        assert!(
            config
                .handler_table
                .contains("io.containerd.cri.v1.runtime")
        );
        assert_eq!(config.restrict_oom_score_adj, None);
        assert_eq!(config.grpc_address, None);
    }

    #[test]
    fn version_2_handler_under_the_version_3_table_is_missing() {
        let text = V3.replace("version = 3", "version = 2");
        let problem = check(&text).unwrap_err();
        assert!(
            matches!(&problem, ConfigProblem::HandlerMissing { table } if table.contains("io.containerd.grpc.v1.cri")),
            "{problem:?}"
        );
    }

    #[test]
    fn missing_handler_is_named_with_its_fix() {
        let text = r#"
version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
"#;
        let problem = check(text).unwrap_err();
        assert!(matches!(problem, ConfigProblem::HandlerMissing { .. }));
        assert!(
            problem
                .to_string()
                .contains("no `containix` runtime handler")
        );
        let fix = problem.fix();
        assert!(
            fix.contains("runtime_type = \"io.containerd.containix.v1\""),
            "{fix}"
        );
        assert!(fix.contains("containix.dev/*"), "{fix}");
    }

    #[test]
    fn missing_pod_annotations_are_named() {
        let text = V2.replace(", \"containix.dev/*\"", "");
        match check(&text).unwrap_err() {
            ConfigProblem::PodAnnotationsMissing { found, .. } => {
                assert_eq!(found, vec!["example.com/*".to_owned()]);
            }
            other => panic!("{other:?}"),
        }
        let none = V2.replace(
            "pod_annotations = [\"example.com/*\", \"containix.dev/*\"]",
            "",
        );
        let problem = check(&none).unwrap_err();
        assert!(matches!(
            problem,
            ConfigProblem::PodAnnotationsMissing { .. }
        ));
        assert!(
            problem
                .fix()
                .contains("add \"containix.dev/*\" to pod_annotations")
        );
    }

    #[test]
    fn wrong_or_absent_runtime_type_is_named() {
        let text = V2.replace(
            "\"io.containerd.containix.v1\"",
            "\"io.containerd.runc.v2\"",
        );
        let problem = check(&text).unwrap_err();
        assert_eq!(
            problem,
            ConfigProblem::WrongRuntimeType {
                table: "plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.containix".into(),
                found: Some("io.containerd.runc.v2".into()),
            }
        );
        assert!(
            problem
                .to_string()
                .contains("expected \"io.containerd.containix.v1\"")
        );
        let absent = V2.replace("runtime_type = \"io.containerd.containix.v1\"", "");
        assert!(matches!(
            check(&absent).unwrap_err(),
            ConfigProblem::WrongRuntimeType { found: None, .. }
        ));
    }

    #[test]
    fn version_1_uses_the_cri_plugin_table() {
        let text = r#"
[plugins.cri.containerd.runtimes.containix]
  runtime_type = "io.containerd.containix.v1"
  pod_annotations = ["containix.dev/*"]
"#;
        assert_eq!(check(text).unwrap().version, 1);
    }

    #[test]
    fn syntax_errors_and_unknown_versions_are_problems() {
        assert!(matches!(
            check("version = \n"),
            Err(ConfigProblem::Syntax(_))
        ));
        assert_eq!(
            check("version = 9"),
            Err(ConfigProblem::UnsupportedVersion(9))
        );
    }
}
