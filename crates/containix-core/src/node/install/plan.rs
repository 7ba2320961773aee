//! Deciding what an install or uninstall changes, from what the node looks like. Pure.

use std::path::{Path, PathBuf};

use super::containerd_target::ConfigForm;
use super::error::NodeInstallError;
use super::node_state::{NodePaths, NodeState, ShimState};
use crate::node::containerd_config::edit::{ConfigEdit, EditError, add_handler, remove_handler};
use crate::node::containerd_config::template_edit::{
    add_template_handler, remove_template_handler,
};

/// One change to the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeStep {
    /// Copy the shim binary into place (replacing another file by that name).
    InstallShim {
        /// The shim shipped with this containix.
        from: PathBuf,
        /// Where containerd finds it.
        to: PathBuf,
    },
    /// Write the documented default node policy (only ever when there is none).
    WritePolicy {
        /// The policy file.
        path: PathBuf,
    },
    /// Replace containerd's config (or its k3s/RKE2 template).
    WriteContainerdConfig {
        /// The config file.
        path: PathBuf,
        /// The text before, `None` when the file does not exist yet.
        before: Option<String>,
        /// The new text.
        after: String,
        /// What changes, one line each.
        changes: Vec<String>,
    },
    /// Remove containerd's config, which held nothing but what an install wrote.
    RemoveContainerdConfig {
        /// The config file.
        path: PathBuf,
        /// The text removed.
        before: String,
    },
    /// Remove the installed shim.
    RemoveShim {
        /// The installed shim.
        path: PathBuf,
    },
    /// Remove the node policy (`--purge`).
    RemovePolicy {
        /// The policy file.
        path: PathBuf,
    },
}

impl NodeStep {
    /// One line saying what the step does.
    pub fn describe(&self) -> String {
        match self {
            NodeStep::InstallShim { from, to } => {
                format!("install the shim {} as {}", from.display(), to.display())
            }
            NodeStep::WritePolicy { path } => {
                format!("write the default node policy to {}", path.display())
            }
            NodeStep::WriteContainerdConfig { path, changes, .. } => {
                format!("{}: {}", path.display(), changes.join("; "))
            }
            NodeStep::RemoveContainerdConfig { path, .. } => format!(
                "remove {}, which held only the containix handler",
                path.display()
            ),
            NodeStep::RemoveShim { path } => format!("remove the shim {}", path.display()),
            NodeStep::RemovePolicy { path } => {
                format!("remove the node policy {}", path.display())
            }
        }
    }

    /// The file the step writes or removes.
    pub fn path(&self) -> &Path {
        match self {
            NodeStep::InstallShim { to, .. } => to,
            NodeStep::WritePolicy { path }
            | NodeStep::WriteContainerdConfig { path, .. }
            | NodeStep::RemoveContainerdConfig { path, .. }
            | NodeStep::RemoveShim { path }
            | NodeStep::RemovePolicy { path } => path,
        }
    }

    /// A short machine-readable name of the step.
    pub fn action(&self) -> &'static str {
        match self {
            NodeStep::InstallShim { .. } => "install-shim",
            NodeStep::WritePolicy { .. } => "write-policy",
            NodeStep::WriteContainerdConfig { .. } => "write-containerd-config",
            NodeStep::RemoveContainerdConfig { .. } => "remove-containerd-config",
            NodeStep::RemoveShim { .. } => "remove-shim",
            NodeStep::RemovePolicy { .. } => "remove-policy",
        }
    }
}

/// The changes an install or uninstall makes, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodePlan {
    /// The steps, in the order they are applied.
    pub steps: Vec<NodeStep>,
    /// Whether containerd must be restarted to read its changed config. Installing or
    /// replacing the shim needs no restart: containerd starts a new shim process per pod.
    pub restart_containerd: bool,
}

impl NodePlan {
    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Plans an install: the shim first, then the policy, then the config, so that containerd
/// never reads a handler whose shim is missing. `new_file_version` is the config version to
/// write when the node has no config file (a template's version is in
/// [`NodePaths::config_form`]).
pub fn plan_install(
    paths: &NodePaths,
    state: &NodeState,
    shim_source: &Path,
    new_file_version: i64,
) -> Result<NodePlan, NodeInstallError> {
    let mut plan = NodePlan::default();
    if state.shim != ShimState::Current {
        plan.steps.push(NodeStep::InstallShim {
            from: shim_source.to_owned(),
            to: paths.shim(),
        });
    }
    if !state.policy_exists {
        plan.steps.push(NodeStep::WritePolicy {
            path: paths.policy.clone(),
        });
    }
    let before = state.containerd_config.as_deref().unwrap_or("");
    let edit = match paths.config_form {
        ConfigForm::Toml => add_handler(before, new_file_version),
        ConfigForm::Template { version } => add_template_handler(before, version),
    };
    let edit = config_edit(paths, edit)?;
    if edit.changed() {
        plan.steps.push(NodeStep::WriteContainerdConfig {
            path: paths.containerd_config.clone(),
            before: state.containerd_config.clone(),
            after: edit.after.unwrap_or_default(),
            changes: edit.changes,
        });
        plan.restart_containerd = true;
    }
    Ok(plan)
}

/// Plans an uninstall: the handler leaves the config first, then the shim goes, and with
/// `purge` the policy too. The state dir (GC roots of running containers) is never touched.
pub fn plan_uninstall(
    paths: &NodePaths,
    state: &NodeState,
    purge: bool,
) -> Result<NodePlan, NodeInstallError> {
    let mut plan = NodePlan::default();
    if let Some(before) = &state.containerd_config {
        let edit = match paths.config_form {
            ConfigForm::Toml => remove_handler(before),
            ConfigForm::Template { version } => remove_template_handler(before, version),
        };
        let edit = config_edit(paths, edit)?;
        if edit.changed() {
            plan.steps.push(match edit.after {
                Some(after) => NodeStep::WriteContainerdConfig {
                    path: paths.containerd_config.clone(),
                    before: Some(before.clone()),
                    after,
                    changes: edit.changes,
                },
                None => NodeStep::RemoveContainerdConfig {
                    path: paths.containerd_config.clone(),
                    before: before.clone(),
                },
            });
            plan.restart_containerd = true;
        }
    }
    if state.shim != ShimState::Absent {
        plan.steps.push(NodeStep::RemoveShim { path: paths.shim() });
    }
    if purge && state.policy_exists {
        plan.steps.push(NodeStep::RemovePolicy {
            path: paths.policy.clone(),
        });
    }
    Ok(plan)
}

fn config_edit(
    paths: &NodePaths,
    edit: Result<ConfigEdit, EditError>,
) -> Result<ConfigEdit, NodeInstallError> {
    edit.map_err(|source| NodeInstallError::Config {
        path: paths.containerd_config.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::node::containerd_config::edit::EditError;

    const STOCK: &str = include_str!("../containerd_config/testdata/containerd-1.6-default.toml");

    fn state(config: Option<&str>, shim: ShimState, policy_exists: bool) -> NodeState {
        NodeState {
            containerd_config: config.map(str::to_owned),
            shim,
            policy_exists,
        }
    }

    fn shim() -> &'static Path {
        Path::new("/opt/containix/bin/containerd-shim-containix-v1")
    }

    /// Applies a plan to a state the way `apply` does to files.
    fn after(state: &NodeState, plan: &NodePlan) -> NodeState {
        let mut next = state.clone();
        for step in &plan.steps {
            match step {
                NodeStep::InstallShim { .. } => next.shim = ShimState::Current,
                NodeStep::WritePolicy { .. } => next.policy_exists = true,
                NodeStep::WriteContainerdConfig { after, .. } => {
                    next.containerd_config = Some(after.clone())
                }
                NodeStep::RemoveContainerdConfig { .. } => next.containerd_config = None,
                NodeStep::RemoveShim { .. } => next.shim = ShimState::Absent,
                NodeStep::RemovePolicy { .. } => next.policy_exists = false,
            }
        }
        next
    }

    #[test]
    fn a_fresh_node_gets_shim_policy_and_handler_in_that_order() {
        let paths = NodePaths::default();
        let node = state(Some(STOCK), ShimState::Absent, false);
        let plan = plan_install(&paths, &node, shim(), 2).unwrap();
        let actions: Vec<_> = plan.steps.iter().map(NodeStep::action).collect();
        assert_eq!(
            actions,
            ["install-shim", "write-policy", "write-containerd-config"]
        );
        assert!(plan.restart_containerd);
        assert!(
            plan.steps[0]
                .describe()
                .contains("/usr/local/bin/containerd-shim-containix-v1")
        );
        assert!(
            plan.steps[2]
                .describe()
                .starts_with("/etc/containerd/config.toml: add [")
        );
    }

    #[test]
    fn an_installed_node_plans_nothing_and_a_changed_shim_needs_no_restart() {
        let paths = NodePaths::default();
        let node = state(Some(STOCK), ShimState::Absent, false);
        let installed = after(&node, &plan_install(&paths, &node, shim(), 2).unwrap());
        assert!(
            plan_install(&paths, &installed, shim(), 2)
                .unwrap()
                .is_empty()
        );
        let upgraded = NodeState {
            shim: ShimState::Different,
            ..installed
        };
        let plan = plan_install(&paths, &upgraded, shim(), 2).unwrap();
        assert_eq!(plan.steps.len(), 1);
        assert!(!plan.restart_containerd);
    }

    #[test]
    fn an_existing_policy_is_never_overwritten_or_removed_without_purge() {
        let paths = NodePaths::default();
        let node = state(Some(STOCK), ShimState::Current, true);
        let plan = plan_install(&paths, &node, shim(), 2).unwrap();
        assert!(plan.steps.iter().all(|s| s.action() != "write-policy"));
        let installed = after(&node, &plan);
        let kept = plan_uninstall(&paths, &installed, false).unwrap();
        assert!(kept.steps.iter().all(|s| s.action() != "remove-policy"));
        let purged = plan_uninstall(&paths, &installed, true).unwrap();
        assert_eq!(purged.steps.last().unwrap().action(), "remove-policy");
    }

    #[test]
    fn uninstall_removes_a_config_file_the_install_created() {
        let paths = NodePaths::default();
        let node = state(None, ShimState::Absent, true);
        let plan = plan_install(&paths, &node, shim(), 3).unwrap();
        let installed = after(&node, &plan);
        assert!(
            installed
                .containerd_config
                .as_deref()
                .unwrap()
                .contains("version = 3")
        );
        let plan = plan_uninstall(&paths, &installed, false).unwrap();
        assert_eq!(plan.steps[0].action(), "remove-containerd-config");
        assert_eq!(after(&installed, &plan), node);
    }

    #[test]
    fn a_config_it_cannot_edit_is_an_error_naming_the_file() {
        let paths = NodePaths::default();
        let node = state(Some("version = 7\n"), ShimState::Absent, false);
        let err = plan_install(&paths, &node, shim(), 2).unwrap_err();
        assert!(matches!(
            err,
            NodeInstallError::Config {
                source: EditError::UnsupportedVersion(7),
                ..
            }
        ));
        assert!(
            err.to_string().starts_with("/etc/containerd/config.toml: "),
            "{err}"
        );
    }

    fn any_state() -> impl Strategy<Value = NodeState> {
        (
            prop_oneof![
                Just(None),
                Just(Some(String::new())),
                Just(Some(STOCK.to_owned())),
                Just(Some("version = 3\n# mine\n".to_owned())),
            ],
            prop_oneof![
                Just(ShimState::Absent),
                Just(ShimState::Current),
                Just(ShimState::Different)
            ],
            any::<bool>(),
        )
            .prop_map(|(containerd_config, shim, policy_exists)| NodeState {
                containerd_config,
                shim,
                policy_exists,
            })
    }

    fn any_template_state() -> impl Strategy<Value = (i64, NodeState)> {
        (
            2i64..=3,
            prop_oneof![
                Just(None),
                Just(Some("{{ template \"base\" . }}\n".to_owned())),
                Just(Some(
                    "# mine\n{{ template \"base\" . }}\n{{ if .NodeConfig.SELinux }}\n\
                     # selinux on\n{{ end }}\n"
                        .to_owned()
                )),
            ],
            any::<bool>(),
        )
            .prop_map(|(version, containerd_config, policy_exists)| {
                let state = NodeState {
                    containerd_config,
                    shim: ShimState::Absent,
                    policy_exists,
                };
                (version, state)
            })
    }

    proptest! {
        /// On k3s and RKE2 the same holds for the template: installing converges, and
        /// uninstalling gives the template back (or removes the one the install created).
        #[test]
        fn a_template_install_converges_and_uninstall_undoes_it(
            (version, node) in any_template_state(),
        ) {
            let paths = NodePaths {
                containerd_config: PathBuf::from(
                    "/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl",
                ),
                config_form: ConfigForm::Template { version },
                ..NodePaths::default()
            };
            let plan = plan_install(&paths, &node, shim(), 2).unwrap();
            prop_assert!(plan.restart_containerd);
            let installed = after(&node, &plan);
            let template = installed.containerd_config.clone().unwrap();
            prop_assert!(template.contains("{{ template \"base\" . }}"));
            prop_assert!(template.contains("SystemdCgroup = {{ .SystemdCgroup }}"));
            prop_assert!(plan_install(&paths, &installed, shim(), 2).unwrap().is_empty());
            let removed = after(&installed, &plan_uninstall(&paths, &installed, false).unwrap());
            prop_assert_eq!(removed.containerd_config, node.containerd_config);
        }

        #[test]
        fn install_converges_and_uninstall_undoes_it(node in any_state(), purge in any::<bool>()) {
            let paths = NodePaths::default();
            let installed = after(&node, &plan_install(&paths, &node, shim(), 2).unwrap());
            prop_assert!(plan_install(&paths, &installed, shim(), 2).unwrap().is_empty());
            let removed = after(&installed, &plan_uninstall(&paths, &installed, purge).unwrap());
            prop_assert_eq!(removed.shim, ShimState::Absent);
            prop_assert_eq!(removed.policy_exists, !purge);
            // The config means what it meant before (an empty file and no file alike).
            let before = node.containerd_config.clone().filter(|t| !t.trim().is_empty());
            prop_assert_eq!(removed.containerd_config.clone(), before);
            prop_assert!(plan_uninstall(&paths, &removed, purge).unwrap().is_empty());
        }
    }
}
