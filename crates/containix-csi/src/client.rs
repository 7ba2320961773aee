//! A CSI client over a Unix socket, for tests and tools (the kubelet has its own).

use std::path::Path;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::proto::controller_client::ControllerClient;
use crate::proto::identity_client::IdentityClient;
use crate::proto::node_client::NodeClient;

/// The Identity, Controller and Node clients of one connection.
#[derive(Debug, Clone)]
pub struct CsiClient {
    /// The Identity service.
    pub identity: IdentityClient<Channel>,
    /// The Controller service (not advertised; see [`crate::controller`]).
    pub controller: ControllerClient<Channel>,
    /// The Node service.
    pub node: NodeClient<Channel>,
}

/// Connects to a plugin listening on the Unix socket `socket`.
pub async fn connect(socket: &Path) -> Result<CsiClient, tonic::transport::Error> {
    let path = socket.to_owned();
    // The URI is required by the API but unused: every connection goes to `path`.
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await?;
    Ok(CsiClient {
        identity: IdentityClient::new(channel.clone()),
        controller: ControllerClient::new(channel.clone()),
        node: NodeClient::new(channel),
    })
}
