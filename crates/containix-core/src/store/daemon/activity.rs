//! The daemon's structured log vocabulary: activities (a build, a substitution, a download)
//! start, report typed results and stop; both carry [`Field`]s.

/// Activity type: copying one path (progress in bytes); fields: the path, source, destination.
pub const ACTIVITY_COPY_PATH: u64 = 100;
/// Activity type: copying a set of paths (progress in paths).
pub const ACTIVITY_COPY_PATHS: u64 = 103;
/// Activity type: building a set of derivations (progress in derivations).
pub const ACTIVITY_BUILDS: u64 = 104;
/// Activity type: building one derivation; fields: the `.drv`, machine, round, rounds.
pub const ACTIVITY_BUILD: u64 = 105;
/// Activity type: substituting one path; fields: the path, the substituter.
pub const ACTIVITY_SUBSTITUTE: u64 = 108;
/// Activity type: asking a substituter about one path; fields: the path, the substituter.
pub const ACTIVITY_QUERY_PATH_INFO: u64 = 109;
/// Activity type: running the post-build hook; fields: the `.drv`.
pub const ACTIVITY_POST_BUILD_HOOK: u64 = 110;

/// Result type: a build log line (field 0).
pub const RESULT_BUILD_LOG_LINE: u64 = 101;
/// Result type: a build phase starts (field 0).
pub const RESULT_SET_PHASE: u64 = 104;
/// Result type: progress as done, expected, running, failed.
pub const RESULT_PROGRESS: u64 = 105;
/// Result type: expected amount of work for an activity type, as type, amount.
pub const RESULT_SET_EXPECTED: u64 = 106;

/// A field attached to an activity or result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// An integer field.
    Int(u64),
    /// A string field.
    String(String),
}
