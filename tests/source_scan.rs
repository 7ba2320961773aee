//! Reading Rust source as tokens, for tests that check the workspace's own code (import
//! cycles): comments and doc comments dropped, string and char literals kept as one token each.

/// The tokens of `text` that are code: identifiers and keywords, `::`, literals as one token
/// each (a string keeps its quotes), and every other punctuation character on its own.
/// Comments, doc comments and lifetimes are skipped.
pub fn code_tokens(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some(end) = raw_string_end(&chars, i) {
            tokens.push(chars[i..end].iter().collect());
            i = end;
        } else if c == '"' || (c == 'b' && next == Some('"')) {
            let start = i;
            i += if c == 'b' { 2 } else { 1 };
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            tokens.push(chars[start..i.min(chars.len())].iter().collect());
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): a lifetime has no
            // closing quote right after its name.
            let close = if next == Some('\\') {
                (i + 2..chars.len()).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(end) => {
                    tokens.push(chars[i..=end].iter().collect());
                    i = end + 1;
                }
                None => {
                    i += 1;
                    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                }
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c == ':' && next == Some(':') {
            tokens.push("::".to_owned());
            i += 2;
        } else {
            tokens.push(c.to_string());
            i += 1;
        }
    }
    tokens
}

/// The end of a raw string (`r"..."`, `r#"..."#`, `br#"..."#`) starting at `i`, if one does.
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    j += 1;
    let hashes = chars[j..].iter().take_while(|&&c| c == '#').count();
    j += hashes;
    if chars.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    loop {
        if j >= chars.len() {
            return Some(chars.len());
        }
        if chars[j] == '"'
            && chars[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == '#')
                .count()
                == hashes
        {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::code_tokens;

    #[test]
    fn comments_and_strings_hide_paths() {
        let text = r###"
            // use crate::a;
            /* crate::b /* nested */ */
            /// [`crate::c`]
            let s = "crate::d";
            let r = r#"crate::e"#;
            let c = '"';
            fn f<'a>(x: &'a str) {}
            use crate::f::{g, h};
        "###;
        let tokens = code_tokens(text);
        let joined = tokens.join(" ");
        assert!(!joined.contains("crate :: a"), "{joined}");
        assert!(!joined.contains("crate :: b"), "{joined}");
        assert!(!joined.contains("crate :: c"), "{joined}");
        assert!(joined.contains("\"crate::d\""), "{joined}");
        assert!(joined.contains("'\"'"), "{joined}");
        assert!(
            joined.ends_with("use crate :: f :: { g , h } ;"),
            "{joined}"
        );
    }
}
