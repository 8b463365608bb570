//! The CSI Identity service.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use tonic::{Request, Response, Status};

use crate::csi::{
    self, PluginCapability,
    identity_server::Identity,
    plugin_capability::{self, service::Type as ServiceType},
};

/// A readiness check: `Ok(())` once the plugin's dependencies answer.
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The Identity service of one plugin process.
#[derive(Clone)]
pub struct IdentityService {
    controller: bool,
    check: ReadinessCheck,
    // Once ready, stays ready: Probe is a liveness-style signal for the CO,
    // and later API hiccups surface as errors of the RPCs themselves.
    ready: Arc<AtomicBool>,
}

impl IdentityService {
    /// Identity of a plugin that serves the controller service when
    /// `controller` is set; Probe reports ready once `check` succeeds.
    pub fn new(controller: bool, check: ReadinessCheck) -> Self {
        Self {
            controller,
            check,
            ready: Arc::default(),
        }
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _: Request<csi::GetPluginInfoRequest>,
    ) -> Result<Response<csi::GetPluginInfoResponse>, Status> {
        Ok(Response::new(csi::GetPluginInfoResponse {
            name: openefs_crds::names::CSI_DRIVER_NAME.to_owned(),
            vendor_version: env!("CARGO_PKG_VERSION").to_owned(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<csi::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<csi::GetPluginCapabilitiesResponse>, Status> {
        let service = |t: ServiceType| PluginCapability {
            r#type: Some(plugin_capability::Type::Service(
                plugin_capability::Service { r#type: t.into() },
            )),
        };
        let expansion = PluginCapability {
            r#type: Some(plugin_capability::Type::VolumeExpansion(
                plugin_capability::VolumeExpansion {
                    r#type: plugin_capability::volume_expansion::Type::Online.into(),
                },
            )),
        };
        let capabilities = if self.controller {
            vec![service(ServiceType::ControllerService), expansion]
        } else {
            Vec::new()
        };
        Ok(Response::new(csi::GetPluginCapabilitiesResponse {
            capabilities,
        }))
    }

    async fn probe(
        &self,
        _: Request<csi::ProbeRequest>,
    ) -> Result<Response<csi::ProbeResponse>, Status> {
        if !self.ready.load(Ordering::Acquire) {
            match (self.check)().await {
                Ok(()) => self.ready.store(true, Ordering::Release),
                Err(e) => tracing::info!(reason = %e, "probe: not ready yet"),
            }
        }
        Ok(Response::new(csi::ProbeResponse {
            ready: Some(self.ready.load(Ordering::Acquire)),
        }))
    }
}
