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
