//! What the store knows about one valid path: its NAR hash and size, references and signatures.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::store::store_path::StorePath;

/// Metadata of one valid store path, as `QueryPathInfo` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathInfo {
    /// The path described.
    pub path: StorePath,
    /// The derivation that produced it, when the store records one.
    pub deriver: Option<StorePath>,
    /// SHA-256 of the path's NAR serialisation, as 64 lowercase hex digits.
    pub nar_hash: String,
    /// Size of the NAR serialisation in bytes.
    pub nar_size: u64,
    /// Store paths this path refers to (may include itself).
    pub references: BTreeSet<StorePath>,
    /// Seconds since the epoch when the path was registered.
    pub registration_time: u64,
    /// Whether this store built the path itself (rather than substituting it).
    pub ultimate: bool,
    /// Signatures, each `keyname:base64`.
    pub signatures: Vec<String>,
    /// Content address, for content-addressed paths.
    pub content_address: Option<String>,
}

impl PathInfo {
    /// Path info with the given NAR facts and references, and no deriver, signatures or content
    /// address: what a tool that builds closures by hand (or a test) needs.
    pub fn new(
        path: StorePath,
        nar_hash: impl Into<String>,
        nar_size: u64,
        references: impl IntoIterator<Item = StorePath>,
    ) -> Self {
        Self {
            path,
            deriver: None,
            nar_hash: nar_hash.into(),
            nar_size,
            references: references.into_iter().collect(),
            registration_time: 0,
            ultimate: false,
            signatures: Vec::new(),
            content_address: None,
        }
    }
}
