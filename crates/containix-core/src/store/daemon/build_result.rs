//! The outcome of realising one derived path, as `BuildPathsWithResults` reports it.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::AsyncBufRead;

use super::ansi::strip_ansi;
use super::error::{DaemonError, DaemonResult};
use super::version::ProtocolVersion;
use super::wire::{MAX_SHORT_STRING_LEN, MAX_SMALL_LIST_LEN, MAX_STRING_LEN, WireReader};

/// How a build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStatus {
    /// Built by this daemon.
    Built,
    /// Substituted from a cache.
    Substituted,
    /// Already valid; nothing to do.
    AlreadyValid,
    /// The builder failed.
    PermanentFailure,
    /// The derivation was rejected.
    InputRejected,
    /// An output was rejected.
    OutputRejected,
    /// A failure that may go away on retry.
    TransientFailure,
    /// A cached earlier failure.
    CachedFailure,
    /// The build timed out.
    TimedOut,
    /// Another failure.
    MiscFailure,
    /// A dependency failed.
    DependencyFailed,
    /// The build log grew too large.
    LogLimitExceeded,
    /// A check build produced different output.
    NotDeterministic,
    /// A content-addressed derivation resolved to valid outputs.
    ResolvesToAlreadyValid,
    /// No substituter could provide it.
    NoSubstituters,
    /// A status this client does not know.
    Other(u64),
}

impl BuildStatus {
    /// Decodes the wire value.
    pub fn from_wire(value: u64) -> Self {
        match value {
            0 => Self::Built,
            1 => Self::Substituted,
            2 => Self::AlreadyValid,
            3 => Self::PermanentFailure,
            4 => Self::InputRejected,
            5 => Self::OutputRejected,
            6 => Self::TransientFailure,
            7 => Self::CachedFailure,
            8 => Self::TimedOut,
            9 => Self::MiscFailure,
            10 => Self::DependencyFailed,
            11 => Self::LogLimitExceeded,
            12 => Self::NotDeterministic,
            13 => Self::ResolvesToAlreadyValid,
            14 => Self::NoSubstituters,
            other => Self::Other(other),
        }
    }

    /// Whether the outputs are valid afterwards.
    pub fn is_success(self) -> bool {
        matches!(
            self,
            Self::Built | Self::Substituted | Self::AlreadyValid | Self::ResolvesToAlreadyValid
        )
    }
}

/// The result of realising one derived path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildResult {
    /// How it ended.
    pub status: BuildStatus,
    /// The error message without colours, empty on success.
    pub error_msg: String,
    /// How often the derivation was built (from 1.29; 0 before).
    pub times_built: u64,
    /// Whether a check build found non-determinism (from 1.29).
    pub is_non_deterministic: bool,
    /// Start time in seconds since the epoch (from 1.29; 0 if unknown).
    pub start_time: u64,
    /// Stop time in seconds since the epoch (from 1.29; 0 if unknown).
    pub stop_time: u64,
    /// User CPU time of the build (from 1.37, when the daemon measured it).
    pub cpu_user: Option<Duration>,
    /// System CPU time of the build (from 1.37, when the daemon measured it).
    pub cpu_system: Option<Duration>,
    /// Realisations of the built outputs (from 1.28): output id `sha256:<hex>!<name>` to the
    /// realisation as the daemon's JSON text.
    pub built_outputs: BTreeMap<String, String>,
}

impl BuildResult {
    /// Decodes one result at the negotiated version.
    pub async fn read<R: AsyncBufRead + Unpin>(
        reader: &mut WireReader<R>,
        version: ProtocolVersion,
    ) -> DaemonResult<Self> {
        let status = BuildStatus::from_wire(reader.u64("build status").await?);
        let error_msg = strip_ansi(&reader.text("build error message", MAX_STRING_LEN).await?);
        let mut result = Self {
            status,
            error_msg,
            times_built: 0,
            is_non_deterministic: false,
            start_time: 0,
            stop_time: 0,
            cpu_user: None,
            cpu_system: None,
            built_outputs: BTreeMap::new(),
        };
        if version.at_least(29) {
            result.times_built = reader.u64("timesBuilt").await?;
            result.is_non_deterministic = reader.bool("isNonDeterministic").await?;
            result.start_time = reader.u64("build start time").await?;
            result.stop_time = reader.u64("build stop time").await?;
        }
        if version.at_least(37) {
            result.cpu_user = read_optional_micros(reader, "cpuUser").await?;
            result.cpu_system = read_optional_micros(reader, "cpuSystem").await?;
        }
        if version.at_least(28) {
            let count = reader.len("built output count", MAX_SMALL_LIST_LEN).await?;
            for _ in 0..count {
                let id = reader
                    .string("built output id", MAX_SHORT_STRING_LEN)
                    .await?;
                let realisation = reader.string("realisation", MAX_STRING_LEN).await?;
                result.built_outputs.insert(id, realisation);
            }
        }
        Ok(result)
    }
}

/// An optional duration: u64 tag (0 absent, 1 present) then i64 microseconds.
async fn read_optional_micros<R: AsyncBufRead + Unpin>(
    reader: &mut WireReader<R>,
    what: &'static str,
) -> DaemonResult<Option<Duration>> {
    if !reader.bool(what).await? {
        return Ok(None);
    }
    let micros = reader.u64(what).await? as i64;
    if micros < 0 {
        return Err(DaemonError::UnexpectedValue {
            what,
            value: micros as u64,
            expected: "a non-negative number of microseconds",
        });
    }
    Ok(Some(Duration::from_micros(micros as u64)))
}
