//! A connection to the Nix daemon and the operations containix uses.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadHalf, WriteHalf};
use tokio::net::UnixStream;
use tokio::sync::watch;

use crate::store::path_info::PathInfo;
use crate::store::store_path::StorePath;

use super::build_result::BuildResult;
use super::derived_path::DerivedPath;
use super::error::{DaemonError, DaemonResult};
use super::handshake::{DaemonInfo, TrustStatus, handshake, send};
use super::ops::{
    BuildMode, GcRoot, Missing, Opcode, encode_derived_paths, read_ack, read_build_results,
    read_missing, read_path_info, read_roots,
};
use super::options::DaemonOptions;
use super::stderr::{Progress, ProgressTracker, read_stderr};
use super::version::ProtocolVersion;
use super::wire::{MAX_PATH_COUNT, WireReader, WireWriter};

/// The reading side of a connection: decodes replies and folds their stderr messages into
/// progress. Moved into the pipeline's reader task while a pipeline runs.
#[derive(Debug)]
pub(super) struct ReplyReader<S> {
    pub(super) wire: WireReader<BufReader<ReadHalf<S>>>,
    pub(super) progress: ProgressTracker,
    pub(super) version: ProtocolVersion,
}

impl<S: AsyncRead> ReplyReader<S> {
    /// Reads the stderr messages of one reply; a daemon error is returned as `Ok(Err(..))`
    /// (the stream is still in step), anything else as `Err`.
    pub(super) async fn stderr(&mut self) -> DaemonResult<Result<(), DaemonError>> {
        match read_stderr(&mut self.wire, self.version, &mut self.progress).await {
            Ok(()) => Ok(Ok(())),
            Err(err @ DaemonError::Daemon { .. }) => Ok(Err(err)),
            Err(err) => Err(err),
        }
    }
}

/// A connection to a Nix daemon, after the handshake.
///
/// Operations take `&mut self`: one request is in flight at a time, except in
/// [`DaemonClient::query_path_infos`], which pipelines. A connection whose stream may be out of
/// step (an I/O or decoding error, an operation cancelled mid-reply, the daemon hanging up after
/// rejecting a request) is marked broken and refuses further use with [`DaemonError::Broken`].
#[derive(Debug)]
pub struct DaemonClient<S = UnixStream> {
    pub(super) reader: Option<ReplyReader<S>>,
    pub(super) writer: WriteHalf<S>,
    pub(super) info: DaemonInfo,
    pub(super) progress: watch::Receiver<Progress>,
    pub(super) broken: bool,
}

impl DaemonClient<UnixStream> {
    /// Connects to the daemon socket at `path` and performs the handshake.
    pub async fn connect(path: impl AsRef<Path>) -> DaemonResult<Self> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| DaemonError::Connect {
                path: path.to_owned(),
                source,
            })?;
        Self::from_stream(stream).await
    }

    /// Connects to the socket [`socket_path`](super::socket::socket_path) picks (`NIX_DAEMON_SOCKET_PATH` or the
    /// default).
    pub async fn connect_default() -> DaemonResult<Self> {
        Self::connect(super::socket::socket_path()).await
    }
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> DaemonClient<S> {
    /// Performs the handshake over an already connected stream.
    pub async fn from_stream(stream: S) -> DaemonResult<Self> {
        let (read, mut writer) = tokio::io::split(stream);
        let mut wire = WireReader::new(BufReader::new(read));
        let (mut progress, receiver) = ProgressTracker::new();
        let info = handshake(&mut wire, &mut writer, &mut progress).await?;
        tracing::debug!(
            protocol = %info.protocol,
            nix = info.nix_version.as_deref().unwrap_or("?"),
            trust = ?info.trust,
            "connected to the Nix daemon"
        );
        Ok(Self {
            reader: Some(ReplyReader {
                wire,
                progress,
                version: info.protocol,
            }),
            writer,
            info,
            progress: receiver,
            broken: false,
        })
    }

    /// What the handshake established.
    pub fn info(&self) -> &DaemonInfo {
        &self.info
    }

    /// The negotiated protocol version.
    pub fn protocol(&self) -> ProtocolVersion {
        self.info.protocol
    }

    /// Whether the daemon trusts this client.
    pub fn trust(&self) -> TrustStatus {
        self.info.trust
    }

    /// Progress of the current or last operation; reset when an operation starts.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Whether the connection is unusable and must be dropped.
    pub fn is_broken(&self) -> bool {
        self.broken || self.reader.is_none()
    }

    /// Sends per-connection settings.
    pub async fn set_options(&mut self, options: &DaemonOptions) -> DaemonResult<()> {
        self.run(
            Opcode::SetOptions,
            |w, version| options.encode(w, version),
            async |_, _| Ok(()),
        )
        .await
    }

    /// Whether `path` is valid in the store.
    pub async fn is_valid_path(&mut self, path: &StorePath) -> DaemonResult<bool> {
        self.run(
            Opcode::IsValidPath,
            |w, _| {
                w.store_path(path);
            },
            async |r, _| r.bool("IsValidPath result").await,
        )
        .await
    }

    /// Which of `paths` are valid; with `substitute`, the daemon first tries to substitute the
    /// others (protocol >= 1.27; ignored before).
    pub async fn query_valid_paths(
        &mut self,
        paths: &[StorePath],
        substitute: bool,
    ) -> DaemonResult<BTreeSet<StorePath>> {
        self.run(
            Opcode::QueryValidPaths,
            |w, version| {
                w.store_paths(paths);
                if version.at_least(27) {
                    w.bool(substitute);
                }
            },
            async |r, _| {
                let valid = r.store_paths("valid paths", MAX_PATH_COUNT).await?;
                Ok(valid.into_iter().collect())
            },
        )
        .await
    }

    /// Metadata of `path`, or `None` if it is not valid.
    pub async fn query_path_info(&mut self, path: &StorePath) -> DaemonResult<Option<PathInfo>> {
        self.run(
            Opcode::QueryPathInfo,
            |w, _| {
                w.store_path(path);
            },
            async |r, version| read_path_info(r, version, path).await,
        )
        .await
    }

    /// What realising `paths` would build, substitute, or cannot find.
    pub async fn query_missing(&mut self, paths: &[DerivedPath]) -> DaemonResult<Missing> {
        self.run(
            Opcode::QueryMissing,
            |w, version| encode_derived_paths(w, paths, version),
            async |r, _| read_missing(r).await,
        )
        .await
    }

    /// Makes `path` valid by substituting it if needed (never builds).
    pub async fn ensure_path(&mut self, path: &StorePath) -> DaemonResult<()> {
        self.run(
            Opcode::EnsurePath,
            |w, _| {
                w.store_path(path);
            },
            async |r, _| read_ack(r, "EnsurePath result").await,
        )
        .await
    }

    /// Realises `paths`; a failure is a [`DaemonError::Daemon`] naming what failed.
    pub async fn build_paths(
        &mut self,
        paths: &[DerivedPath],
        mode: BuildMode,
    ) -> DaemonResult<()> {
        self.run(
            Opcode::BuildPaths,
            |w, version| {
                encode_derived_paths(w, paths, version);
                if version.at_least(15) {
                    w.u64(mode as u64);
                }
            },
            async |r, _| read_ack(r, "BuildPaths result").await,
        )
        .await
    }

    /// Realises `paths` and reports each one's result (protocol >= 1.34); failures are results,
    /// not errors.
    pub async fn build_paths_with_results(
        &mut self,
        paths: &[DerivedPath],
        mode: BuildMode,
    ) -> DaemonResult<Vec<(DerivedPath, BuildResult)>> {
        self.run(
            Opcode::BuildPathsWithResults,
            |w, version| {
                encode_derived_paths(w, paths, version);
                w.u64(mode as u64);
            },
            async |r, version| read_build_results(r, version).await,
        )
        .await
    }

    /// Protects `path` (and so its closure) from garbage collection while this connection lives.
    pub async fn add_temp_root(&mut self, path: &StorePath) -> DaemonResult<()> {
        self.run(
            Opcode::AddTempRoot,
            |w, _| {
                w.store_path(path);
            },
            async |r, _| read_ack(r, "AddTempRoot result").await,
        )
        .await
    }

    /// Registers `link`, a symlink the caller created pointing into the store, as a GC root.
    /// The root lasts until the symlink is removed.
    pub async fn add_indirect_root(&mut self, link: &Path) -> DaemonResult<()> {
        let bytes = link.as_os_str().as_bytes();
        if !link.is_absolute() || bytes.contains(&0) {
            return Err(DaemonError::InvalidRequest(format!(
                "indirect GC root {} must be an absolute path without NUL bytes",
                link.display()
            )));
        }
        self.run(
            Opcode::AddIndirectRoot,
            |w, _| {
                w.bytes(bytes);
            },
            async |r, _| read_ack(r, "AddIndirectRoot result").await,
        )
        .await
    }

    /// Lists the garbage collector's roots.
    pub async fn find_roots(&mut self) -> DaemonResult<Vec<GcRoot>> {
        self.run(
            Opcode::FindRoots,
            |_, _| {},
            async |r, _| read_roots(r).await,
        )
        .await
    }

    /// Takes the reader for one operation, or fails if the connection cannot be used.
    pub(super) fn begin(&mut self, operation: Opcode) -> DaemonResult<ReplyReader<S>> {
        let version = self.info.protocol;
        if operation.since() > version {
            return Err(DaemonError::OperationUnsupported {
                operation: operation.name(),
                needed: operation.since(),
                negotiated: version,
            });
        }
        if self.broken {
            return Err(DaemonError::Broken);
        }
        let mut reader = self.reader.take().ok_or(DaemonError::Broken)?;
        reader.progress.reset();
        // Cleared once the reply has been read in full.
        self.broken = true;
        Ok(reader)
    }

    /// Gives the reader back after a reply was read in full. Bytes left over mean the daemon
    /// sent something unasked (after an early error it sends the error twice and hangs up):
    /// the connection stays broken.
    pub(super) fn finish(&mut self, reader: ReplyReader<S>) -> bool {
        let in_step = reader.wire.get_ref().buffer().is_empty();
        self.reader = Some(reader);
        self.broken = !in_step;
        in_step
    }

    async fn run<T>(
        &mut self,
        operation: Opcode,
        encode: impl FnOnce(&mut WireWriter, ProtocolVersion),
        decode: impl AsyncFnOnce(
            &mut WireReader<BufReader<ReadHalf<S>>>,
            ProtocolVersion,
        ) -> DaemonResult<T>,
    ) -> DaemonResult<T> {
        let version = self.info.protocol;
        let mut request = WireWriter::new();
        request.u64(operation as u64);
        encode(&mut request, version);
        let mut reader = self.begin(operation)?;
        send(&mut self.writer, &request).await?;
        match reader.stderr().await? {
            Ok(()) => {
                let value = decode(&mut reader.wire, version).await?;
                if !self.finish(reader) {
                    tracing::warn!(
                        operation = operation.name(),
                        "the Nix daemon sent more than the reply; dropping the connection"
                    );
                }
                Ok(value)
            }
            Err(DaemonError::Daemon {
                message,
                log_tail,
                status,
                traces,
                ..
            }) => {
                let usable = self.finish(reader);
                Err(DaemonError::Daemon {
                    message,
                    log_tail,
                    status,
                    traces,
                    closed_connection: !usable,
                })
            }
            Err(other) => Err(other),
        }
    }
}
