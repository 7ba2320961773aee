//! The CSI Identity service: who the plugin is and whether it is ready.

use std::path::PathBuf;
use std::time::Duration;

use containix_core::store::daemon::DaemonClient;
use tonic::{Request, Response, Status};

use crate::DRIVER_NAME;
use crate::proto::identity_server::Identity;
use crate::proto::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
    GetPluginInfoResponse, ProbeRequest, ProbeResponse,
};

/// How long Probe waits for the Nix daemon's handshake.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The Identity service.
#[derive(Debug, Clone)]
pub struct IdentityService {
    daemon_socket: PathBuf,
}

impl IdentityService {
    /// Reports ready while the Nix daemon at `daemon_socket` answers.
    pub fn new(daemon_socket: impl Into<PathBuf>) -> Self {
        Self {
            daemon_socket: daemon_socket.into(),
        }
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: DRIVER_NAME.to_owned(),
            vendor_version: containix_core::VERSION.to_owned(),
            manifest: Default::default(),
        }))
    }

    /// A node-only plugin: no controller service, no topology constraints.
    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: vec![],
        }))
    }

    /// Ready when the Nix daemon completes a handshake; not ready (not an error) otherwise, so
    /// the CO waits instead of restarting the plugin.
    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        let connect = DaemonClient::connect(&self.daemon_socket);
        let ready = match tokio::time::timeout(PROBE_TIMEOUT, connect).await {
            Ok(Ok(_)) => true,
            Ok(Err(error)) => {
                tracing::warn!(%error, "probe: the Nix daemon is unreachable");
                false
            }
            Err(_) => {
                tracing::warn!(socket = ?self.daemon_socket, "probe: the Nix daemon did not answer");
                false
            }
        };
        Ok(Response::new(ProbeResponse { ready: Some(ready) }))
    }
}
