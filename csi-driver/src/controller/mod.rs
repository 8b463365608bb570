//! The CSI Controller service: AccessPoint (or FileSystem) per volume,
//! through the Kubernetes API.

mod access_point;
pub mod error;
pub mod params;
pub mod plan;

use std::{collections::HashMap, sync::Arc, time::Duration};

use kube::Client;
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

use crate::{
    csi::{
        self, ControllerServiceCapability, VolumeCapability,
        controller_server::Controller,
        controller_service_capability::{Rpc, rpc::Type as RpcType},
        volume_capability::{AccessType, access_mode::Mode},
    },
    inflight::InFlight,
};
pub use access_point::context;
pub use error::ControllerError;

/// Settings of the controller service.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// How long CreateVolume waits for a created object to become ready.
    pub provision_timeout: Duration,
}

/// The Controller service.
#[derive(Clone)]
pub struct ControllerService {
    client: Client,
    config: ControllerConfig,
    in_flight: InFlight,
    // Serialises gid allocation per FileSystem inside this process; the
    // FileSystem's resourceVersion does it across replicas.
    fs_locks: Arc<std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

impl ControllerService {
    /// A controller service talking to the API server behind `client`.
    pub fn new(client: Client, config: ControllerConfig) -> Self {
        Self {
            client,
            config,
            in_flight: InFlight::default(),
            fs_locks: Arc::default(),
        }
    }

    fn fs_lock(&self, namespace: &str, name: &str) -> Arc<Mutex<()>> {
        let mut locks = self
            .fs_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(locks.entry(format!("{namespace}/{name}")).or_default())
    }
}

/// Filesystem types a volume can be asked for: ours is NFS, and "" means the
/// CO leaves it to the driver.
const FS_TYPES: [&str; 3] = ["", "nfs", "nfs4"];

/// Check volume capabilities: mount access with an NFS (or unspecified) fs
/// type and any known access mode; every mode works, the storage is shared.
pub fn check_capabilities(caps: &[VolumeCapability]) -> Result<(), ControllerError> {
    if caps.is_empty() {
        return Err(ControllerError::MissingField("volume_capabilities"));
    }
    for cap in caps {
        match &cap.access_type {
            Some(AccessType::Mount(m)) if FS_TYPES.contains(&m.fs_type.as_str()) => {}
            Some(AccessType::Mount(m)) => {
                return Err(ControllerError::Capability(format!(
                    "fs_type {:?}: openefs volumes are NFS (use \"\", \"nfs\" or \"nfs4\")",
                    m.fs_type
                )));
            }
            Some(AccessType::Block(_)) => {
                return Err(ControllerError::Capability(
                    "block access: openefs volumes are shared file systems, only mount access is supported".into(),
                ));
            }
            None => {
                return Err(ControllerError::MissingField(
                    "volume_capability.access_type",
                ));
            }
        }
        let mode = cap
            .access_mode
            .as_ref()
            .ok_or(ControllerError::MissingField(
                "volume_capability.access_mode",
            ))?;
        match Mode::try_from(mode.mode) {
            Ok(Mode::Unknown) | Err(_) => {
                return Err(ControllerError::Capability(format!(
                    "access mode {}",
                    mode.mode
                )));
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

fn capability(t: RpcType) -> ControllerServiceCapability {
    ControllerServiceCapability {
        r#type: Some(csi::controller_service_capability::Type::Rpc(Rpc {
            r#type: t.into(),
        })),
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Controller for ControllerService {
    #[tracing::instrument(skip_all, fields(method = "CreateVolume", volume = %request.get_ref().name))]
    async fn create_volume(
        &self,
        request: Request<csi::CreateVolumeRequest>,
    ) -> Reply<csi::CreateVolumeResponse> {
        let volume = self
            .create(request.into_inner())
            .await
            .inspect_err(|e| tracing::warn!(error = %e))?;
        tracing::info!(volume_id = %volume.volume_id, "volume ready");
        Ok(Response::new(csi::CreateVolumeResponse {
            volume: Some(volume),
        }))
    }

    #[tracing::instrument(skip_all, fields(method = "DeleteVolume", volume = %request.get_ref().volume_id))]
    async fn delete_volume(
        &self,
        request: Request<csi::DeleteVolumeRequest>,
    ) -> Reply<csi::DeleteVolumeResponse> {
        self.delete(&request.into_inner().volume_id)
            .await
            .inspect_err(|e| tracing::warn!(error = %e))?;
        Ok(Response::new(csi::DeleteVolumeResponse {}))
    }

    #[tracing::instrument(skip_all, fields(method = "ValidateVolumeCapabilities", volume = %request.get_ref().volume_id))]
    async fn validate_volume_capabilities(
        &self,
        request: Request<csi::ValidateVolumeCapabilitiesRequest>,
    ) -> Reply<csi::ValidateVolumeCapabilitiesResponse> {
        let req = request.into_inner();
        if req.volume_id.is_empty() {
            return Err(ControllerError::MissingField("volume_id").into());
        }
        if req.volume_capabilities.is_empty() {
            return Err(ControllerError::MissingField("volume_capabilities").into());
        }
        self.check_exists(&req.volume_id).await?;
        let reply = match check_capabilities(&req.volume_capabilities) {
            Ok(()) => csi::ValidateVolumeCapabilitiesResponse {
                confirmed: Some(csi::validate_volume_capabilities_response::Confirmed {
                    volume_context: req.volume_context,
                    volume_capabilities: req.volume_capabilities,
                    parameters: req.parameters,
                    mutable_parameters: req.mutable_parameters,
                }),
                message: String::new(),
            },
            Err(e) => csi::ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: e.to_string(),
            },
        };
        Ok(Response::new(reply))
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<csi::ControllerGetCapabilitiesRequest>,
    ) -> Reply<csi::ControllerGetCapabilitiesResponse> {
        Ok(Response::new(csi::ControllerGetCapabilitiesResponse {
            capabilities: vec![
                capability(RpcType::CreateDeleteVolume),
                capability(RpcType::ExpandVolume),
                capability(RpcType::SingleNodeMultiWriter),
            ],
        }))
    }

    #[tracing::instrument(skip_all, fields(method = "ControllerExpandVolume", volume = %request.get_ref().volume_id))]
    async fn controller_expand_volume(
        &self,
        request: Request<csi::ControllerExpandVolumeRequest>,
    ) -> Reply<csi::ControllerExpandVolumeResponse> {
        let req = request.into_inner();
        let capacity_bytes = self
            .expand(&req.volume_id, req.capacity_range.as_ref())
            .await
            .inspect_err(|e| tracing::warn!(error = %e))?;
        Ok(Response::new(csi::ControllerExpandVolumeResponse {
            capacity_bytes,
            node_expansion_required: false,
        }))
    }

    async fn controller_publish_volume(
        &self,
        _: Request<csi::ControllerPublishVolumeRequest>,
    ) -> Reply<csi::ControllerPublishVolumeResponse> {
        Err(Status::unimplemented(
            "ControllerPublishVolume: NFS volumes need no attach step",
        ))
    }

    async fn controller_unpublish_volume(
        &self,
        _: Request<csi::ControllerUnpublishVolumeRequest>,
    ) -> Reply<csi::ControllerUnpublishVolumeResponse> {
        Err(Status::unimplemented(
            "ControllerUnpublishVolume: NFS volumes need no attach step",
        ))
    }

    async fn list_volumes(
        &self,
        _: Request<csi::ListVolumesRequest>,
    ) -> Reply<csi::ListVolumesResponse> {
        Err(Status::unimplemented("ListVolumes is not supported"))
    }

    async fn get_capacity(
        &self,
        _: Request<csi::GetCapacityRequest>,
    ) -> Reply<csi::GetCapacityResponse> {
        Err(Status::unimplemented(
            "GetCapacity is not supported: file systems are elastic",
        ))
    }

    async fn create_snapshot(
        &self,
        _: Request<csi::CreateSnapshotRequest>,
    ) -> Reply<csi::CreateSnapshotResponse> {
        Err(Status::unimplemented("snapshots are not supported"))
    }

    async fn delete_snapshot(
        &self,
        _: Request<csi::DeleteSnapshotRequest>,
    ) -> Reply<csi::DeleteSnapshotResponse> {
        Err(Status::unimplemented("snapshots are not supported"))
    }

    async fn list_snapshots(
        &self,
        _: Request<csi::ListSnapshotsRequest>,
    ) -> Reply<csi::ListSnapshotsResponse> {
        Err(Status::unimplemented("snapshots are not supported"))
    }

    async fn controller_get_volume(
        &self,
        _: Request<csi::ControllerGetVolumeRequest>,
    ) -> Reply<csi::ControllerGetVolumeResponse> {
        Err(Status::unimplemented(
            "ControllerGetVolume is not supported",
        ))
    }

    async fn controller_modify_volume(
        &self,
        _: Request<csi::ControllerModifyVolumeRequest>,
    ) -> Reply<csi::ControllerModifyVolumeResponse> {
        Err(Status::unimplemented(
            "ControllerModifyVolume is not supported",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use csi::volume_capability::{AccessMode, BlockVolume, MountVolume};

    fn mount(fs_type: &str, mode: Mode) -> VolumeCapability {
        VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume {
                fs_type: fs_type.into(),
                ..Default::default()
            })),
            access_mode: Some(AccessMode { mode: mode.into() }),
        }
    }

    #[test]
    fn capabilities() {
        assert!(
            check_capabilities(&[
                mount("", Mode::MultiNodeMultiWriter),
                mount("nfs4", Mode::SingleNodeWriter)
            ])
            .is_ok()
        );
        assert!(matches!(
            check_capabilities(&[]),
            Err(ControllerError::MissingField(_))
        ));
        assert!(check_capabilities(&[mount("ext4", Mode::MultiNodeMultiWriter)]).is_err());
        assert!(check_capabilities(&[mount("", Mode::Unknown)]).is_err());
        let block = VolumeCapability {
            access_type: Some(AccessType::Block(BlockVolume {})),
            access_mode: Some(AccessMode {
                mode: Mode::MultiNodeMultiWriter.into(),
            }),
        };
        let err = check_capabilities(&[block]).unwrap_err();
        assert!(err.to_string().contains("block"), "{err}");
        let no_mode = VolumeCapability {
            access_mode: None,
            ..mount("", Mode::SingleNodeWriter)
        };
        assert!(check_capabilities(&[no_mode]).is_err());
    }
}
