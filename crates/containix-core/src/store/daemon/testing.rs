//! Helpers for tests: encode daemon replies into a transcript.

use crate::store::path_info::PathInfo;

use super::version::ProtocolVersion;
use super::wire::WireWriter;

/// An empty transcript to encode daemon bytes into.
pub(crate) fn transcript() -> WireWriter {
    WireWriter::new()
}

/// Encodes a `QueryPathInfo` result as a daemon speaking `version` sends it.
pub(crate) fn encode_path_info(
    w: &mut WireWriter,
    info: Option<&PathInfo>,
    version: ProtocolVersion,
) {
    let Some(info) = info else {
        w.u64(0);
        return;
    };
    if version.at_least(17) {
        w.u64(1);
    }
    w.string(info.deriver.as_ref().map_or("", |d| d.as_str()))
        .string(&info.nar_hash)
        .store_paths(&info.references)
        .u64(info.registration_time)
        .u64(info.nar_size);
    if version.at_least(16) {
        w.bool(info.ultimate)
            .strings(&info.signatures)
            .string(info.content_address.as_deref().unwrap_or(""));
    }
}
