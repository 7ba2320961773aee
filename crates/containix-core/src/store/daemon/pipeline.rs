//! Pipelined `QueryPathInfo`: many requests written back to back while a dedicated reader task
//! decodes the replies in order.
//!
//! The daemon answers requests strictly in order, so a batch costs one round trip instead of
//! one per path. The reader runs concurrently with the writer: once the socket buffers fill,
//! the daemon stops reading requests until its replies are consumed, so writing a large batch
//! without a concurrent reader would deadlock.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::store::path_info::PathInfo;
use crate::store::store_path::StorePath;

use super::client::{DaemonClient, ReplyReader};
use super::error::{DaemonError, DaemonResult};
use super::ops::{Opcode, read_path_info};
use super::wire::WireWriter;

/// Requests are written in chunks of about this many bytes.
const WRITE_CHUNK: usize = 64 * 1024;

type ReaderOutcome<S> = (
    ReplyReader<S>,
    DaemonResult<Vec<Result<Option<PathInfo>, DaemonError>>>,
);

impl<S: AsyncRead + AsyncWrite + Send + 'static> DaemonClient<S> {
    /// Metadata of each of `paths`, in order (`None` for paths that are not valid), with the
    /// requests pipelined. If the daemon reports an error for some path, the first such error
    /// is returned once all replies are read, and the connection stays usable.
    pub async fn query_path_infos(
        &mut self,
        paths: &[StorePath],
    ) -> DaemonResult<Vec<Option<PathInfo>>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let mut reader = self.begin(Opcode::QueryPathInfo)?;
        let expected: Vec<StorePath> = paths.to_vec();
        let mut task = AbortOnDrop(tokio::spawn(async move {
            let outcome = read_replies(&mut reader, &expected).await;
            (reader, outcome)
        }));

        // If writing fails, the guard aborts the reader, which may wait for replies that never
        // come; the connection stays broken.
        write_requests(&mut self.writer, paths).await?;
        let (reader, outcome): ReaderOutcome<S> = match (&mut task.0).await {
            Ok(done) => done,
            Err(join) => {
                return Err(DaemonError::Io(std::io::Error::other(format!(
                    "the pipeline reader task failed: {join}"
                ))));
            }
        };
        let replies = outcome?;
        self.finish(reader);
        let mut infos = Vec::with_capacity(replies.len());
        for reply in replies {
            infos.push(reply?);
        }
        tracing::trace!(count = infos.len(), "pipelined QueryPathInfo");
        Ok(infos)
    }
}

/// Aborts the reader task when the pipeline is cancelled or fails, so it never outlives it
/// waiting for replies to requests that were not sent.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn write_requests<W: AsyncWrite + Unpin>(
    writer: &mut W,
    paths: &[StorePath],
) -> DaemonResult<()> {
    let mut chunk = WireWriter::new();
    for path in paths {
        chunk.u64(Opcode::QueryPathInfo as u64).store_path(path);
        if chunk.as_bytes().len() >= WRITE_CHUNK {
            writer.write_all(chunk.as_bytes()).await?;
            chunk = WireWriter::new();
        }
    }
    writer.write_all(chunk.as_bytes()).await?;
    writer.flush().await?;
    Ok(())
}

/// Reads one reply per expected path. Daemon errors are per-path results (the stream stays in
/// step); any other error ends the batch.
async fn read_replies<S: AsyncRead>(
    reader: &mut ReplyReader<S>,
    expected: &[StorePath],
) -> DaemonResult<Vec<Result<Option<PathInfo>, DaemonError>>> {
    let mut replies = Vec::with_capacity(expected.len());
    for path in expected {
        let reply = match reader.stderr().await? {
            Ok(()) => Ok(read_path_info(&mut reader.wire, reader.version, path).await?),
            Err(daemon_error) => Err(daemon_error),
        };
        replies.push(reply);
    }
    Ok(replies)
}
