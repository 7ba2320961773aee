//! `SetOptions`: per-connection build settings. Without it the daemon uses its `nix.conf`.

use std::collections::BTreeMap;

use super::version::ProtocolVersion;
use super::wire::WireWriter;

/// Log verbosity, 0 (errors only) to 7 (everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Verbosity {
    /// Errors only.
    Error = 0,
    /// Warnings.
    Warn = 1,
    /// Notices.
    Notice = 2,
    /// Informational messages (Nix's default).
    Info = 3,
    /// Talkative.
    Talkative = 4,
    /// Chatty.
    Chatty = 5,
    /// Debug.
    Debug = 6,
    /// Everything.
    Vomit = 7,
}

/// Settings sent with `SetOptions`. Untrusted clients may change only a few of the
/// `overrides` (the daemon ignores the rest with a warning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonOptions {
    /// Keep the build directory of failed builds.
    pub keep_failed: bool,
    /// Keep building other derivations after one fails.
    pub keep_going: bool,
    /// Build from source when substitution fails.
    pub try_fallback: bool,
    /// How much the daemon logs back.
    pub verbosity: Verbosity,
    /// Builds to run in parallel.
    pub max_build_jobs: u64,
    /// Seconds a builder may stay silent before it is killed (0 = no limit).
    pub max_silent_time: u64,
    /// Whether build logs are streamed back.
    pub verbose_build: bool,
    /// Cores each build may use (0 = all).
    pub build_cores: u64,
    /// Whether substituters may be used.
    pub use_substitutes: bool,
    /// Further `nix.conf` settings, e.g. `substituters` (sent from protocol 1.12).
    pub overrides: BTreeMap<String, String>,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        Self {
            keep_failed: false,
            keep_going: false,
            try_fallback: false,
            verbosity: Verbosity::Error,
            max_build_jobs: 1,
            max_silent_time: 0,
            verbose_build: true,
            build_cores: 0,
            use_substitutes: true,
            overrides: BTreeMap::new(),
        }
    }
}

impl DaemonOptions {
    /// Encodes the request body (after the opcode).
    pub(crate) fn encode(&self, w: &mut WireWriter, version: ProtocolVersion) {
        w.bool(self.keep_failed)
            .bool(self.keep_going)
            .bool(self.try_fallback)
            .u64(self.verbosity as u64)
            .u64(self.max_build_jobs)
            .u64(self.max_silent_time)
            .u64(1) // useBuildHook, obsolete
            .u64(if self.verbose_build {
                Verbosity::Error as u64
            } else {
                Verbosity::Vomit as u64
            })
            .u64(0) // logType, obsolete
            .u64(0) // printBuildTrace, obsolete
            .u64(self.build_cores)
            .bool(self.use_substitutes);
        if version.at_least(12) {
            w.u64(self.overrides.len() as u64);
            for (name, value) in &self.overrides {
                w.string(name).string(value);
            }
        }
    }
}
