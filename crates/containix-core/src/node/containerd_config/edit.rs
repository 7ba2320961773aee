//! Adding and removing the `containix` runtime handler in containerd's config text.
//!
//! Edits go through a format-preserving TOML document, so every other table, key, comment and
//! indentation stays as the operator wrote it. Each edit is then checked by re-reading both texts:
//! apart from the handler table they must mean exactly the same, or nothing is returned.

use thiserror::Error;
use toml_edit::{Array, DocumentMut, Item, Table, Value};

use super::check::check;
use super::handler::{
    HANDLER, POD_ANNOTATIONS, RUNTIME_TYPE, cri_runtime_plugin, handler_table_name,
};

/// First line of a config file [`add_handler`] wrote from nothing. Removing the handler from such
/// a file leaves nothing of the operator's, so [`remove_handler`] says the file can go.
pub const CREATED_MARKER: &str = "# Written by `containix node install`: containerd's defaults plus the containix runtime handler.";

/// The comment above a handler table [`add_handler`] wrote.
pub const HANDLER_COMMENT: &str =
    "# The containix runtime handler, added by `containix node install` (`uninstall` removes it).";

/// The result of an edit: the new text and what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEdit {
    /// The config version the edit was made for.
    pub version: i64,
    /// The handler table, as its header spells it.
    pub table: String,
    /// The new text; `None` when the file held nothing but what the installer wrote and can be
    /// removed. Equal to the input when nothing changed.
    pub after: Option<String>,
    /// One line per change, for people; empty when the config already was as asked.
    pub changes: Vec<String>,
}

impl ConfigEdit {
    /// Whether the file must be written (or removed).
    pub fn changed(&self) -> bool {
        !self.changes.is_empty()
    }
}

/// Why a config could not be edited. Nothing is written in any of these cases.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EditError {
    /// Not TOML.
    #[error("containerd config is not valid TOML: {0}")]
    Syntax(String),
    /// `version` is not an integer.
    #[error("containerd config: `version` must be an integer (1, 2 or 3), found {0}")]
    VersionNotInteger(&'static str),
    /// A `version` containerd does not have.
    #[error("containerd config: version {0} is not one of 1, 2, 3")]
    UnsupportedVersion(i64),
    /// A key on the way to the handler holds something other than a table.
    #[error("containerd config: `{key}` must be a table, found {found}")]
    NotATable {
        /// The dotted key.
        key: String,
        /// What it holds.
        found: &'static str,
    },
    /// A handler key has a type containerd would reject.
    #[error("containerd config: [{table}] `{key}` must be {expected}, found {found}")]
    WrongType {
        /// The handler table.
        table: String,
        /// The key.
        key: &'static str,
        /// What containerd expects.
        expected: &'static str,
        /// What the file holds.
        found: &'static str,
    },
    /// A Go template (k3s, RKE2) has an action where this editor cannot keep it: actions must
    /// fill whole lines (`{{ template "base" . }}`) or whole values (`key = {{ .X }}`).
    #[error(
        "containerd config template, line {line}: `{text}`: containix edits templates whose \
         actions fill whole lines or whole values; nothing was written, add the handler by hand \
         (docs/install.md, k3s and RKE2)"
    )]
    TemplateAction {
        /// The 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// The edited text would mean more than the handler change (a layout this editor does not
    /// handle, such as the handler spelled with dotted keys).
    #[error(
        "containerd config: editing [{0}] would change other settings too; nothing was written, \
         add the handler by hand (see `containix doctor`)"
    )]
    Unsafe(String),
}

/// Adds the `containix` handler to `before` (the config file's text, empty when there is no
/// file), or completes an existing one (`runtime_type`, the `containix.dev/*` pod annotations).
///
/// A new handler copies the `options` of the config's default runtime (usually runc), so
/// containix pods get the same runc binary, root and cgroup driver (`SystemdCgroup`) as every
/// other pod on the node. `new_file_version` is the config version written when `before` is
/// empty (see [`super::handler::version_for_containerd_major`]).
pub fn add_handler(before: &str, new_file_version: i64) -> Result<ConfigEdit, EditError> {
    let created = before.trim().is_empty();
    let source = if created {
        format!("{CREATED_MARKER}\nversion = {new_file_version}\n")
    } else {
        before.to_owned()
    };
    let mut edit = add_handler_to(&source, None)?;
    if !edit.changed() {
        return Ok(unchanged(before, edit.version, edit.table));
    }
    if created {
        edit.changes.insert(0, "create the file".to_owned());
    }
    Ok(edit)
}

/// Adds or completes the handler in `source`. A new handler copies the default runtime's
/// `options`, or takes `fallback_options` when the text has no default runtime table (a
/// template whose runc table comes from the base it includes). `after` is `source` itself when
/// nothing changed.
pub(super) fn add_handler_to(
    source: &str,
    fallback_options: Option<&Table>,
) -> Result<ConfigEdit, EditError> {
    let mut doc = parse(source)?;
    let version = version_of(&doc)?;
    let plugin = cri_runtime_plugin(version).ok_or(EditError::UnsupportedVersion(version))?;
    let table = handler_table_name(plugin);
    let containerd = child_table(doc.as_table_mut(), &["plugins", plugin, "containerd"])?;
    let default_runtime = default_runtime_table(containerd).cloned().or_else(|| {
        fallback_options.map(|options| {
            let mut model = Table::new();
            model.insert("options", Item::Table(options.clone()));
            model
        })
    });
    let runtimes = child_table(containerd, &["runtimes"])?;

    let mut changes = Vec::new();
    match runtimes.get_mut(HANDLER) {
        None => {
            runtimes.insert(HANDLER, Item::Table(new_handler(default_runtime.as_ref())));
            changes.push(format!(
                "add [{table}] with runtime_type = \"{RUNTIME_TYPE}\" and pod_annotations = \
                 [\"{POD_ANNOTATIONS}\"]"
            ));
        }
        Some(Item::Table(handler)) => complete_handler(handler, &table, &mut changes)?,
        Some(other) => {
            return Err(EditError::NotATable {
                key: table,
                found: other.type_name(),
            });
        }
    }
    if changes.is_empty() {
        return Ok(unchanged(source, version, table));
    }
    let after = doc.to_string();
    check(&after).map_err(|_| EditError::Unsafe(table.clone()))?;
    if !same_apart_from_handler(source, &after, plugin) {
        return Err(EditError::Unsafe(table));
    }
    Ok(ConfigEdit {
        version,
        table,
        after: Some(after),
        changes,
    })
}

/// Whether the config in `doc` has a `containix` handler table (complete or not).
pub(super) fn has_handler(doc: &DocumentMut) -> Result<bool, EditError> {
    let version = version_of(doc)?;
    let plugin = cri_runtime_plugin(version).ok_or(EditError::UnsupportedVersion(version))?;
    Ok(["plugins", plugin, "containerd", "runtimes", HANDLER]
        .iter()
        .try_fold(doc.as_table(), |table, key| table.get(key)?.as_table())
        .is_some())
}

/// The default runtime's table in `doc`, if the text holds it.
pub(super) fn default_runtime(doc: &DocumentMut) -> Result<Option<Table>, EditError> {
    let version = version_of(doc)?;
    let plugin = cri_runtime_plugin(version).ok_or(EditError::UnsupportedVersion(version))?;
    Ok(["plugins", plugin, "containerd"]
        .iter()
        .try_fold(doc.as_table(), |table, key| table.get(key)?.as_table())
        .and_then(default_runtime_table)
        .cloned())
}

/// The handler table alone, as TOML text to append to `doc`'s config: laid out like `model`
/// (the default runtime), with its options.
pub(super) fn handler_block(doc: &DocumentMut, model: &Table) -> Result<String, EditError> {
    let version = version_of(doc)?;
    let plugin = cri_runtime_plugin(version).ok_or(EditError::UnsupportedVersion(version))?;
    let mut block = DocumentMut::new();
    let runtimes = child_table(
        block.as_table_mut(),
        &["plugins", plugin, "containerd", "runtimes"],
    )?;
    runtimes.insert(HANDLER, Item::Table(new_handler(Some(model))));
    Ok(block.to_string())
}

/// The edit from `source` to `after`, which must be `source` plus a complete handler and mean
/// nothing else.
pub(super) fn checked_addition(source: &str, after: String) -> Result<ConfigEdit, EditError> {
    let version = version_of(&parse(source)?)?;
    let plugin = cri_runtime_plugin(version).ok_or(EditError::UnsupportedVersion(version))?;
    let table = handler_table_name(plugin);
    let fit = check(&after).is_ok_and(|config| config.version == version);
    if !fit || !same_apart_from_handler(source, &after, plugin) {
        return Err(EditError::Unsafe(table));
    }
    Ok(ConfigEdit {
        version,
        table: table.clone(),
        after: Some(after),
        changes: vec![format!(
            "add [{table}] with runtime_type = \"{RUNTIME_TYPE}\" and pod_annotations = \
             [\"{POD_ANNOTATIONS}\"]"
        )],
    })
}

/// Removes the `containix` handler table from `before`, keeping everything else.
pub fn remove_handler(before: &str) -> Result<ConfigEdit, EditError> {
    let mut doc = parse(before)?;
    let version = version_of(&doc)?;
    let plugin = cri_runtime_plugin(version).ok_or(EditError::UnsupportedVersion(version))?;
    let table = handler_table_name(plugin);
    let runtimes = ["plugins", plugin, "containerd", "runtimes"]
        .iter()
        .try_fold(doc.as_table_mut(), |table, key| {
            table.get_mut(key).and_then(Item::as_table_mut)
        });
    let removed = runtimes
        .and_then(|runtimes| runtimes.remove(HANDLER))
        .is_some();
    if !removed {
        return Ok(unchanged(before, version, table));
    }
    let after = doc.to_string();
    if !same_apart_from_handler(before, &after, plugin) {
        return Err(EditError::Unsafe(table));
    }
    let only_ours = after.starts_with(CREATED_MARKER)
        && parse_plain(&after).is_some_and(|root| root.keys().all(|key| key == "version"));
    let mut changes = vec![format!("remove [{table}]")];
    if only_ours {
        changes.push("remove the file, which held nothing else".to_owned());
    }
    Ok(ConfigEdit {
        version,
        table,
        after: (!only_ours).then_some(after),
        changes,
    })
}

pub(super) fn unchanged(before: &str, version: i64, table: String) -> ConfigEdit {
    ConfigEdit {
        version,
        table,
        after: Some(before.to_owned()),
        changes: Vec::new(),
    }
}

pub(super) fn parse(text: &str) -> Result<DocumentMut, EditError> {
    text.parse::<DocumentMut>()
        .map_err(|err| EditError::Syntax(err.to_string().trim().to_owned()))
}

/// The config `version`; 1 when absent, as containerd reads it.
fn version_of(doc: &DocumentMut) -> Result<i64, EditError> {
    match doc.get("version") {
        None => Ok(1),
        Some(item) => item
            .as_integer()
            .ok_or(EditError::VersionNotInteger(item.type_name())),
    }
}

/// The table at `keys` below `table`, creating missing ones as implicit tables (which print no
/// header of their own).
fn child_table<'a>(mut table: &'a mut Table, keys: &[&str]) -> Result<&'a mut Table, EditError> {
    for key in keys {
        let item = table.entry(key).or_insert_with(|| {
            let mut child = Table::new();
            child.set_implicit(true);
            Item::Table(child)
        });
        let found = item.type_name();
        table = item.as_table_mut().ok_or_else(|| EditError::NotATable {
            key: (*key).to_owned(),
            found,
        })?;
    }
    Ok(table)
}

/// The runtime table named by `default_runtime_name` (containerd's default: `runc`).
fn default_runtime_table(containerd: &Table) -> Option<&Table> {
    let name = containerd
        .get("default_runtime_name")
        .and_then(Item::as_str)
        .unwrap_or("runc");
    containerd
        .get("runtimes")?
        .as_table()?
        .get(name)?
        .as_table()
}

/// A handler table laid out like the default runtime's (same indentation), with its options.
fn new_handler(model: Option<&Table>) -> Table {
    let mut handler = Table::new();
    handler.insert("runtime_type", Item::Value(Value::from(RUNTIME_TYPE)));
    let mut annotations = Array::new();
    annotations.push(POD_ANNOTATIONS);
    handler.insert("pod_annotations", Item::Value(Value::Array(annotations)));
    let options = model
        .and_then(|model| model.get("options"))
        .and_then(Item::as_table);
    if let Some(options) = options {
        let mut copy = Table::new();
        for (key, item) in options.iter() {
            if let Some(value) = item.as_value() {
                let mut value = value.clone();
                value.decor_mut().clear();
                copy.insert(key, Item::Value(value));
            }
        }
        indent_like(&mut copy, options);
        handler.insert("options", Item::Table(copy));
    }
    if let Some(model) = model {
        indent_like(&mut handler, model);
    }
    let indent = handler
        .decor()
        .prefix()
        .and_then(|raw| raw.as_str())
        .map(|prefix| prefix.trim_start_matches('\n').to_owned())
        .unwrap_or_default();
    handler
        .decor_mut()
        .set_prefix(format!("\n{indent}{HANDLER_COMMENT}\n{indent}"));
    handler
}

/// Gives `table`'s header and keys the leading whitespace of `model`'s header and first key.
fn indent_like(table: &mut Table, model: &Table) {
    if let Some(prefix) = model.decor().prefix().and_then(|raw| raw.as_str()) {
        let whitespace: String = prefix.chars().filter(|c| c.is_whitespace()).collect();
        table.decor_mut().set_prefix(whitespace);
    }
    let key_indent = model
        .iter()
        .next()
        .and_then(|(key, _)| model.key(key))
        .and_then(|key| key.leaf_decor().prefix())
        .and_then(|raw| raw.as_str())
        .map(str::to_owned);
    if let Some(indent) = key_indent {
        let keys: Vec<String> = table
            .iter()
            .filter(|(_, item)| item.is_value())
            .map(|(key, _)| key.to_owned())
            .collect();
        for key in keys {
            if let Some(mut key) = table.key_mut(&key) {
                key.leaf_decor_mut().set_prefix(indent.clone());
            }
        }
    }
}

/// Sets `runtime_type` and adds the pod annotation pattern to an existing handler, keeping its
/// other keys (options, extra annotation patterns).
fn complete_handler(
    handler: &mut Table,
    table: &str,
    changes: &mut Vec<String>,
) -> Result<(), EditError> {
    match handler.get_mut("runtime_type") {
        None => {
            handler.insert("runtime_type", Item::Value(Value::from(RUNTIME_TYPE)));
            changes.push(format!(
                "set runtime_type = \"{RUNTIME_TYPE}\" in [{table}]"
            ));
        }
        Some(Item::Value(value)) if value.as_str() == Some(RUNTIME_TYPE) => {}
        Some(Item::Value(value)) if value.is_str() => {
            let decor = value.decor().clone();
            *value = Value::from(RUNTIME_TYPE);
            *value.decor_mut() = decor;
            changes.push(format!(
                "set runtime_type = \"{RUNTIME_TYPE}\" in [{table}]"
            ));
        }
        Some(other) => {
            return Err(EditError::WrongType {
                table: table.to_owned(),
                key: "runtime_type",
                expected: "a string",
                found: other.type_name(),
            });
        }
    }
    match handler.get_mut("pod_annotations") {
        None => {
            let mut annotations = Array::new();
            annotations.push(POD_ANNOTATIONS);
            handler.insert("pod_annotations", Item::Value(Value::Array(annotations)));
            changes.push(format!(
                "set pod_annotations = [\"{POD_ANNOTATIONS}\"] in [{table}]"
            ));
        }
        Some(Item::Value(Value::Array(annotations))) => {
            if !annotations
                .iter()
                .any(|pattern| pattern.as_str() == Some(POD_ANNOTATIONS))
            {
                annotations.push(POD_ANNOTATIONS);
                changes.push(format!(
                    "add \"{POD_ANNOTATIONS}\" to pod_annotations in [{table}]"
                ));
            }
        }
        Some(other) => {
            return Err(EditError::WrongType {
                table: table.to_owned(),
                key: "pod_annotations",
                expected: "an array of strings",
                found: other.type_name(),
            });
        }
    }
    Ok(())
}

/// A plain parse for comparing meaning; `None` when the text is not TOML.
fn parse_plain(text: &str) -> Option<toml::Table> {
    text.parse().ok()
}

/// Whether two config texts mean the same once the handler (and any tables left empty on its
/// path) and a `version` only one side has are set aside.
pub(super) fn same_apart_from_handler(a: &str, b: &str, plugin: &str) -> bool {
    let (Some(mut a), Some(mut b)) = (parse_plain(a), parse_plain(b)) else {
        return false;
    };
    for root in [&mut a, &mut b] {
        strip_handler(
            root,
            &["plugins", plugin, "containerd", "runtimes", HANDLER],
        );
    }
    if a.contains_key("version") != b.contains_key("version") {
        a.remove("version");
        b.remove("version");
    }
    a == b
}

/// Removes the table at `path`, then every table on the path it left empty.
fn strip_handler(table: &mut toml::Table, path: &[&str]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        table.remove(*first);
        return;
    }
    if let Some(child) = table.get_mut(*first).and_then(toml::Value::as_table_mut) {
        strip_handler(child, rest);
        if child.is_empty() {
            table.remove(*first);
        }
    }
}

#[cfg(test)]
mod tests;
