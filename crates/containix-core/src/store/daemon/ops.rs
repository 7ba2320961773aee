//! Operation codes and the codecs of their request bodies and results.
//!
//! Result decoders are public so that fuzzers and alternative transports can drive them over
//! any buffered byte stream.

use std::collections::BTreeSet;

use tokio::io::AsyncBufRead;

use crate::store::path_info::PathInfo;
use crate::store::store_path::StorePath;

use super::build_result::BuildResult;
use super::derived_path::{DerivedPath, OutputsSpec};
use super::error::{DaemonError, DaemonResult};
use super::version::ProtocolVersion;
use super::wire::{
    MAX_FS_PATH_LEN, MAX_PATH_COUNT, MAX_SHORT_STRING_LEN, MAX_SMALL_LIST_LEN, MAX_STORE_PATH_LEN,
    WireReader, WireWriter,
};

/// Worker operation codes used by this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Opcode {
    /// Whether a path is valid.
    IsValidPath = 1,
    /// Build derived paths; failure is an error.
    BuildPaths = 9,
    /// Make a path valid by substitution.
    EnsurePath = 10,
    /// Protect a path from GC for the connection's lifetime.
    AddTempRoot = 11,
    /// Register a symlink as a GC root.
    AddIndirectRoot = 12,
    /// List GC roots.
    FindRoots = 14,
    /// Per-connection settings.
    SetOptions = 19,
    /// Metadata of a path.
    QueryPathInfo = 26,
    /// Which of some paths are valid.
    QueryValidPaths = 31,
    /// What realising some paths would build, substitute or not find.
    QueryMissing = 40,
    /// Build derived paths and report each result.
    BuildPathsWithResults = 46,
}

impl Opcode {
    /// The operation's name as Nix spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::IsValidPath => "IsValidPath",
            Self::BuildPaths => "BuildPaths",
            Self::EnsurePath => "EnsurePath",
            Self::AddTempRoot => "AddTempRoot",
            Self::AddIndirectRoot => "AddIndirectRoot",
            Self::FindRoots => "FindRoots",
            Self::SetOptions => "SetOptions",
            Self::QueryPathInfo => "QueryPathInfo",
            Self::QueryValidPaths => "QueryValidPaths",
            Self::QueryMissing => "QueryMissing",
            Self::BuildPathsWithResults => "BuildPathsWithResults",
        }
    }

    /// The oldest protocol version that has the operation.
    pub fn since(self) -> ProtocolVersion {
        match self {
            Self::BuildPathsWithResults => ProtocolVersion::new(1, 34),
            _ => ProtocolVersion::MIN_SUPPORTED,
        }
    }
}

/// How `BuildPaths` treats outputs that already exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuildMode {
    /// Build what is missing.
    #[default]
    Normal = 0,
    /// Rebuild and replace corrupted outputs (trusted clients only).
    Repair = 1,
    /// Rebuild and compare with the existing outputs.
    Check = 2,
}

/// What realising some derived paths would take, from `QueryMissing`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Missing {
    /// Derivations that would be built.
    pub will_build: BTreeSet<StorePath>,
    /// Paths that would be substituted.
    pub will_substitute: BTreeSet<StorePath>,
    /// Paths neither valid nor obtainable.
    pub unknown: BTreeSet<StorePath>,
    /// Bytes to download.
    pub download_size: u64,
    /// Unpacked NAR bytes to substitute.
    pub nar_size: u64,
}

/// A garbage collector root, from `FindRoots`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GcRoot {
    /// Where the root lives: a symlink path, or a pseudo-name such as `{temp:1234}` or
    /// `/proc/<pid>/maps`.
    pub link: String,
    /// The store path it keeps alive.
    pub path: StorePath,
}

/// Appends derived paths in the form the negotiated version expects.
pub(crate) fn encode_derived_paths(
    w: &mut WireWriter,
    paths: &[DerivedPath],
    version: ProtocolVersion,
) {
    w.u64(paths.len() as u64);
    for path in paths {
        match path {
            // Before 1.30 (the `StorePathWithOutputs` form) a bare .drv means all outputs.
            DerivedPath::Built {
                drv,
                outputs: OutputsSpec::All,
            } if !version.at_least(30) => w.store_path(drv),
            path => w.string(&path.to_string()),
        };
    }
}

/// Reads the `u64 1` that acknowledges several operations.
pub async fn read_ack<R: AsyncBufRead + Unpin>(
    reader: &mut WireReader<R>,
    what: &'static str,
) -> DaemonResult<()> {
    match reader.u64(what).await? {
        1 => Ok(()),
        value => Err(DaemonError::UnexpectedValue {
            what,
            value,
            expected: "1 (done)",
        }),
    }
}

/// Reads the result of `QueryPathInfo` for `path`: `None` if the path is not valid.
pub async fn read_path_info<R: AsyncBufRead + Unpin>(
    reader: &mut WireReader<R>,
    version: ProtocolVersion,
    path: &StorePath,
) -> DaemonResult<Option<PathInfo>> {
    if version.at_least(17) && !reader.bool("path info validity").await? {
        return Ok(None);
    }
    let deriver = reader.optional_store_path("deriver").await?;
    let nar_hash = reader.string("narHash", MAX_SHORT_STRING_LEN).await?;
    if nar_hash.len() != 64
        || !nar_hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(DaemonError::UnexpectedText {
            what: "narHash",
            value: nar_hash.chars().take(100).collect(),
            expected: "64 lowercase hex digits",
        });
    }
    let references = reader.store_paths("references", MAX_PATH_COUNT).await?;
    let registration_time = reader.u64("registrationTime").await?;
    let nar_size = reader.u64("narSize").await?;
    let mut ultimate = false;
    let mut signatures = Vec::new();
    let mut content_address = None;
    if version.at_least(16) {
        ultimate = reader.bool("ultimate").await?;
        signatures = reader
            .strings("signatures", MAX_SMALL_LIST_LEN, MAX_SHORT_STRING_LEN)
            .await?;
        let ca = reader
            .string("content address", MAX_SHORT_STRING_LEN)
            .await?;
        content_address = (!ca.is_empty()).then_some(ca);
    }
    Ok(Some(PathInfo {
        path: path.clone(),
        deriver,
        nar_hash,
        nar_size,
        references: references.into_iter().collect(),
        registration_time,
        ultimate,
        signatures,
        content_address,
    }))
}

/// Reads the result of `BuildPathsWithResults`.
pub async fn read_build_results<R: AsyncBufRead + Unpin>(
    reader: &mut WireReader<R>,
    version: ProtocolVersion,
) -> DaemonResult<Vec<(DerivedPath, BuildResult)>> {
    let count = reader.len("build result count", MAX_PATH_COUNT).await?;
    let mut results = Vec::with_capacity((count as usize).min(256));
    for _ in 0..count {
        let text = reader
            .string("built derived path", MAX_STORE_PATH_LEN * 2)
            .await?;
        let path = text
            .parse::<DerivedPath>()
            .map_err(|_| DaemonError::UnexpectedText {
                what: "built derived path",
                value: text.chars().take(300).collect(),
                expected: "a derived path",
            })?;
        results.push((path, BuildResult::read(reader, version).await?));
    }
    Ok(results)
}

/// Reads the result of `QueryMissing`.
pub async fn read_missing<R: AsyncBufRead + Unpin>(
    reader: &mut WireReader<R>,
) -> DaemonResult<Missing> {
    let will_build = reader.store_paths("willBuild", MAX_PATH_COUNT).await?;
    let will_substitute = reader.store_paths("willSubstitute", MAX_PATH_COUNT).await?;
    let unknown = reader.store_paths("unknown", MAX_PATH_COUNT).await?;
    Ok(Missing {
        will_build: will_build.into_iter().collect(),
        will_substitute: will_substitute.into_iter().collect(),
        unknown: unknown.into_iter().collect(),
        download_size: reader.u64("downloadSize").await?,
        nar_size: reader.u64("narSize").await?,
    })
}

/// Reads the result of `FindRoots`.
pub async fn read_roots<R: AsyncBufRead + Unpin>(
    reader: &mut WireReader<R>,
) -> DaemonResult<Vec<GcRoot>> {
    let count = reader.len("GC root count", MAX_PATH_COUNT).await?;
    let mut roots = Vec::with_capacity((count as usize).min(256));
    for _ in 0..count {
        let link = reader.text("GC root link", MAX_FS_PATH_LEN).await?;
        let path = reader.store_path("GC root target").await?;
        roots.push(GcRoot { link, path });
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::daemon::in_memory::ready;
    use crate::store::daemon::testing::{encode_path_info, transcript};
    use proptest::prelude::*;

    fn path(name: &str) -> StorePath {
        StorePath::parse(&format!("/nix/store/{}-{name}", "b".repeat(32))).unwrap()
    }

    fn arb_info() -> impl Strategy<Value = PathInfo> {
        (
            "[a-z]{1,10}",
            prop::option::of("[a-z]{1,10}"),
            "[0-9a-f]{64}",
            any::<u64>(),
            prop::collection::btree_set("[a-z]{1,10}", 0..5),
            any::<u64>(),
            any::<bool>(),
            prop::collection::vec("[a-z]+:[A-Za-z0-9+/=]{4,20}", 0..3),
            prop::option::of("text:sha256:[0-9a-z]{52}"),
        )
            .prop_map(
                |(name, deriver, nar_hash, nar_size, refs, time, ultimate, sigs, ca)| PathInfo {
                    path: path(&name),
                    deriver: deriver.map(|d| path(&format!("{d}.drv"))),
                    nar_hash,
                    nar_size,
                    references: refs.iter().map(|r| path(r)).collect(),
                    registration_time: time,
                    ultimate,
                    signatures: sigs,
                    content_address: ca,
                },
            )
    }

    proptest! {
        #[test]
        fn path_infos_round_trip(info in arb_info(), minor in 17u8..=38) {
            let version = ProtocolVersion::new(1, minor);
            let mut t = transcript();
            encode_path_info(&mut t, Some(&info), version);
            let bytes = t.into_bytes();
            let mut reader = WireReader::new(bytes.as_slice());
            let decoded = ready(read_path_info(&mut reader, version, &info.path)).unwrap();
            prop_assert_eq!(decoded, Some(info));
            prop_assert!(reader.get_ref().is_empty());
        }

        #[test]
        fn missing_round_trips(a in prop::collection::btree_set("[a-z]{1,8}", 0..4), size in any::<u64>()) {
            let paths: BTreeSet<StorePath> = a.iter().map(|n| path(n)).collect();
            let mut t = transcript();
            t.store_paths(&paths).store_paths(&paths).store_paths(&BTreeSet::new()).u64(size).u64(size / 2);
            let bytes = t.into_bytes();
            let missing = ready(read_missing(&mut WireReader::new(bytes.as_slice()))).unwrap();
            prop_assert_eq!(missing.will_build, paths.clone());
            prop_assert_eq!(missing.will_substitute, paths);
            prop_assert_eq!(missing.download_size, size);
        }
    }

    #[test]
    fn absent_path_info_is_none() {
        let mut t = transcript();
        t.u64(0);
        let bytes = t.into_bytes();
        let info = ready(read_path_info(
            &mut WireReader::new(bytes.as_slice()),
            ProtocolVersion::new(1, 34),
            &path("x"),
        ))
        .unwrap();
        assert_eq!(info, None);
    }

    #[test]
    fn malformed_nar_hashes_are_refused() {
        let mut t = transcript();
        t.u64(1).string("").string("sha256:abc");
        let bytes = t.into_bytes();
        let err = ready(read_path_info(
            &mut WireReader::new(bytes.as_slice()),
            ProtocolVersion::new(1, 34),
            &path("x"),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("narHash"), "{err}");
    }

    #[test]
    fn derived_paths_follow_the_version() {
        let drv = path("x.drv");
        let paths = [
            DerivedPath::all_outputs(drv.clone()).unwrap(),
            DerivedPath::Opaque(path("y")),
        ];
        let mut new = WireWriter::new();
        encode_derived_paths(&mut new, &paths, ProtocolVersion::new(1, 34));
        let mut expected = WireWriter::new();
        expected.strings([format!("{drv}!*"), path("y").to_string()]);
        assert_eq!(new.as_bytes(), expected.as_bytes());
        let mut old = WireWriter::new();
        encode_derived_paths(&mut old, &paths, ProtocolVersion::new(1, 29));
        let mut expected = WireWriter::new();
        expected.strings([drv.to_string(), path("y").to_string()]);
        assert_eq!(old.as_bytes(), expected.as_bytes());
    }
}
