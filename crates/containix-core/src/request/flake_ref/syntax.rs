//! Small facts of flake reference syntax that both the parser and the printer need.

const ARCHIVE_EXTENSIONS: [&str; 7] = [
    ".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar.zst", ".zip",
];

/// Whether `text` is a full Git commit hash (40 hex digits, either case).
pub(super) fn is_rev(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a URL (without query) ends in an extension Nix unpacks as an archive.
pub(super) fn has_archive_extension(url: &str) -> bool {
    ARCHIVE_EXTENSIONS.iter().any(|ext| url.ends_with(ext))
}

/// A forge owner or repository name, or an SSH user name.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// `host[:port]`, where host is a DNS name or a bracketed IPv6 address.
pub(crate) fn is_valid_host(text: &str) -> bool {
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return false;
        };
        if addr.is_empty()
            || !addr
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b))
        {
            return false;
        }
        match after {
            "" => ("v6", None),
            _ => match after.strip_prefix(':') {
                Some(port) => ("v6", Some(port)),
                None => return false,
            },
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    let port_ok = port.is_none_or(|port| {
        is_canonical_u64(port) && port.parse::<u16>().is_ok_and(|port| port > 0)
    });
    host_ok && port_ok
}

/// A decimal `u64` without sign or leading zeros.
pub(crate) fn is_canonical_u64(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
        && text.parse::<u64>().is_ok()
}
