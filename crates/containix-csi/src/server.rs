//! Serving the Identity, Node and (unadvertised) Controller services on a Unix socket.

use std::future::Future;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use containix_core::assemble::closure_mount::SyscallMounter;
use containix_core::request::policy::NodePolicy;
use containix_core::resolve::Resolver;
use thiserror::Error;
use tokio::net::UnixListener;
use tokio::sync::Notify;
use tokio_stream::wrappers::UnixListenerStream;

use crate::controller::ControllerService;
use crate::error::NodeError;
use crate::identity::IdentityService;
use crate::node::NodeService;
use crate::proto::controller_server::ControllerServer;
use crate::proto::identity_server::IdentityServer;
use crate::proto::node_server::NodeServer;
use crate::publish::Publisher;

/// How long a stopping plugin lets calls under way finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the plugin could not serve.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The endpoint is not a `unix://` URL with an absolute path.
    #[error("--endpoint {0:?}: expected unix:///<absolute path>, e.g. unix:///csi/csi.sock")]
    Endpoint(String),
    /// The socket could not be prepared or bound.
    #[error("listening on {path:?}: {source}")]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The state directory could not be opened.
    #[error(transparent)]
    State(#[from] NodeError),
    /// The gRPC server failed.
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The plugin's settings.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// The Unix socket to listen on.
    pub socket: PathBuf,
    /// The node id NodeGetInfo reports.
    pub node_id: String,
    /// Where volume records, overlays and GC roots live.
    pub state_dir: PathBuf,
    /// The node policy (daemon socket, allowed flake refs, realisation, deadlines, package set).
    pub policy: NodePolicy,
}

/// The socket path of a `unix:///path` (or `unix:/path`) endpoint.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, ServeError> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .filter(|path| path.starts_with('/'))
        .ok_or_else(|| ServeError::Endpoint(endpoint.to_owned()))?;
    Ok(PathBuf::from(path))
}

/// Binds `path`, replacing a stale socket an earlier process left (never another kind of file).
fn listen(path: &Path) -> Result<UnixListener, ServeError> {
    let error = |source| ServeError::Listen {
        path: path.to_owned(),
        source,
    };
    if let Ok(metadata) = std::fs::symlink_metadata(path)
        && metadata.file_type().is_socket()
    {
        std::fs::remove_file(path).map_err(error)?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(error)?;
    }
    UnixListener::bind(path).map_err(error)
}

/// Serves until `shutdown` completes, then removes the socket.
pub async fn serve(
    config: PluginConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let source = Resolver::new(config.policy.clone());
    let identity = IdentityService::new(config.policy.daemon_socket.clone());
    let controller = ControllerService::new(config.policy.clone());
    let publisher = Publisher::new(
        config.policy,
        source,
        Arc::new(SyscallMounter),
        &config.state_dir,
    )?;
    publisher.release_orphaned_views().await?;
    let node = NodeService::new(config.node_id.clone(), Arc::new(publisher));
    let listener = listen(&config.socket)?;
    tracing::info!(socket = ?config.socket, node_id = config.node_id, "serving CSI");
    let stop = Arc::new(Notify::new());
    let stopped = Arc::clone(&stop);
    let server = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(identity))
        .add_service(ControllerServer::new(controller))
        .add_service(NodeServer::new(node))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
            stopped.notified().await
        });
    tokio::pin!(server);
    // A kubelet keeps its connection open, so a graceful stop waits for calls under way, not
    // for the connection to close.
    let result = tokio::select! {
        result = &mut server => result,
        () = shutdown => {
            stop.notify_one();
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::info!("connections still open after the grace period; exiting");
                    Ok(())
                }
            }
        }
    };
    let _ = std::fs::remove_file(&config.socket);
    result?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_unix_urls() {
        assert_eq!(
            socket_path("unix:///csi/csi.sock").unwrap(),
            Path::new("/csi/csi.sock")
        );
        assert_eq!(
            socket_path("unix:/csi/csi.sock").unwrap(),
            Path::new("/csi/csi.sock")
        );
        for bad in [
            "/csi/csi.sock",
            "tcp://0.0.0.0:10000",
            "unix://csi.sock",
            "",
        ] {
            let err = socket_path(bad).unwrap_err().to_string();
            assert!(err.contains("--endpoint"), "{err}");
        }
    }
}
