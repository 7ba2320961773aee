//! A Go template of containerd's config (k3s and RKE2 render `config.toml` from
//! `config.toml.tmpl` or `config-v3.toml.tmpl`) made editable as TOML.
//!
//! Each template action is swapped for a placeholder TOML keeps verbatim: an action filling a
//! whole line (`{{ template "base" . }}`, `{{ end }}`) becomes a comment line, an action filling
//! a whole value (`SystemdCgroup = {{ .SystemdCgroup }}`) becomes a string. The edit happens on
//! that text, and [`MaskedTemplate::unmask`] puts the actions back. Actions anywhere else
//! (inside a table header or a string) are refused rather than guessed at. Pure.

use super::edit::EditError;

/// The action that includes the distribution's own config (k3s's `base` template).
pub const BASE_TEMPLATE_ACTION: &str = "{{ template \"base\" . }}";
/// The value k3s and RKE2 give runc's `SystemdCgroup` option: the cgroup driver the kubelet uses.
pub const SYSTEMD_CGROUP_ACTION: &str = "{{ .SystemdCgroup }}";

const PLACEHOLDER: &str = "containix-template-action-";

/// A template with its actions swapped for placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedTemplate {
    /// The template as TOML text.
    pub text: String,
    /// What each placeholder stands for, by number.
    replaced: Vec<Replaced>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Replaced {
    /// A whole line (with its indentation).
    Line(String),
    /// A value: the action alone.
    Value(String),
}

impl MaskedTemplate {
    /// Masks `template`'s actions.
    pub fn mask(template: &str) -> Result<MaskedTemplate, EditError> {
        let mut masked = MaskedTemplate {
            text: String::with_capacity(template.len()),
            replaced: Vec::new(),
        };
        for (index, line) in template.split_inclusive('\n').enumerate() {
            let refuse = || EditError::TemplateAction {
                line: index + 1,
                text: line.trim_end().to_owned(),
            };
            if line.contains(PLACEHOLDER) {
                return Err(refuse());
            }
            let (content, newline) = match line.strip_suffix('\n') {
                Some(content) => (content, "\n"),
                None => (line, ""),
            };
            if !content.contains("{{") && !content.contains("}}") {
                masked.text.push_str(line);
                continue;
            }
            let actions = actions_in(content).ok_or_else(refuse)?;
            let outside: String = outside_actions(content, &actions);
            if outside.trim().is_empty() {
                let indent = &content[..content.len() - content.trim_start().len()];
                let number = masked.push(Replaced::Line(content.to_owned()));
                masked
                    .text
                    .push_str(&format!("{indent}#{}{newline}", placeholder(number)));
                continue;
            }
            // `key = {{ action }}` with nothing after the action but a comment.
            let [(start, end)] = actions[..] else {
                return Err(refuse());
            };
            let before = &content[..start];
            let after = content[end..].trim_start();
            let is_value = before.trim_end().ends_with('=')
                && !before.contains('[')
                && (after.is_empty() || after.starts_with('#'));
            if !is_value {
                return Err(refuse());
            }
            let number = masked.push(Replaced::Value(content[start..end].to_owned()));
            masked.text.push_str(before);
            masked
                .text
                .push_str(&format!("\"{}\"", placeholder(number)));
            masked.text.push_str(&content[end..]);
            masked.text.push_str(newline);
        }
        Ok(masked)
    }

    /// The quoted placeholder for `action` as a value, to put into the text being edited.
    pub fn value_placeholder(&mut self, action: &str) -> String {
        let number = self.push(Replaced::Value(action.to_owned()));
        placeholder(number)
    }

    /// `edited` (the masked text after an edit) with every action back in place. Each line
    /// placeholder must appear exactly once; a value placeholder any number of times (an edit
    /// may copy a value).
    pub fn unmask(&self, edited: &str) -> Result<String, EditError> {
        let mut text = edited.to_owned();
        for (number, replaced) in self.replaced.iter().enumerate() {
            let name = placeholder(number);
            match replaced {
                Replaced::Line(line) => {
                    let found: Vec<_> = text.match_indices(&format!("#{name}")).collect();
                    if found.len() != 1 {
                        return Err(EditError::Unsafe(format!("template line {name}")));
                    }
                    let (at, _) = found[0];
                    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                    if !text[line_start..at].trim().is_empty() {
                        return Err(EditError::Unsafe(format!("template line {name}")));
                    }
                    let line_end = at + name.len() + 1;
                    text.replace_range(line_start..line_end, line);
                }
                Replaced::Value(action) => {
                    text = text.replace(&format!("\"{name}\""), action);
                }
            }
        }
        if text.contains(PLACEHOLDER) {
            return Err(EditError::Unsafe("template placeholders".to_owned()));
        }
        Ok(text)
    }

    fn push(&mut self, replaced: Replaced) -> usize {
        self.replaced.push(replaced);
        self.replaced.len() - 1
    }
}

/// A placeholder's name: fixed width, so no name is the start of another.
fn placeholder(number: usize) -> String {
    format!("{PLACEHOLDER}{number:04}")
}

/// The byte ranges of the actions in `line`; `None` if one is not closed on the line (or a
/// `}}` has no opening).
fn actions_in(line: &str) -> Option<Vec<(usize, usize)>> {
    let mut actions = Vec::new();
    let mut rest = 0;
    while let Some(open) = line[rest..].find("{{") {
        let start = rest + open;
        if line[rest..start].contains("}}") {
            return None;
        }
        let close = line[start + 2..].find("}}")?;
        let end = start + 2 + close + 2;
        actions.push((start, end));
        rest = end;
    }
    if line[rest..].contains("}}") {
        return None;
    }
    Some(actions)
}

fn outside_actions(line: &str, actions: &[(usize, usize)]) -> String {
    let mut outside = String::new();
    let mut at = 0;
    for (start, end) in actions {
        outside.push_str(&line[at..*start]);
        at = *end;
    }
    outside.push_str(&line[at..]);
    outside
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const TEMPLATE: &str = "{{ template \"base\" . }}\n\n\
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc]\n  \
        runtime_type = \"io.containerd.runsc.v1\"\n\
        {{- if .NodeConfig.SELinux }}\n  \
        enable_selinux = true\n\
        {{ end }}\n\
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc.options]\n  \
        SystemdCgroup = {{ .SystemdCgroup }} # as the kubelet\n";

    #[test]
    fn whole_lines_become_comments_and_values_strings() {
        let masked = MaskedTemplate::mask(TEMPLATE).unwrap();
        assert!(!masked.text.contains("{{"), "{}", masked.text);
        let table: toml::Table = masked.text.parse().unwrap();
        assert!(table.contains_key("plugins"));
        assert!(masked.text.starts_with("#containix-template-action-0000\n"));
        assert!(
            masked
                .text
                .contains("SystemdCgroup = \"containix-template-action-0003\" # as the kubelet")
        );
        assert_eq!(masked.unmask(&masked.text).unwrap(), TEMPLATE);
    }

    #[test]
    fn actions_elsewhere_are_refused_with_their_line() {
        for (template, line) in [
            ("a = 1\n[plugins.\"{{ .Name }}\"]\n", 2),
            ("x = \"{{ .Path }}/bin\"\n", 1),
            ("{{ if .X }}\n  multi-line {{\n}}\n", 2),
            ("a = {{ .A }} {{ .B }}\n", 1),
            ("b = 1 }}\n", 1),
            ("# containix-template-action-0001\n", 1),
        ] {
            match MaskedTemplate::mask(template) {
                Err(EditError::TemplateAction { line: found, .. }) => {
                    assert_eq!(found, line, "{template:?}")
                }
                other => panic!("{template:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_lost_or_repeated_line_placeholder_is_an_error() {
        let masked = MaskedTemplate::mask(TEMPLATE).unwrap();
        let lost = masked.text.replace("#containix-template-action-0000\n", "");
        assert!(masked.unmask(&lost).is_err());
        let twice = format!("{}{}", masked.text, "#containix-template-action-0000\n");
        assert!(masked.unmask(&twice).is_err());
    }

    #[test]
    fn an_added_value_placeholder_becomes_its_action() {
        let mut masked = MaskedTemplate::mask("{{ template \"base\" . }}\n").unwrap();
        let name = masked.value_placeholder(SYSTEMD_CGROUP_ACTION);
        let edited = format!("{}[a.options]\nSystemdCgroup = \"{name}\"\n", masked.text);
        assert_eq!(
            masked.unmask(&edited).unwrap(),
            "{{ template \"base\" . }}\n[a.options]\nSystemdCgroup = {{ .SystemdCgroup }}\n"
        );
    }

    proptest! {
        /// Masking and unmasking gives back any text made of plain lines, action lines and
        /// action values.
        #[test]
        fn mask_then_unmask_is_the_identity(
            lines in proptest::collection::vec(
                prop_oneof![
                    "[a-z]{1,8} = [0-9]{1,3}",
                    "\\{\\{ [a-z. \"]{0,12} \\}\\}",
                    "  [a-z]{1,8} = \\{\\{ \\.[A-Z][a-z]{0,8} \\}\\}",
                    "# [a-z ]{0,20}",
                    "",
                ],
                0..12,
            ),
            trailing_newline in any::<bool>(),
        ) {
            let mut text = lines.join("\n");
            if trailing_newline {
                text.push('\n');
            }
            let masked = MaskedTemplate::mask(&text).unwrap();
            prop_assert!(!masked.text.contains("{{"));
            prop_assert_eq!(masked.unmask(&masked.text).unwrap(), text);
        }
    }
}
