//! Adding and removing the `containix` runtime handler in the containerd config template of k3s
//! and RKE2.
//!
//! Both render containerd's `config.toml` from a Go template at every start:
//! `config-v3.toml.tmpl` (config version 3, containerd 2.x) or `config.toml.tmpl` (version 2)
//! in the agent's containerd folder, and `{{ template "base" . }}` includes their own config.
//! A template written from nothing is that include plus the handler, whose runc options take
//! the node's cgroup driver from the template data (`SystemdCgroup = {{ .SystemdCgroup }}`, as
//! the base template's runc does). An existing template is edited in place through
//! [`MaskedTemplate`], keeping every other line. Pure.

use toml_edit::{Item, Table, Value};

use super::edit::HANDLER_COMMENT;
use super::edit::{
    ConfigEdit, EditError, add_handler_to, checked_addition, default_runtime, handler_block,
    has_handler, parse, remove_handler, same_apart_from_handler, unchanged,
};
use super::go_template::{BASE_TEMPLATE_ACTION, MaskedTemplate, SYSTEMD_CGROUP_ACTION};
use super::handler::{HANDLER, cri_runtime_plugin, handler_table_name};

/// First line of a template [`add_template_handler`] wrote from nothing. Removing the handler
/// from such a template leaves only the base include, so [`remove_template_handler`] says the
/// file can go (the distribution then renders its default config again).
pub const TEMPLATE_CREATED_MARKER: &str = "# Written by `containix node install`: the k3s/RKE2 base config plus the containix runtime handler.";

/// Adds the handler to the template `before` (empty when there is none) for config `version`
/// (3 for `config-v3.toml.tmpl`, 2 for `config.toml.tmpl`), or completes an existing one.
pub fn add_template_handler(before: &str, version: i64) -> Result<ConfigEdit, EditError> {
    let created = before.trim().is_empty();
    let source = if created {
        created_template()
    } else {
        before.to_owned()
    };
    let mut masked = MaskedTemplate::mask(&source)?;
    let (text, prefix) = with_version(&masked.text, version)?;
    let doc = parse(&text)?;
    let edit = if has_handler(&doc)? {
        // Completed where it stands.
        let edit = add_handler_to(&text, None)?;
        if !edit.changed() {
            return Ok(unchanged(before, edit.version, edit.table));
        }
        edit
    } else {
        // Appended after everything, so it follows the base include: new tables printed in
        // the middle of a template could land before the `version` the base sets.
        let model = match default_runtime(&doc)? {
            Some(runc) => runc,
            None => {
                let systemd_cgroup = masked.value_placeholder(SYSTEMD_CGROUP_ACTION);
                let mut options = Table::new();
                options.insert("SystemdCgroup", Item::Value(Value::from(systemd_cgroup)));
                let mut model = Table::new();
                model.insert("options", Item::Table(options));
                model
            }
        };
        let block = handler_block(&doc, &model)?;
        let after = format!("{}\n{block}", text.trim_end_matches('\n'));
        checked_addition(&text, after)?
    };
    let after = edit.after.as_deref().unwrap_or_default();
    let after = after
        .strip_prefix(&prefix)
        .ok_or_else(|| EditError::Unsafe(edit.table.clone()))?;
    let after = masked.unmask(after)?;
    let mut changes = edit.changes;
    if created {
        changes.insert(
            0,
            format!(
                "create the template (the k3s/RKE2 base config, {BASE_TEMPLATE_ACTION}, plus the \
                 handler)"
            ),
        );
    }
    Ok(ConfigEdit {
        version: edit.version,
        table: edit.table,
        after: Some(after),
        changes,
    })
}

/// Removes the handler from the template `before`, keeping everything else; a template that
/// held nothing but what [`add_template_handler`] wrote can be removed (`after` is `None`).
pub fn remove_template_handler(before: &str, version: i64) -> Result<ConfigEdit, EditError> {
    let masked = MaskedTemplate::mask(before)?;
    let (text, prefix) = with_version(&masked.text, version)?;
    let doc = parse(&text)?;
    if !has_handler(&doc)? {
        let edit = remove_handler(&text)?;
        return Ok(unchanged(before, edit.version, edit.table));
    }
    // Cut as text: a TOML document would take the comments above the handler (such as the
    // base include's placeholder) away with it.
    let version = doc
        .get("version")
        .and_then(Item::as_integer)
        .unwrap_or(version);
    let plugin = cri_runtime_plugin(version).ok_or(EditError::UnsupportedVersion(version))?;
    let table = handler_table_name(plugin);
    let after = cut_handler(&text, plugin);
    let still_there = parse(&after).map_or(true, |doc| has_handler(&doc).unwrap_or(true));
    if still_there || !same_apart_from_handler(&text, &after, plugin) {
        return Err(EditError::Unsafe(table));
    }
    let after = after
        .strip_prefix(&prefix)
        .ok_or_else(|| EditError::Unsafe(table.clone()))?;
    let after = masked.unmask(after)?;
    let only_ours = after.trim_end() == created_template().trim_end();
    let mut changes = vec![format!("remove [{table}]")];
    if only_ours {
        changes.push(
            "remove the template, which held nothing else (the default config comes back at the \
             next start)"
                .to_owned(),
        );
    }
    Ok(ConfigEdit {
        version,
        table,
        after: (!only_ours).then_some(after),
        changes,
    })
}

/// `text` without the lines of the handler's tables (`[...runtimes.containix]` and its
/// subtables), the handler comment above them and one blank line above that. Comment lines
/// after the handler's last key stay: they lead into whatever follows.
fn cut_handler(text: &str, plugin: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let handler_path = ["plugins", plugin, "containerd", "runtimes", HANDLER];
    let header_path = |line: &str| -> Option<Vec<String>> {
        let inner = line.trim().strip_prefix('[')?.strip_suffix(']')?;
        if inner.starts_with('[') {
            return None;
        }
        let keys = toml_edit::Key::parse(inner).ok()?;
        Some(keys.iter().map(|key| key.get().to_owned()).collect())
    };
    let is_handler = |line: &str| {
        header_path(line).is_some_and(|path| {
            path.len() >= handler_path.len() && path.iter().zip(handler_path).all(|(a, b)| a == b)
        })
    };
    let mut keep = vec![true; lines.len()];
    let mut index = 0;
    while index < lines.len() {
        if !is_handler(lines[index]) {
            index += 1;
            continue;
        }
        // The header, then its lines up to the next header.
        let start = index;
        let mut end = index + 1;
        while end < lines.len() && header_path(lines[end]).is_none() {
            end += 1;
        }
        let next_is_handler = end < lines.len() && is_handler(lines[end]);
        let mut last = end;
        if !next_is_handler {
            // Keep the comments and blank lines that lead into what follows.
            while last > start + 1 && is_blank_or_comment(lines[last - 1]) {
                last -= 1;
            }
        }
        keep[start..last].iter_mut().for_each(|k| *k = false);
        // The comment `add_handler` put above the first table, and the blank line before it.
        let mut above = start;
        if above > 0 && keep[above - 1] && lines[above - 1].trim() == HANDLER_COMMENT {
            above -= 1;
            keep[above] = false;
            if above > 0 && keep[above - 1] && lines[above - 1].trim().is_empty() {
                keep[above - 1] = false;
            }
        }
        index = end;
    }
    lines
        .iter()
        .zip(keep)
        .filter(|(_, keep)| *keep)
        .map(|(line, _)| *line)
        .collect()
}

fn is_blank_or_comment(line: &str) -> bool {
    let line = line.trim();
    line.is_empty() || line.starts_with('#')
}

fn created_template() -> String {
    format!("{TEMPLATE_CREATED_MARKER}\n{BASE_TEMPLATE_ACTION}\n")
}

/// `text` with a `version` line in front when it has none of its own (the base template it
/// includes sets it), and that line, to strip after the edit.
fn with_version(text: &str, version: i64) -> Result<(String, String), EditError> {
    if parse(text)?.contains_key("version") {
        return Ok((text.to_owned(), String::new()));
    }
    let prefix = format!("version = {version}\n");
    Ok((format!("{prefix}{text}"), prefix))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::node::containerd_config::check::check;

    /// What k3s renders a template into, roughly: the base (here a stand-in with runc, as
    /// k3s's has) where the include is, and the data filled in.
    fn render(template: &str, version: i64) -> String {
        let plugin = cri_runtime_plugin(version).unwrap();
        let base = format!(
            "# File generated by k3s. DO NOT EDIT.\nversion = {version}\n\
             [plugins.\"{plugin}\".containerd.runtimes.runc]\n  \
             runtime_type = \"io.containerd.runc.v2\"\n\
             [plugins.\"{plugin}\".containerd.runtimes.runc.options]\n  \
             SystemdCgroup = true\n"
        );
        // Other actions (conditionals) render to nothing here.
        template
            .replace(BASE_TEMPLATE_ACTION, &base)
            .replace(SYSTEMD_CGROUP_ACTION, "true")
            .lines()
            .filter(|line| !(line.trim().starts_with("{{") && line.trim().ends_with("}}")))
            .map(|line| format!("{line}\n"))
            .collect()
    }

    #[test]
    fn a_new_template_is_the_base_plus_the_handler_in_template_form() {
        for version in [2, 3] {
            let edit = add_template_handler("", version).unwrap();
            let after = edit.after.unwrap();
            assert!(after.starts_with(&format!(
                "{TEMPLATE_CREATED_MARKER}\n{BASE_TEMPLATE_ACTION}\n"
            )));
            assert!(
                after.contains("SystemdCgroup = {{ .SystemdCgroup }}"),
                "{after}"
            );
            assert!(!after.contains("version ="), "the base sets it: {after}");
            assert!(edit.changes[0].starts_with("create the template"));
            // Rendered, it is a config containerd reads with the handler in it.
            let rendered = render(&after, version);
            let config = check(&rendered).unwrap_or_else(|p| panic!("{p}: {rendered}"));
            assert_eq!(config.version, version);
            let parsed: toml::Table = rendered.parse().unwrap();
            assert_eq!(
                parsed["plugins"][cri_runtime_plugin(version).unwrap()]["containerd"]["runtimes"]
                    ["containix"]["options"]["SystemdCgroup"]
                    .as_bool(),
                Some(true)
            );
            // Idempotent, and the removal gives the file back to the distribution.
            assert!(!add_template_handler(&after, version).unwrap().changed());
            let removed = remove_template_handler(&after, version).unwrap();
            assert_eq!(removed.after, None);
        }
    }

    #[test]
    fn an_operator_s_template_keeps_every_line() {
        let template = "{{ template \"base\" . }}\n\n\
            # gVisor, by hand.\n\
            [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc]\n  \
            runtime_type = \"io.containerd.runsc.v1\"\n\
            [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc.options]\n  \
            SystemdCgroup = {{ .SystemdCgroup }}\n";
        let edit = add_template_handler(template, 3).unwrap();
        let after = edit.after.unwrap();
        assert!(after.starts_with(template), "{after}");
        assert!(
            after[template.len()..].contains("runtimes.containix]"),
            "{after}"
        );
        let rendered = render(&after, 3);
        check(&rendered).unwrap();
        let removed = remove_template_handler(&after, 3).unwrap();
        assert_eq!(removed.after.as_deref(), Some(template));
    }

    #[test]
    fn a_full_template_without_the_base_copies_runc_s_templated_options() {
        let template = "version = 2\n\
            [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  \
            runtime_type = \"io.containerd.runc.v2\"\n\
            [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  \
            SystemdCgroup = {{ .SystemdCgroup }}\n  \
            BinaryName = \"{{ .NodeConfig.AgentConfig.RuncBinary }}\"\n";
        // The binary name is inside a string: refused, naming the line.
        let err = add_template_handler(template, 2).unwrap_err();
        assert!(
            matches!(err, EditError::TemplateAction { line: 6, .. }),
            "{err}"
        );
        let template = template.lines().take(5).collect::<Vec<_>>().join("\n") + "\n";
        let after = add_template_handler(&template, 2).unwrap().after.unwrap();
        assert_eq!(
            after
                .matches("SystemdCgroup = {{ .SystemdCgroup }}")
                .count(),
            2
        );
        assert!(after.starts_with("version = 2\n"));
        check(&render(&after, 2)).unwrap();
    }

    #[test]
    fn a_handler_present_in_the_template_is_completed_not_duplicated() {
        let template = "{{ template \"base\" . }}\n\
            [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.containix]\n  \
            runtime_type = \"io.containerd.containix.v1\"\n";
        let edit = add_template_handler(template, 3).unwrap();
        assert_eq!(edit.changes.len(), 1, "{:?}", edit.changes);
        assert!(edit.changes[0].contains("pod_annotations"));
        check(&render(&edit.after.unwrap(), 3)).unwrap();
    }

    proptest! {
        /// Whatever an operator's template holds around the base include (comments, template
        /// conditionals, other runtimes), installing then uninstalling gives it back verbatim,
        /// and installing twice changes nothing the second time.
        #[test]
        fn install_converges_and_uninstall_restores(
            version in 2i64..=3,
            comment in "[a-z ]{0,20}",
            conditional in any::<bool>(),
            other_runtime in any::<bool>(),
        ) {
            let plugin = cri_runtime_plugin(version).unwrap();
            let mut template = format!("# {comment}\n{BASE_TEMPLATE_ACTION}\n");
            if conditional {
                template.push_str("{{ if .NodeConfig.SELinux }}\n# selinux\n{{ end }}\n");
            }
            if other_runtime {
                template.push_str(&format!(
                    "\n[plugins.\"{plugin}\".containerd.runtimes.crun]\n  \
                     runtime_type = \"io.containerd.runc.v2\"\n"
                ));
            }
            let installed = add_template_handler(&template, version).unwrap().after.unwrap();
            prop_assert!(check(&render(&installed, version)).is_ok());
            prop_assert!(!add_template_handler(&installed, version).unwrap().changed());
            let removed = remove_template_handler(&installed, version).unwrap();
            prop_assert_eq!(removed.after, Some(template.clone()));
            prop_assert!(!remove_template_handler(&template, version).unwrap().changed());
        }
    }
}
