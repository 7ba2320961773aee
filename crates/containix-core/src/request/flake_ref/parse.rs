//! The flake reference parser. Pure: text in, [`FlakeRef`] or the precise problem out.

use std::collections::BTreeMap;
use std::str::FromStr;

use super::encoding::{decode, is_raw_url_path_byte, normalize_encoded};
use super::error::FlakeRefError;
use super::error::FlakeRefErrorKind as Kind;
use super::reference::FlakeRef;
use super::source::{FetchTransport, FlakeSource, Forge, GitTransport};
use super::syntax::{
    has_archive_extension, is_canonical_u64, is_rev, is_valid_host, is_valid_name,
};

const FORGE_ATTRS: &[&str] = &["dir", "host", "lastModified", "narHash", "ref", "rev"];
const GIT_ATTRS: &[&str] = &[
    "allRefs",
    "dir",
    "lastModified",
    "narHash",
    "ref",
    "rev",
    "revCount",
    "shallow",
    "submodules",
];
const PATH_ATTRS: &[&str] = &["dir", "lastModified", "narHash", "rev", "revCount"];
const TARBALL_ATTRS: &[&str] = &["dir", "narHash"];
const FILE_ATTRS: &[&str] = &["narHash"];
const INDIRECT_ATTRS: &[&str] = &["dir", "narHash"];

impl FlakeRef {
    /// Parses a flake reference (without `#fragment`; see [`FlakeInstallable`](super::installable::FlakeInstallable) for that).
    pub fn parse(input: &str) -> Result<Self, FlakeRefError> {
        parse(input).map_err(|kind| FlakeRefError::new(input, kind))
    }
}

impl FromStr for FlakeRef {
    type Err = FlakeRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

pub(super) fn parse(input: &str) -> Result<FlakeRef, Kind> {
    if input.is_empty() {
        return Err(Kind::Empty);
    }
    if input.starts_with('-') {
        return Err(Kind::LeadingDash);
    }
    for (position, found) in input.char_indices() {
        if !found.is_ascii_graphic() {
            return Err(Kind::BadCharacter { position, found });
        }
        if found == '#' {
            return Err(Kind::Fragment);
        }
    }
    let (body, query) = match input.split_once('?') {
        Some((body, query)) => (body, parse_query(query)?),
        None => (input, Vec::new()),
    };
    if body.starts_with('/') || body.starts_with('.') {
        return path(body, true, query);
    }
    let Some((scheme, rest)) = body
        .split_once(':')
        .filter(|(scheme, _)| !scheme.contains('/'))
    else {
        return indirect(body, query);
    };
    match scheme {
        "github" => forge(Forge::GitHub, rest, query),
        "gitlab" => forge(Forge::GitLab, rest, query),
        "sourcehut" => forge(Forge::SourceHut, rest, query),
        "git+https" => git(GitTransport::Https, rest, query),
        "git+http" => git(GitTransport::Http, rest, query),
        "git+ssh" => git(GitTransport::Ssh, rest, query),
        "git+file" => git(GitTransport::File, rest, query),
        "path" => path(rest, false, query),
        "tarball+https" => fetched(FetchTransport::Https, rest, query, Some(true)),
        "tarball+http" => fetched(FetchTransport::Http, rest, query, Some(true)),
        "tarball+file" => fetched(FetchTransport::File, rest, query, Some(true)),
        "file+https" => fetched(FetchTransport::Https, rest, query, Some(false)),
        "file+http" => fetched(FetchTransport::Http, rest, query, Some(false)),
        "file+file" => fetched(FetchTransport::File, rest, query, Some(false)),
        "https" => fetched(FetchTransport::Https, rest, query, None),
        "http" => fetched(FetchTransport::Http, rest, query, None),
        "file" => fetched(FetchTransport::File, rest, query, None),
        "flake" => indirect(rest, query),
        other => Err(Kind::UnknownScheme(other.to_owned())),
    }
}

/// Splits `k=v&k=v` into decoded pairs, refusing empty parts, missing values and duplicates.
fn parse_query(query: &str) -> Result<Vec<(String, String)>, Kind> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for part in query.split('&') {
        if part.is_empty() {
            return Err(Kind::EmptyQueryParameter);
        }
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let key = decode(key)?;
        if value.is_empty() {
            return Err(Kind::MissingQueryValue(key));
        }
        if pairs.iter().any(|(seen, _)| *seen == key) {
            return Err(Kind::DuplicateQueryKey(key));
        }
        pairs.push((key, decode(value)?));
    }
    Ok(pairs)
}

impl FlakeRef {
    fn from_source(source: FlakeSource) -> Self {
        FlakeRef {
            source,
            git_ref: None,
            rev: None,
            dir: None,
            host: None,
            nar_hash: None,
            attrs: BTreeMap::new(),
        }
    }

    fn set_ref(&mut self, value: &str) -> Result<(), Kind> {
        if !is_valid_ref(value) {
            return Err(Kind::InvalidRef(value.to_owned()));
        }
        if self.git_ref.replace(value.to_owned()).is_some() {
            return Err(Kind::DuplicateRefOrRev("ref"));
        }
        Ok(())
    }

    fn set_rev(&mut self, value: &str) -> Result<(), Kind> {
        if !is_rev(value) {
            return Err(Kind::InvalidRev(value.to_owned()));
        }
        if self.rev.replace(value.to_ascii_lowercase()).is_some() {
            return Err(Kind::DuplicateRefOrRev("rev"));
        }
        Ok(())
    }

    /// Applies query attributes, accepting only those in `supported`.
    fn apply_query(
        mut self,
        query: Vec<(String, String)>,
        scheme: &'static str,
        supported: &'static [&'static str],
    ) -> Result<Self, Kind> {
        for (key, value) in query {
            if !supported.contains(&key.as_str()) {
                return Err(Kind::UnsupportedAttribute {
                    key,
                    scheme,
                    supported,
                });
            }
            match key.as_str() {
                "ref" => self.set_ref(&value)?,
                "rev" => self.set_rev(&value)?,
                "dir" if is_valid_dir(&value) => self.dir = Some(value),
                "dir" => return Err(Kind::InvalidDir(value)),
                "host" if is_valid_host(&value) => self.host = Some(value),
                "host" => return Err(Kind::InvalidHost(value)),
                "narHash" if is_valid_sri_hash(&value) => self.nar_hash = Some(value),
                "narHash" => return Err(Kind::InvalidNarHash(value)),
                "allRefs" | "shallow" | "submodules" if value != "0" && value != "1" => {
                    return Err(Kind::InvalidAttrValue {
                        key,
                        value,
                        expected: "`0` or `1`",
                    });
                }
                "lastModified" | "revCount" if !is_canonical_u64(&value) => {
                    let expected = "a non-negative integer without leading zeros";
                    return Err(Kind::InvalidAttrValue {
                        key,
                        value,
                        expected,
                    });
                }
                _ => {
                    self.attrs.insert(key, value);
                }
            }
        }
        Ok(self)
    }
}

fn forge(forge: Forge, rest: &str, query: Vec<(String, String)>) -> Result<FlakeRef, Kind> {
    let expected = match forge {
        Forge::GitHub => "github:<owner>/<repo>[/<ref-or-rev>]",
        Forge::GitLab => "gitlab:<owner>[%2F<subgroup>...]/<repo>[/<ref-or-rev>]",
        Forge::SourceHut => "sourcehut:~<owner>/<repo>[/<ref-or-rev>]",
    };
    let segments: Vec<&str> = rest.split('/').collect();
    if !(2..=3).contains(&segments.len()) || segments.iter().any(|s| s.is_empty()) {
        return Err(Kind::Expected(expected));
    }
    let owner = decode(segments[0])?;
    let owner_ok = match forge {
        Forge::GitHub => is_valid_name(&owner),
        Forge::GitLab => owner.split('/').all(is_valid_name),
        Forge::SourceHut => owner.strip_prefix('~').is_some_and(is_valid_name),
    };
    if !owner_ok {
        let expected = match forge {
            Forge::SourceHut => "`~` followed by letters, digits, `.`, `_` or `-`",
            Forge::GitLab => "groups of letters, digits, `.`, `_` or `-`, separated by `%2F`",
            Forge::GitHub => "letters, digits, `.`, `_` or `-`",
        };
        return Err(Kind::InvalidName {
            what: "owner",
            value: owner,
            expected,
        });
    }
    let repo = decode(segments[1])?;
    if !is_valid_name(&repo) {
        let expected = "letters, digits, `.`, `_` or `-`";
        return Err(Kind::InvalidName {
            what: "repo",
            value: repo,
            expected,
        });
    }
    let mut flake = FlakeRef::from_source(FlakeSource::Forge { forge, owner, repo });
    if let Some(segment) = segments.get(2) {
        let ref_or_rev = decode(segment)?;
        if is_rev(&ref_or_rev) {
            flake.set_rev(&ref_or_rev)?;
        } else {
            flake.set_ref(&ref_or_rev)?;
        }
    }
    let flake = flake.apply_query(query, forge.scheme(), FORGE_ATTRS)?;
    if flake.git_ref.is_some() && flake.rev.is_some() {
        return Err(Kind::RefAndRev(forge.scheme()));
    }
    Ok(flake)
}

fn git(
    transport: GitTransport,
    rest: &str,
    query: Vec<(String, String)>,
) -> Result<FlakeRef, Kind> {
    let (scheme, url) = match transport {
        GitTransport::Https => ("git+https", remote_url("https", rest, false)?),
        GitTransport::Http => ("git+http", remote_url("http", rest, false)?),
        GitTransport::Ssh => ("git+ssh", remote_url("ssh", rest, true)?),
        GitTransport::File => ("git+file", file_url(rest)?),
    };
    FlakeRef::from_source(FlakeSource::Git { transport, url }).apply_query(query, scheme, GIT_ATTRS)
}

/// A tarball (`archive == Some(true)`), a file (`Some(false)`), or decided by the extension.
fn fetched(
    transport: FetchTransport,
    rest: &str,
    query: Vec<(String, String)>,
    archive: Option<bool>,
) -> Result<FlakeRef, Kind> {
    let (proto, url) = match transport {
        FetchTransport::Https => ("https", remote_url("https", rest, false)?),
        FetchTransport::Http => ("http", remote_url("http", rest, false)?),
        FetchTransport::File => ("file", file_url(rest)?),
    };
    let archive = match archive {
        Some(archive) => archive,
        None if has_archive_extension(&url) => true,
        None if transport == FetchTransport::File => false,
        None => return Err(Kind::NotAnArchive(proto)),
    };
    if archive {
        let scheme = match transport {
            FetchTransport::Https => "tarball+https",
            FetchTransport::Http => "tarball+http",
            FetchTransport::File => "tarball+file",
        };
        FlakeRef::from_source(FlakeSource::Tarball { transport, url }).apply_query(
            query,
            scheme,
            TARBALL_ATTRS,
        )
    } else {
        let scheme = match transport {
            FetchTransport::Https => "file+https",
            FetchTransport::Http => "file+http",
            FetchTransport::File => "file+file",
        };
        FlakeRef::from_source(FlakeSource::File { transport, url })
            .apply_query(query, scheme, FILE_ATTRS)
    }
}

fn path(body: &str, bare: bool, query: Vec<(String, String)>) -> Result<FlakeRef, Kind> {
    let path = decode(body)?;
    if path.is_empty() {
        return Err(Kind::Expected("path:<path>"));
    }
    let relative_ok = path == "."
        || path == ".."
        || path.starts_with("./")
        || path.starts_with("../")
        || path.starts_with('/');
    if bare && !relative_ok {
        return Err(Kind::BadRelativePath);
    }
    FlakeRef::from_source(FlakeSource::Path { path, bare }).apply_query(query, "path", PATH_ATTRS)
}

fn indirect(body: &str, query: Vec<(String, String)>) -> Result<FlakeRef, Kind> {
    const EXPECTED: &str = "[flake:]<id>[/<ref-or-rev>[/<rev>]]";
    let segments: Vec<&str> = body.split('/').collect();
    if segments.len() > 3 || segments.iter().any(|s| s.is_empty()) {
        return Err(Kind::Expected(EXPECTED));
    }
    let id = segments[0];
    let mut chars = id.chars();
    let id_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !id_ok {
        let expected = "a letter followed by letters, digits, `_` or `-`";
        return Err(Kind::InvalidName {
            what: "flake id",
            value: id.to_owned(),
            expected,
        });
    }
    let mut flake = FlakeRef::from_source(FlakeSource::Indirect { id: id.to_owned() });
    match segments[1..] {
        [] => {}
        [ref_or_rev] if is_rev(ref_or_rev) => flake.set_rev(ref_or_rev)?,
        [git_ref] => flake.set_ref(git_ref)?,
        [git_ref, rev] => {
            flake.set_ref(git_ref)?;
            flake.set_rev(rev)?;
        }
        _ => unreachable!("at most three segments"),
    }
    flake.apply_query(query, "flake", INDIRECT_ATTRS)
}

/// Parses `//[user@]host[:port]/path` into `<proto>://…` with normalised escapes.
fn remote_url(proto: &'static str, rest: &str, allow_user: bool) -> Result<String, Kind> {
    let expected = match proto {
        "https" => "https://<host>/<path>",
        "http" => "http://<host>/<path>",
        _ => "ssh://[<user>@]<host>/<path>",
    };
    let after_slashes = rest.strip_prefix("//").ok_or(Kind::Expected(expected))?;
    let (authority, path) = match after_slashes.find('/') {
        Some(at) => after_slashes.split_at(at),
        None => (after_slashes, ""),
    };
    if path.len() < 2 {
        return Err(Kind::Expected(expected));
    }
    let host_port = match authority.split_once('@') {
        Some(_) if !allow_user => {
            return Err(Kind::BadUrl(
                "user names and passwords are not allowed in http(s) URLs \
                 (credentials do not belong in a flake reference)",
            ));
        }
        Some((user, _)) if user.contains(':') => {
            return Err(Kind::BadUrl(
                "passwords are not allowed in URLs (credentials do not belong in a flake \
                 reference)",
            ));
        }
        Some((user, host_port)) => {
            if !is_valid_name(user) {
                return Err(Kind::BadUrl("invalid user name before `@`"));
            }
            host_port
        }
        None => authority,
    };
    if !is_valid_host(host_port) {
        if allow_user && host_port.contains(':') && !host_port.starts_with('[') {
            return Err(Kind::BadUrl(
                "scp-like `host:path` is not a URL; write `git+ssh://[<user>@]<host>/<path>`",
            ));
        }
        return Err(Kind::InvalidHost(host_port.to_owned()));
    }
    Ok(format!("{proto}://{authority}{}", url_path(path)?))
}

/// Parses `///abs` or `/abs` into `file:///abs`.
fn file_url(rest: &str) -> Result<String, Kind> {
    let path = match rest.strip_prefix("//") {
        Some(after) if after.starts_with('/') => after,
        Some(_) => {
            return Err(Kind::BadUrl(
                "`file:` URLs take no host: expected `file:///<absolute path>`",
            ));
        }
        None if rest.starts_with('/') => rest,
        None => return Err(Kind::Expected("file:///<absolute path>")),
    };
    if path.len() < 2 {
        return Err(Kind::Expected("file:///<absolute path>"));
    }
    Ok(format!("file://{}", url_path(path)?))
}

fn url_path(path: &str) -> Result<String, Kind> {
    if !path.bytes().all(is_raw_url_path_byte) {
        return Err(Kind::BadUrl(
            "the URL path has a character that must be percent-encoded",
        ));
    }
    normalize_encoded(path)
}

/// A Git branch or tag name, as Nix accepts it.
fn is_valid_ref(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'@')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./@+-".contains(&b))
        && !name.contains("..")
        && !name.contains("//")
        && !name.ends_with('/')
        && !name.ends_with('.')
        && !name.ends_with(".lock")
}

#[cfg(test)]
pub(super) fn is_valid_ref_for_tests(name: &str) -> bool {
    is_valid_ref(name)
}

/// A relative directory inside the flake source.
fn is_valid_dir(dir: &str) -> bool {
    dir.split('/')
        .all(|segment| !matches!(segment, "" | "." | ".."))
}

/// An SRI hash: `sha1-`, `sha256-` or `sha512-` and the padded base64 of the digest.
fn is_valid_sri_hash(text: &str) -> bool {
    let Some((algorithm, digest)) = text.split_once('-') else {
        return false;
    };
    let digest_bytes: usize = match algorithm {
        "sha1" => 20,
        "sha256" => 32,
        "sha512" => 64,
        _ => return false,
    };
    let expected_len = digest_bytes.div_ceil(3) * 4;
    let padding = (3 - digest_bytes % 3) % 3;
    let (body, pad) = digest.split_at(digest.len().min(expected_len - padding));
    digest.len() == expected_len
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        && pad.bytes().all(|b| b == b'=')
        && last_symbol_has_zero_tail_bits(body, padding)
}

/// Base64 of a digest whose length is not a multiple of 3 leaves unused low bits in the last
/// symbol; they must be zero, or two spellings would mean the same hash.
fn last_symbol_has_zero_tail_bits(body: &str, padding: usize) -> bool {
    let Some(last) = body.bytes().last() else {
        return false;
    };
    let value = match last {
        b'A'..=b'Z' => last - b'A',
        b'a'..=b'z' => last - b'a' + 26,
        b'0'..=b'9' => last - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let unused_bits = [0, 2, 4][padding];
    value & ((1 << unused_bits) - 1) == 0
}
