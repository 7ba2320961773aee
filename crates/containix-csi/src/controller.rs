//! The CSI Controller service, reduced to what a client that probes it anyway needs.
//!
//! containix-csi is node-only: GetPluginCapabilities does not advertise CONTROLLER_SERVICE, so
//! Kubernetes never calls this service (the CSIDriver offers ephemeral inline volumes only, and no
//! external-provisioner is deployed). Generic CSI clients do call it: csi-sanity's Node tests ask
//! ControllerGetCapabilities before every test and create volumes to publish. A containix volume
//! is nothing but its attributes, so "creating" one checks the parameters as volume attributes
//! against the node policy and hands them back as the volume context; nothing is stored, and
//! deleting is a no-op. ControllerGetCapabilities reports no capability (a single UNKNOWN entry:
//! csi-sanity v5.1.0 rejects an empty list).

use std::collections::BTreeMap;

use containix_core::request::policy::NodePolicy;
use containix_core::request::volume_attributes::VolumeAttributes;
use tonic::{Request, Response, Status};

use crate::error::NodeError;
use crate::proto::controller_server::Controller;
use crate::proto::controller_service_capability::{Rpc, Type as CapabilityType, rpc};
use crate::proto::volume_capability::AccessType;
use crate::proto::{
    ControllerGetCapabilitiesRequest, ControllerGetCapabilitiesResponse,
    ControllerServiceCapability, CreateVolumeRequest, CreateVolumeResponse, DeleteVolumeRequest,
    DeleteVolumeResponse, Volume,
};

/// The Controller service: volumes described by their attributes, checked against `policy`.
#[derive(Debug, Clone)]
pub struct ControllerService {
    policy: NodePolicy,
}

impl ControllerService {
    /// Checks volume parameters against `policy`.
    pub fn new(policy: NodePolicy) -> Self {
        Self { policy }
    }

    /// The volume a CreateVolume request describes: its name as the id, its parameters (checked
    /// as volume attributes) as the context. Pure, so the same request always gives the same
    /// volume, as the spec asks of a repeated CreateVolume.
    pub fn describe(&self, request: &CreateVolumeRequest) -> Result<Volume, NodeError> {
        if request.name.is_empty() {
            return Err(NodeError::MissingField { field: "name" });
        }
        if request.volume_capabilities.is_empty() {
            return Err(NodeError::MissingField {
                field: "volume_capabilities",
            });
        }
        if request
            .volume_capabilities
            .iter()
            .any(|capability| matches!(capability.access_type, Some(AccessType::Block(_))))
        {
            return Err(NodeError::InvalidField {
                field: "volume_capabilities",
                message: "block access is not supported; use a filesystem (mount) volume".into(),
            });
        }
        let parameters: BTreeMap<String, String> = request
            .parameters
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        VolumeAttributes::parse(&parameters)?.check_policy(&self.policy)?;
        Ok(Volume {
            capacity_bytes: 0,
            volume_id: request.name.clone(),
            volume_context: request.parameters.clone(),
        })
    }
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        request: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        let volume = self.describe(request.get_ref())?;
        Ok(Response::new(CreateVolumeResponse {
            volume: Some(volume),
        }))
    }

    /// Nothing was stored, so nothing is deleted; an unknown id is no error (the spec's
    /// idempotence rule).
    async fn delete_volume(
        &self,
        request: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        if request.get_ref().volume_id.is_empty() {
            return Err(NodeError::MissingField { field: "volume_id" }.into());
        }
        Ok(Response::new(DeleteVolumeResponse {}))
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities: vec![ControllerServiceCapability {
                r#type: Some(CapabilityType::Rpc(Rpc {
                    r#type: rpc::Type::Unknown.into(),
                })),
            }],
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tonic::Code;

    use super::*;
    use crate::proto::VolumeCapability;
    use crate::proto::volume_capability::{BlockVolume, MountVolume};

    fn request(name: &str, parameters: &[(&str, &str)], access: AccessType) -> CreateVolumeRequest {
        CreateVolumeRequest {
            name: name.to_owned(),
            volume_capabilities: vec![VolumeCapability {
                access_type: Some(access),
                access_mode: None,
            }],
            parameters: parameters
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>(),
            ..Default::default()
        }
    }

    #[test]
    fn a_volume_is_its_checked_parameters() {
        let controller = ControllerService::new(NodePolicy::default());
        let path = format!("/nix/store/{}-hello-1.0", "0".repeat(32));
        let mount = AccessType::Mount(MountVolume::default());
        let asked = request("pvc-1", &[("storePaths", &path)], mount.clone());
        let volume = controller.describe(&asked).unwrap();
        assert_eq!(volume.volume_id, "pvc-1");
        assert_eq!(volume.volume_context, asked.parameters);
        assert_eq!(controller.describe(&asked).unwrap(), volume, "idempotent");

        let code =
            |request: CreateVolumeRequest| Status::from(controller.describe(&request).unwrap_err());
        let bad = code(request("v", &[("flakeRef", "path:/etc")], mount.clone()));
        assert_eq!(bad.code(), Code::InvalidArgument);
        assert!(bad.message().contains("`flakeRef`"), "{bad}");
        let unnamed = code(request("", &[("storePaths", &path)], mount.clone()));
        assert_eq!(unnamed.message(), "containix: `name` is required");
        let block = code(request(
            "v",
            &[("storePaths", &path)],
            AccessType::Block(BlockVolume {}),
        ));
        assert_eq!(block.code(), Code::InvalidArgument);
        let no_capability = CreateVolumeRequest {
            volume_capabilities: vec![],
            ..asked
        };
        assert!(
            code(no_capability)
                .message()
                .contains("volume_capabilities")
        );
    }
}
