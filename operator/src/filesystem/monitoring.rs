//! The per-server ServiceMonitor ([`super::desired::service_monitor`]),
//! applied only where the Prometheus Operator's CRD is installed. Whether
//! it is, is asked of the API server's discovery and remembered for
//! [`RECHECK`], so that a cluster gaining (or losing) the CRD is noticed
//! without a discovery request per reconcile.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::{
    Client,
    api::{ApiResource, GroupVersionKind},
};

use super::desired::SERVICE_MONITOR_GVK;

/// How long a discovery answer is trusted.
pub const RECHECK: Duration = Duration::from_secs(300);

/// Whether the ServiceMonitor kind exists, as last discovered.
#[derive(Debug, Default)]
pub struct Discovery {
    /// When it was last asked, and the answer.
    last: Mutex<Option<(Instant, Option<ApiResource>)>>,
}

impl Discovery {
    /// The ServiceMonitor kind, or `None` when the cluster does not serve
    /// it. A failed discovery (other than "not served") counts as absent
    /// for this reconcile and is asked again at the next.
    pub async fn service_monitors(&self, client: &Client) -> Option<ApiResource> {
        if let Some((at, answer)) = self.lock().as_ref()
            && at.elapsed() < RECHECK
        {
            return answer.clone();
        }
        let (group, version, kind) = SERVICE_MONITOR_GVK;
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let answer = match kube::discovery::pinned_kind(client, &gvk).await {
            Ok((resource, _)) => Some(resource),
            Err(e) if not_served(&e) => {
                tracing::debug!("no {group}/{version} {kind} in this cluster; none applied");
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "discovering {group}/{version} {kind} failed; none applied this time");
                return None;
            }
        };
        *self.lock() = Some((Instant::now(), answer.clone()));
        answer
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Option<ApiResource>)>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The group version is not served (404), or is served without the kind.
fn not_served(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 404,
        kube::Error::Discovery(_) => true,
        _ => false,
    }
}
