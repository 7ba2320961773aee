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

    /// The NAR hash in SRI form, `sha256-<base64>`, as `nix path-info --json` prints it.
    pub fn nar_hash_sri(&self) -> String {
        use base64::Engine;
        let bytes: Option<Vec<u8>> = (0..self.nar_hash.len())
            .step_by(2)
            .map(|at| {
                let pair = self.nar_hash.get(at..at + 2)?;
                u8::from_str_radix(pair, 16).ok()
            })
            .collect();
        match bytes {
            Some(bytes) if bytes.len() == 32 => format!(
                "sha256-{}",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            ),
            // Not the 64 hex digits the daemon sends: shown as it is, typed.
            _ => format!("sha256:{}", self.nar_hash),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nar_hashes_read_as_nix_path_info_prints_them() {
        let path =
            StorePath::parse("/nix/store/0c1h5b3ldrb1d8jq6ln5ai3k06h3ipm8-hello-1.0").unwrap();
        // SHA-256 of the empty string, which `nix hash to-sri` gives as below.
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let info = PathInfo::new(path.clone(), empty, 0, []);
        assert_eq!(
            info.nar_hash_sri(),
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(
            PathInfo::new(path, "xyz", 0, []).nar_hash_sri(),
            "sha256:xyz"
        );
    }
}
