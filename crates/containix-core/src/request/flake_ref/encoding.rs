//! Percent-encoding as flake references use it (RFC 3986 escapes, `+` is not a space).

use super::error::FlakeRefErrorKind;

/// Bytes that may appear unescaped in a printed path segment or query value.
fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$'()*+,;:@".contains(&byte)
}

/// Bytes allowed raw in a URL path we keep in encoded form (pchar, `/` and the `%` of escapes).
pub(super) fn is_raw_url_path_byte(byte: u8) -> bool {
    is_plain(byte) || b"/%&=".contains(&byte)
}

/// Decodes `%XX` escapes; the result must be UTF-8 without whitespace or control characters.
pub(super) fn decode(text: &str) -> Result<String, FlakeRefErrorKind> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| FlakeRefErrorKind::BadPercentEncoding(text.to_owned()))?;
            out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .ok()
        .filter(|s| !s.chars().any(|c| c.is_whitespace() || c.is_control()))
        .ok_or_else(|| FlakeRefErrorKind::BadDecodedText(text.to_owned()))
}

/// Validates an already-encoded URL path and normalises its escapes to upper-case hex.
pub(super) fn normalize_encoded(text: &str) -> Result<String, FlakeRefErrorKind> {
    decode(text)?;
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices();
    while let Some((_, c)) = chars.next() {
        out.push(c);
        if c == '%' {
            for _ in 0..2 {
                let (_, h) = chars.next().expect("validated by decode");
                out.push(h.to_ascii_uppercase());
            }
        }
    }
    Ok(out)
}

/// Encodes every byte outside the plain set, plus any byte in `extra_plain` kept as is.
pub(super) fn encode(text: &str, extra_plain: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if is_plain(byte) || extra_plain.contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_and_encode_are_inverse_on_plain_and_escaped_text() {
        assert_eq!(decode("a%2Fb").unwrap(), "a/b");
        assert_eq!(encode("a/b", b""), "a%2Fb");
        assert_eq!(encode("a/b", b"/"), "a/b");
        assert_eq!(decode(&encode("ä?&=#%", b"")).unwrap(), "ä?&=#%");
        assert!(decode("%2").is_err());
        assert!(decode("%zz").is_err());
        assert!(decode("%20").is_err());
        assert!(decode("%ff").is_err());
        assert_eq!(normalize_encoded("a%2fb").unwrap(), "a%2Fb");
    }
}
