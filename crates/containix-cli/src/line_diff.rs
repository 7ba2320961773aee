//! A unified line diff of two small texts (config files), for `--dry-run`.

/// Lines of context shown around each change.
const CONTEXT: usize = 2;
/// Above this many line pairs the diff is not computed (a config is a few hundred lines).
const MAX_CELLS: usize = 16_000_000;

/// The unified diff of `before` and `after` with `---`/`+++` headers naming `path`, or `None`
/// when the texts are too large to compare here.
pub fn unified(path: &str, before: &str, after: &str) -> Option<String> {
    let old: Vec<&str> = before.lines().collect();
    let new: Vec<&str> = after.lines().collect();
    if old.len().saturating_mul(new.len()) > MAX_CELLS {
        return None;
    }
    let ops = edit_script(&old, &new);
    let mut out = format!("--- {path}\n+++ {path} (after)\n");
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Keep(..)))
        .map(|(i, _)| i)
        .collect();
    let mut i = 0;
    while i < changed.len() {
        // Group changes whose context would touch.
        let start = changed[i].saturating_sub(CONTEXT);
        let mut end = changed[i];
        while i + 1 < changed.len() && changed[i + 1] <= end + 2 * CONTEXT + 1 {
            i += 1;
            end = changed[i];
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let (old_start, new_start) = positions(&ops[..start]);
        let (old_len, new_len) = positions(&ops[start..end]);
        out.push_str(&format!(
            "@@ -{},{old_len} +{},{new_len} @@\n",
            old_start + 1,
            new_start + 1
        ));
        for op in &ops[start..end] {
            match op {
                Op::Keep(line) => out.push_str(&format!(" {line}\n")),
                Op::Remove(line) => out.push_str(&format!("-{line}\n")),
                Op::Add(line) => out.push_str(&format!("+{line}\n")),
            }
        }
        i += 1;
    }
    Some(out)
}

#[derive(Debug, PartialEq, Eq)]
enum Op<'a> {
    Keep(&'a str),
    Remove(&'a str),
    Add(&'a str),
}

/// How many old and new lines `ops` spans.
fn positions(ops: &[Op<'_>]) -> (usize, usize) {
    ops.iter().fold((0, 0), |(old, new), op| match op {
        Op::Keep(_) => (old + 1, new + 1),
        Op::Remove(_) => (old + 1, new),
        Op::Add(_) => (old, new + 1),
    })
}

/// A shortest edit script from the longest common subsequence of lines.
fn edit_script<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Op<'a>> {
    let (n, m) = (old.len(), new.len());
    // lcs[i][j]: the LCS length of old[i..] and new[j..].
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[at(i, j)] = if old[i] == new[j] {
                lcs[at(i + 1, j + 1)] + 1
            } else {
                lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::with_capacity(n.max(m));
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            ops.push(Op::Keep(old[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
            ops.push(Op::Remove(old[i]));
            i += 1;
        } else {
            ops.push(Op::Add(new[j]));
            j += 1;
        }
    }
    ops
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
    fn equal_texts_have_no_hunks() {
        assert_eq!(
            unified("f", "a\n", "a\n").unwrap(),
            "--- f\n+++ f (after)\n"
        );
    }
}
