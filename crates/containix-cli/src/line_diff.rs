//! A unified line diff of two small texts (config files), for `--dry-run`.

use similar::TextDiff;

/// Lines of context shown around each change.
const CONTEXT: usize = 2;

/// The unified diff of `before` and `after` with `---`/`+++` headers naming `path` (the new
/// side as `<path> (after)`), or `None` when the texts have the same lines.
pub fn unified(path: &str, before: &str, after: &str) -> Option<String> {
    let diff = TextDiff::from_lines(before, after);
    let text = diff
        .unified_diff()
        .context_radius(CONTEXT)
        .header(path, &format!("{path} (after)"))
        .to_string();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inserted_block_shows_with_context() {
        let before = "a\nb\nc\nd\ne\nf\n";
        let after = "a\nb\nc\nX\nY\nd\ne\nf\n";
        let diff = unified("cfg", before, after).unwrap();
        assert_eq!(
            diff,
            "--- cfg\n+++ cfg (after)\n@@ -2,4 +2,6 @@\n b\n c\n+X\n+Y\n d\n e\n"
        );
    }

    #[test]
    fn changes_far_apart_are_separate_hunks_and_removals_show() {
        let before: String = (0..20).map(|i| format!("{i}\n")).collect();
        let after: String = (0..20)
            .filter(|&i| i != 15)
            .map(|i| {
                if i == 3 {
                    "three\n".to_owned()
                } else {
                    format!("{i}\n")
                }
            })
            .collect();
        let diff = unified("f", &before, &after).unwrap();
        assert_eq!(diff.matches("@@ ").count(), 2, "{diff}");
        assert!(diff.contains("-3\n+three\n"), "{diff}");
        assert!(diff.contains("-15\n"), "{diff}");
    }

    #[test]
    fn a_new_file_and_a_removed_file_are_whole_hunks() {
        assert_eq!(
            unified("f", "", "a\nb\n").unwrap(),
            "--- f\n+++ f (after)\n@@ -0,0 +1,2 @@\n+a\n+b\n"
        );
        assert_eq!(
            unified("f", "a\n", "").unwrap(),
            "--- f\n+++ f (after)\n@@ -1 +0,0 @@\n-a\n"
        );
    }

    #[test]
    fn a_missing_final_newline_is_marked() {
        let diff = unified("f", "a\nb", "a\nc\n").unwrap();
        assert!(
            diff.contains("-b\n\\ No newline at end of file\n+c\n"),
            "{diff}"
        );
    }

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("f", "a\n", "a\n"), None);
    }
}
