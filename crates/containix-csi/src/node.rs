//! The CSI Node service: ephemeral inline volumes published from Nix closures.

use std::path::PathBuf;
use std::sync::Arc;

use containix_core::node::process_heap::give_back_free_pages;
use tonic::{Request, Response, Status};

use crate::closure_source::ClosureSource;
use crate::error::NodeError;
use crate::proto::node_server::Node;
use crate::proto::node_service_capability::{Rpc, rpc};
use crate::proto::volume_capability::AccessType;
use crate::proto::volume_usage::Unit;
use crate::proto::{
    NodeExpandVolumeRequest, NodeExpandVolumeResponse, NodeGetCapabilitiesRequest,
    NodeGetCapabilitiesResponse, NodeGetInfoRequest, NodeGetInfoResponse,
    NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse, NodePublishVolumeRequest,
    NodePublishVolumeResponse, NodeServiceCapability, NodeStageVolumeRequest,
    NodeStageVolumeResponse, NodeUnpublishVolumeRequest, NodeUnpublishVolumeResponse,
    NodeUnstageVolumeRequest, NodeUnstageVolumeResponse, VolumeUsage, node_service_capability,
};
use crate::publish::{PublishRequest, Publisher};

/// The Node service.
pub struct NodeService<S> {
    node_id: String,
    publisher: Arc<Publisher<S>>,
}

impl<S: ClosureSource> NodeService<S> {
    /// Serves `publisher` on the node called `node_id`.
    pub fn new(node_id: String, publisher: Arc<Publisher<S>>) -> Self {
        Self { node_id, publisher }
    }
}

fn required(field: &'static str, value: &str) -> Result<(), NodeError> {
    if value.is_empty() {
        Err(NodeError::MissingField { field })
    } else {
        Ok(())
    }
}

fn absolute(field: &'static str, value: &str) -> Result<PathBuf, NodeError> {
    required(field, value)?;
    let path = PathBuf::from(value);
    if !path.is_absolute() {
        return Err(NodeError::InvalidField {
            field,
            message: format!("{value:?} is not an absolute path"),
        });
    }
    Ok(path)
}

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "containix: {rpc} is not supported; containix-csi publishes ephemeral inline volumes only"
    ))
}

#[tonic::async_trait]
impl<S: ClosureSource> Node for NodeService<S> {
    async fn node_stage_volume(
        &self,
        _: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        Err(unimplemented("NodeStageVolume"))
    }

    async fn node_unstage_volume(
        &self,
        _: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        Err(unimplemented("NodeUnstageVolume"))
    }

    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let request = request.into_inner();
        required("volume_id", &request.volume_id)?;
        let target_path = absolute("target_path", &request.target_path)?;
        let capability = request.volume_capability.ok_or(NodeError::MissingField {
            field: "volume_capability",
        })?;
        if let Some(AccessType::Block(_)) = capability.access_type {
            return Err(NodeError::InvalidField {
                field: "volume_capability",
                message: "block access is not supported; use a filesystem (mount) volume".into(),
            }
            .into());
        }
        let publish = PublishRequest {
            volume_id: request.volume_id,
            target_path,
            readonly: request.readonly,
            attributes: request.volume_context.into_iter().collect(),
        };
        let published = self.publisher.publish(&publish).await;
        // Publishing parsed a closure: what it freed need not stay resident.
        give_back_free_pages();
        published?;
        Ok(Response::new(NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let request = request.into_inner();
        required("volume_id", &request.volume_id)?;
        let target_path = absolute("target_path", &request.target_path)?;
        let unpublished = self
            .publisher
            .unpublish(&request.volume_id, &target_path)
            .await;
        give_back_free_pages();
        unpublished?;
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        let request = request.into_inner();
        required("volume_id", &request.volume_id)?;
        required("volume_path", &request.volume_path)?;
        // A relative path is no path a volume is published at: NotFound, as for any other
        // path the volume is not at (what the spec and csi-sanity ask).
        let volume_path = PathBuf::from(&request.volume_path);
        let usage = self.publisher.usage(&request.volume_id, &volume_path)?;
        let bytes = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        Ok(Response::new(NodeGetVolumeStatsResponse {
            usage: vec![VolumeUsage {
                available: bytes(usage.available),
                total: bytes(usage.total),
                used: bytes(usage.used),
                unit: Unit::Bytes.into(),
            }],
            volume_condition: None,
        }))
    }

    async fn node_expand_volume(
        &self,
        _: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        Err(unimplemented("NodeExpandVolume"))
    }

    /// Only what is implemented: volume stats. No staging, no expansion.
    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        let capability = |kind: rpc::Type| NodeServiceCapability {
            r#type: Some(node_service_capability::Type::Rpc(Rpc {
                r#type: kind.into(),
            })),
        };
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: vec![capability(rpc::Type::GetVolumeStats)],
        }))
    }

    async fn node_get_info(
        &self,
        _: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        }))
    }
}
