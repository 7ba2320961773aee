//! The handshake: magic numbers, version negotiation, the 1.38 feature exchange, and what the
//! daemon tells about itself (version string, whether it trusts us).

use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt};

use super::error::{DaemonError, DaemonResult};
use super::stderr::{ProgressTracker, read_stderr};
use super::version::ProtocolVersion;
use super::wire::{MAX_SHORT_STRING_LEN, MAX_SMALL_LIST_LEN, WireReader, WireWriter};

/// First word the client sends.
pub const WORKER_MAGIC_1: u64 = 0x6e69_7863;
/// First word the daemon answers.
pub const WORKER_MAGIC_2: u64 = 0x6478_696f;

/// Whether the daemon trusts this client (reported from protocol 1.35).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustStatus {
    /// The daemon did not say (protocol < 1.35, or it chose not to).
    Unknown,
    /// The client is a trusted user: it may repair, add permanent roots, import unsigned NARs.
    Trusted,
    /// The client is not trusted.
    NotTrusted,
}

/// What the handshake established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonInfo {
    /// The negotiated protocol version, min(client, daemon).
    pub protocol: ProtocolVersion,
    /// The version the daemon advertised.
    pub daemon_protocol: ProtocolVersion,
    /// The daemon's Nix version string, e.g. "2.8.0" (from 1.33).
    pub nix_version: Option<String>,
    /// Whether the daemon trusts this client.
    pub trust: TrustStatus,
    /// Protocol features the daemon offered (from 1.38). This client enables none, so none are
    /// in use.
    pub daemon_features: Vec<String>,
}

/// Runs the client side of the handshake.
pub async fn handshake<R, W>(
    reader: &mut WireReader<R>,
    writer: &mut W,
    progress: &mut ProgressTracker,
) -> DaemonResult<DaemonInfo>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut hello = WireWriter::new();
    hello
        .u64(WORKER_MAGIC_1)
        .u64(ProtocolVersion::CLIENT.to_wire());
    send(writer, &hello).await?;

    let magic = reader.u64("daemon magic").await?;
    if magic != WORKER_MAGIC_2 {
        return Err(DaemonError::UnexpectedValue {
            what: "daemon magic",
            value: magic,
            expected: "0x6478696f (a Nix daemon)",
        });
    }
    let wire_version = reader.u64("daemon protocol version").await?;
    let daemon_protocol =
        ProtocolVersion::from_wire(wire_version).ok_or(DaemonError::UnexpectedValue {
            what: "daemon protocol version",
            value: wire_version,
            expected: "major << 8 | minor",
        })?;
    if daemon_protocol.major != 1 || daemon_protocol < ProtocolVersion::MIN_SUPPORTED {
        return Err(DaemonError::UnsupportedVersion {
            daemon: daemon_protocol,
            min: ProtocolVersion::MIN_SUPPORTED,
            max: ProtocolVersion::CLIENT,
        });
    }
    let protocol = daemon_protocol.min(ProtocolVersion::CLIENT);

    let mut daemon_features = Vec::new();
    if protocol.at_least(38) {
        // Both sides use the intersection of the lists; asking for nothing keeps the 1.38
        // protocol identical to 1.37 on the wire.
        let mut ours = WireWriter::new();
        ours.strings(std::iter::empty::<&str>());
        send(writer, &ours).await?;
        daemon_features = reader
            .strings("daemon features", MAX_SMALL_LIST_LEN, MAX_SHORT_STRING_LEN)
            .await?;
    }

    let mut settings = WireWriter::new();
    if protocol.at_least(14) {
        settings.u64(0); // no CPU affinity
    }
    if protocol.at_least(11) {
        settings.u64(0); // reserveSpace: false
    }
    send(writer, &settings).await?;

    let nix_version = if protocol.at_least(33) {
        Some(
            reader
                .text("daemon Nix version", MAX_SHORT_STRING_LEN)
                .await?,
        )
    } else {
        None
    };
    let trust = if protocol.at_least(35) {
        match reader.u64("trust status").await? {
            0 => TrustStatus::Unknown,
            1 => TrustStatus::Trusted,
            2 => TrustStatus::NotTrusted,
            value => {
                return Err(DaemonError::UnexpectedValue {
                    what: "trust status",
                    value,
                    expected: "0 (unknown), 1 (trusted) or 2 (not trusted)",
                });
            }
        }
    } else {
        TrustStatus::Unknown
    };
    read_stderr(reader, protocol, progress).await?;
    Ok(DaemonInfo {
        protocol,
        daemon_protocol,
        nix_version,
        trust,
        daemon_features,
    })
}

/// Writes and flushes encoded bytes.
pub(crate) async fn send<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &WireWriter,
) -> DaemonResult<()> {
    writer.write_all(bytes.as_bytes()).await?;
    writer.flush().await?;
    Ok(())
}
