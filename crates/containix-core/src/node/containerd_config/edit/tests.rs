use proptest::prelude::*;

use super::*;

/// `containerd config default` of containerd 1.6.20 (Debian 12), verbatim.
const STOCK_1_6: &str = include_str!("../testdata/containerd-1.6-default.toml");
/// A containerd 2.x style config (version 3).
const STYLE_2_X: &str = include_str!("../testdata/containerd-2-style.toml");
/// `containerd config default` of containerd 1.7.24 (Debian trixie), verbatim.
const STOCK_1_7: &str = include_str!("../testdata/containerd-1.7.24-default.toml");
/// `containerd config default` of containerd 2.1.9 (Debian sid), verbatim (version 3).
const STOCK_2_1: &str = include_str!("../testdata/containerd-2.1.9-default.toml");

/// The lines `after` has that `before` lacks, checking that `before`'s lines all survive in
/// order (so the edit only inserted lines).
fn inserted_lines(before: &str, after: &str) -> Vec<String> {
    let mut kept = before.lines().peekable();
    let mut inserted = Vec::new();
    for line in after.lines() {
        if kept.peek() == Some(&line) {
            kept.next();
        } else {
            inserted.push(line.to_owned());
        }
    }
    assert_eq!(
        kept.next(),
        None,
        "a line of the original was lost:\n{after}"
    );
    inserted
}

#[test]
fn stock_1_6_config_gets_exactly_the_handler_next_to_runc() {
    let edit = add_handler(STOCK_1_6, 2).unwrap();
    assert_eq!(edit.version, 2);
    assert!(edit.changed());
    let after = edit.after.as_deref().unwrap();
    let inserted = inserted_lines(STOCK_1_6, after);
    assert_eq!(inserted[0].trim(), HANDLER_COMMENT, "{inserted:#?}");
    assert_eq!(
        inserted[1].trim(),
        "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.containix]",
        "{inserted:#?}"
    );
    assert!(
        inserted
            .iter()
            .any(|l| l.trim() == "runtime_type = \"io.containerd.containix.v1\"")
    );
    assert!(
        inserted
            .iter()
            .any(|l| l.trim() == "pod_annotations = [\"containix.dev/*\"]")
    );
    assert!(inserted.iter().any(|l| l.trim() == "SystemdCgroup = false"));
    // Laid out like its sibling: indented as the runc table is.
    assert!(
        inserted[1].starts_with("        [plugins"),
        "{:?}",
        inserted[1]
    );
    // Placed right after the runc handler's options, before the next CRI table.
    let handler_at = after.find("runtimes.containix]").unwrap();
    let runc_options_at = after.find("runtimes.runc.options]").unwrap();
    let next_table_at = after
        .find("containerd.untrusted_workload_runtime]")
        .unwrap();
    assert!(runc_options_at < handler_at && handler_at < next_table_at);
    check(after).unwrap();
}

#[test]
fn installing_twice_changes_nothing_and_removal_restores_the_bytes() {
    for (text, version) in [
        (STOCK_1_6, 2),
        (STYLE_2_X, 3),
        (STOCK_1_7, 2),
        (STOCK_2_1, 3),
    ] {
        let first = add_handler(text, 2).unwrap();
        assert_eq!(first.version, version);
        let installed = first.after.unwrap();
        let second = add_handler(&installed, 2).unwrap();
        assert!(!second.changed(), "{:?}", second.changes);
        assert_eq!(second.after.as_deref(), Some(installed.as_str()));
        let removed = remove_handler(&installed).unwrap();
        assert!(removed.changed());
        assert_eq!(removed.after.as_deref(), Some(text));
        let again = remove_handler(text).unwrap();
        assert!(!again.changed());
    }
}

#[test]
fn the_real_2_1_default_gets_the_handler_in_the_runtime_plugin_with_runc_s_options() {
    let after = add_handler(STOCK_2_1, 2).unwrap().after.unwrap();
    assert_eq!(
        inserted_lines(STOCK_2_1, &after).len(),
        after.lines().count() - STOCK_2_1.lines().count()
    );
    let root: toml::Table = after.parse().unwrap();
    let runtimes = &root["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"];
    let handler = &runtimes["containix"];
    assert_eq!(handler["runtime_type"].as_str(), Some(RUNTIME_TYPE));
    assert_eq!(
        handler["options"].as_table().map(toml::Table::len),
        runtimes["runc"]["options"].as_table().map(toml::Table::len)
    );
    assert_eq!(check(&after).unwrap().version, 3);
}

#[test]
fn version_3_handler_copies_the_systemd_cgroup_driver() {
    let after = add_handler(STYLE_2_X, 2).unwrap().after.unwrap();
    let root: toml::Table = after.parse().unwrap();
    let handler =
        &root["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["containix"];
    assert_eq!(handler["runtime_type"].as_str(), Some(RUNTIME_TYPE));
    assert_eq!(handler["options"]["SystemdCgroup"].as_bool(), Some(true));
    assert!(
        after.contains("[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.containix]")
    );
}

#[test]
fn comments_and_unrelated_settings_survive() {
    let text = "# managed by hand\nversion = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  \
                sandbox_image = \"pause:3.9\" # pinned\n\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.kata]\n    \
                runtime_type = \"io.containerd.kata.v2\"\n";
    let after = add_handler(text, 2).unwrap().after.unwrap();
    assert!(after.starts_with(text), "{after}");
    // No default runtime table to copy options from: the handler has none.
    assert!(!after.contains("options"), "{after}");
    assert_eq!(remove_handler(&after).unwrap().after.as_deref(), Some(text));
}

#[test]
fn a_missing_file_becomes_a_marked_minimal_config_and_goes_again() {
    for (version, table) in [
        (
            2,
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.containix]",
        ),
        (
            3,
            "[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.containix]",
        ),
    ] {
        let edit = add_handler("", version).unwrap();
        assert_eq!(edit.changes[0], "create the file");
        let after = edit.after.unwrap();
        assert!(after.starts_with(CREATED_MARKER), "{after}");
        assert!(after.contains(&format!("version = {version}")));
        assert!(after.contains(table), "{after}");
        let config = check(&after).unwrap();
        assert_eq!(config.version, version);
        let removed = remove_handler(&after).unwrap();
        assert_eq!(removed.after, None);
        assert_eq!(removed.changes.len(), 2);
    }
}

#[test]
fn a_file_the_operator_edited_after_install_is_kept_on_removal() {
    let mut after = add_handler("", 2).unwrap().after.unwrap();
    after.push_str("\n[grpc]\n  address = \"/run/other.sock\"\n");
    let removed = remove_handler(&after).unwrap();
    let kept = removed.after.unwrap();
    assert!(kept.contains("/run/other.sock"));
    assert!(!kept.contains("containix]"));
}

#[test]
fn an_existing_handler_is_completed_not_replaced() {
    let text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.containix]\n  \
                runtime_type = \"io.containerd.runc.v2\" # wrong\n  pod_annotations = [\"example.com/*\"]\n  \
                privileged_without_host_devices = true\n";
    let edit = add_handler(text, 2).unwrap();
    assert_eq!(edit.changes.len(), 2, "{:?}", edit.changes);
    let after = edit.after.unwrap();
    assert!(
        after.contains("runtime_type = \"io.containerd.containix.v1\" # wrong"),
        "{after}"
    );
    assert!(after.contains("\"example.com/*\""));
    assert!(after.contains("containix.dev/*"));
    assert!(after.contains("privileged_without_host_devices = true"));
    assert!(!add_handler(&after, 2).unwrap().changed());

    let bare =
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.containix]\n";
    let edit = add_handler(bare, 2).unwrap();
    assert_eq!(edit.changes.len(), 2);
    check(edit.after.as_deref().unwrap()).unwrap();
}

#[test]
fn version_1_configs_use_the_cri_plugin() {
    let text = "[plugins.cri]\n  sandbox_image = \"pause:3.2\"\n";
    let edit = add_handler(text, 3).unwrap();
    assert_eq!(edit.version, 1);
    assert_eq!(edit.table, "plugins.\"cri\".containerd.runtimes.containix");
    assert_eq!(check(edit.after.as_deref().unwrap()).unwrap().version, 1);
}

#[test]
fn configs_it_cannot_edit_safely_are_refused_with_the_reason() {
    assert!(matches!(
        add_handler("version = \n", 2),
        Err(EditError::Syntax(_))
    ));
    assert_eq!(
        add_handler("version = \"2\"\n", 2),
        Err(EditError::VersionNotInteger("string"))
    );
    assert_eq!(
        add_handler("version = 4\n", 2),
        Err(EditError::UnsupportedVersion(4))
    );
    assert_eq!(
        remove_handler("version = 9\n"),
        Err(EditError::UnsupportedVersion(9))
    );
    let err = add_handler("version = 2\nplugins = 1\n", 2).unwrap_err();
    assert_eq!(
        err,
        EditError::NotATable {
            key: "plugins".into(),
            found: "integer"
        }
    );
    assert_eq!(
        err.to_string(),
        "containerd config: `plugins` must be a table, found integer"
    );
    let err = add_handler(
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.containix]\n\
         pod_annotations = \"containix.dev/*\"\n",
        2,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("`pod_annotations` must be an array of strings, found string"),
        "{err}"
    );
    let err = add_handler(
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes]\n\
         containix = \"x\"\n",
        2,
    )
    .unwrap_err();
    assert!(matches!(err, EditError::NotATable { .. }), "{err:?}");
}

/// One optional piece of a generated config.
fn config_strategy() -> impl Strategy<Value = (i64, String)> {
    (
        prop_oneof![Just(1i64), Just(2), Just(3)],
        any::<bool>(),
        proptest::option::of(any::<bool>()),
        any::<bool>(),
        proptest::option::of((any::<bool>(), any::<bool>())),
        any::<bool>(),
    )
        .prop_map(|(version, comment, runc_systemd, kata, handler, grpc)| {
            let plugin = cri_runtime_plugin(version).unwrap();
            let mut text = String::new();
            if comment {
                text.push_str("# node config\n");
            }
            if version != 1 {
                text.push_str(&format!("version = {version}\n"));
            }
            if grpc {
                text.push_str("\n[grpc]\n  address = \"/run/containerd/containerd.sock\"\n");
            }
            text.push_str(&format!(
                "\n[plugins.\"{plugin}\"]\n  enable_selinux = false\n"
            ));
            if let Some(systemd) = runc_systemd {
                text.push_str(&format!(
                    "\n  [plugins.\"{plugin}\".containerd.runtimes.runc]\n    runtime_type = \
                     \"io.containerd.runc.v2\"\n\n    [plugins.\"{plugin}\".containerd.runtimes.\
                     runc.options]\n      SystemdCgroup = {systemd}\n"
                ));
            }
            if kata {
                text.push_str(&format!(
                    "\n  [plugins.\"{plugin}\".containerd.runtimes.kata] # sandboxed\n    \
                     runtime_type = \"io.containerd.kata.v2\"\n"
                ));
            }
            if let Some((right_type, with_pattern)) = handler {
                let runtime_type = if right_type {
                    RUNTIME_TYPE
                } else {
                    "io.containerd.runc.v2"
                };
                let pattern = if with_pattern {
                    POD_ANNOTATIONS
                } else {
                    "example.com/*"
                };
                text.push_str(&format!(
                    "\n  [plugins.\"{plugin}\".containerd.runtimes.containix]\n    runtime_type = \
                     \"{runtime_type}\"\n    pod_annotations = [\"{pattern}\"]\n"
                ));
            }
            if comment {
                text.push_str("# end\n");
            }
            (version, text)
        })
}

proptest! {
    #[test]
    fn install_is_idempotent_checked_and_reversible((version, text) in config_strategy()) {
        let edit = add_handler(&text, 2).unwrap();
        prop_assert_eq!(edit.version, version);
        let installed = edit.after.clone().unwrap();
        prop_assert!(check(&installed).is_ok());
        prop_assert!(same_apart_from_handler(&text, &installed, cri_runtime_plugin(version).unwrap()));
        let again = add_handler(&installed, 2).unwrap();
        prop_assert!(!again.changed());
        prop_assert_eq!(again.after.as_deref(), Some(installed.as_str()));
        let removed = remove_handler(&installed).unwrap().after.unwrap();
        prop_assert!(check(&removed).is_err());
        if !text.contains("runtimes.containix") {
            // Nothing of the operator's was touched: removal gives back the very bytes.
            prop_assert_eq!(removed, text);
        }
    }
}
