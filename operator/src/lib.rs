//! The openefs operator's reconcilers.
//!
//! A FileSystem becomes core objects ([`desired`]: backing PVC, Services,
//! an nfsd StatefulSet, a PodDisruptionBudget, a ServiceMonitor where the
//! kind exists), applied by server-side apply on every reconcile, and a
//! status judged from what they report; its backing PVC grows as it fills. Under
//! `--only-custom-resources` (an API server that serves only CRDs) only the
//! custom-resource side runs: finalizers, ids, endpoint, phase, conditions
//! and observedGeneration. See docs/operator.md.

mod accesspoint;
mod apply;
pub mod conditions;
mod error;
mod events;
#[cfg(test)]
mod fake_api;
mod filesystem;
pub mod leader;
pub mod metrics;

use std::{fmt::Debug, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Service, policy::v1::PodDisruptionBudget};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        Controller,
        controller::Action,
        events::{Recorder, Reporter},
        reflector::ObjectRef,
        watcher,
    },
};
use openefs_crds::{AccessPoint, FileSystem, names};

pub use accesspoint::status as accesspoint_status;
pub use error::{Error, Retry};
pub use filesystem::{
    desired, endpoint, server as filesystem_server, service_name, status as filesystem_status,
};

/// How often an object is reconciled without any change, to repair what a
/// missed watch event would leave stale.
const RESYNC: Duration = Duration::from_secs(300);
/// Pause before retrying after a transient error.
const BACKOFF: Duration = Duration::from_secs(5);

/// What the reconcilers need.
pub struct Context {
    client: Client,
    cluster_domain: String,
    /// `None` under `--only-custom-resources`.
    core: Option<CoreObjects>,
    metrics: Arc<metrics::Metrics>,
}

/// What managing the file systems' core objects needs.
struct CoreObjects {
    settings: desired::OperatorSettings,
    recorder: Recorder,
    /// How nfsd's admin API is called (the network, or a test's stand-in).
    admin: Arc<dyn filesystem::settings::AdminCalls>,
    /// Whether the cluster serves ServiceMonitors, as last discovered.
    monitors: filesystem::monitoring::Discovery,
}

/// Settings of [`run`].
#[derive(Debug, Clone)]
pub struct Config {
    /// DNS domain of the cluster, for the endpoint (`cluster.local`).
    pub cluster_domain: String,
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// How each FileSystem's NFS server is built; `None` to reconcile only
    /// the custom resources (no core kinds are read or written, no Events).
    pub core_objects: Option<desired::OperatorSettings>,
    /// Reconcile only while holding this Lease; `None` for a single replica.
    pub leader_election: Option<leader::Config>,
}

/// Why [`run`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM or SIGINT; running reconciles finished.
    Signal,
    /// The leader Lease was lost (the reason); another replica may lead.
    LostLeadership(String),
}

/// Resolves on the first SIGTERM or SIGINT (or at once if the handlers
/// cannot be installed, so that the process does not run unstoppable).
async fn signalled() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = int.recv() => tracing::info!("SIGINT: stopping"),
            }
        }
        _ => tracing::error!("cannot install signal handlers; stopping"),
    }
}

/// Runs the FileSystem and AccessPoint controllers until SIGTERM or SIGINT
/// (running reconciles finish) or, with leader election, until the Lease is
/// lost. A standby replica waits for the Lease and reports ready meanwhile:
/// it is healthy, and a rolling update must be able to start it before the
/// leader goes.
pub async fn run(client: Client, config: Config, metrics: Arc<metrics::Metrics>) -> Stopped {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        signalled().await;
        on_signal.cancel();
    });
    let election = config.leader_election.clone();
    let lost = Arc::new(std::sync::Mutex::new(None::<String>));
    if let Some(election) = &election {
        metrics.set_ready(true);
        tokio::select! {
            () = leader::acquire(&client, election) => {}
            () = shutdown.cancelled() => return Stopped::Signal,
        }
        metrics.set_ready(false);
        let (client, election, shutdown, lost) = (
            client.clone(),
            election.clone(),
            shutdown.clone(),
            lost.clone(),
        );
        tokio::spawn(async move {
            tokio::select! {
                why = leader::hold(&client, &election) => {
                    tracing::error!(reason = %why, "lost the leader Lease; stopping");
                    *lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                    shutdown.cancel();
                }
                () = shutdown.cancelled() => {}
            }
        });
    }
    run_controllers(client.clone(), config, metrics, shutdown).await;
    let lost = lost.lock().unwrap_or_else(|p| p.into_inner()).take();
    match (lost, election) {
        (Some(why), _) => Stopped::LostLeadership(why),
        (None, Some(election)) => {
            leader::release(&client, &election).await;
            Stopped::Signal
        }
        (None, None) => Stopped::Signal,
    }
}

/// Runs both controllers until `shutdown`, then lets running reconciles
/// finish.
async fn run_controllers(
    client: Client,
    config: Config,
    metrics: Arc<metrics::Metrics>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let core_objects = config.core_objects.is_some();
    let ctx = Arc::new(Context {
        client: client.clone(),
        cluster_domain: config.cluster_domain,
        metrics: metrics.clone(),
        core: config.core_objects.map(|settings| CoreObjects {
            settings,
            recorder: Recorder::new(client.clone(), Reporter::from(names::FIELD_MANAGER)),
            admin: Arc::new(filesystem::settings::GrpcAdmin),
            monitors: Default::default(),
        }),
    });
    fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let namespace = config.namespace.as_deref();
    let fs_api: Api<FileSystem> = scoped(&client, namespace);
    let ap_api: Api<AccessPoint> = scoped(&client, namespace);
    let wc = watcher::Config::default();

    // A FileSystem waits on its AccessPoints when deleted.
    let mut fs_controller = Controller::new(fs_api.clone(), wc.clone()).watches(
        ap_api.clone(),
        wc.clone(),
        |ap: AccessPoint| {
            ap.namespace()
                .map(|ns| ObjectRef::<FileSystem>::new(&ap.spec.file_system_ref.name).within(&ns))
        },
    );
    if core_objects {
        // A deleted or edited object is re-applied at once, not at the next
        // resync. The retained backing PVC has no owner reference; the
        // resync covers it.
        let owned = watcher::Config::default().labels(&format!(
            "{}={}",
            names::LABEL_MANAGED_BY,
            names::MANAGED_BY
        ));
        fs_controller = fs_controller
            .owns(scoped::<StatefulSet>(&client, namespace), owned.clone())
            .owns(scoped::<Service>(&client, namespace), owned.clone())
            .owns(scoped::<PodDisruptionBudget>(&client, namespace), owned);
    }
    let fs_store = fs_controller.store();
    let file_systems = fs_controller
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(
            |fs, ctx: Arc<Context>| {
                measured("FileSystem", ctx.clone(), filesystem::reconcile(fs, ctx))
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(log_result);

    // An AccessPoint is Ready when its FileSystem is Available.
    let ap_controller = Controller::new(ap_api, wc.clone());
    let aps = ap_controller.store();
    let ap_store = aps.clone();
    let access_points = ap_controller
        .watches(fs_api, wc, move |fs: FileSystem| {
            let (ns, name) = (fs.namespace(), fs.name_any());
            aps.state()
                .into_iter()
                .filter(|ap| ap.namespace() == ns && ap.spec.file_system_ref.name == name)
                .map(|ap| ObjectRef::from_obj(&*ap))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(
            |ap, ctx: Arc<Context>| {
                measured("AccessPoint", ctx.clone(), accesspoint::reconcile(ap, ctx))
            },
            error_policy,
            ctx,
        )
        .for_each(log_result);
    let readiness = async move {
        // Ready once both caches hold a full list; a store's writer is only
        // dropped when its controller stopped, which ends readiness anyway.
        if fs_store.wait_until_ready().await.is_ok() && ap_store.wait_until_ready().await.is_ok() {
            tracing::info!("caches filled; ready");
            metrics.set_ready(true);
        }
    };

    if core_objects {
        tracing::info!("reconciling FileSystems (with their NFS servers) and AccessPoints");
    } else {
        tracing::info!("reconciling FileSystems and AccessPoints (custom-resource side only)");
    }
    futures::join!(file_systems, access_points, readiness);
    tracing::info!("controllers stopped");
}

/// Runs one reconcile and records its outcome and duration.
async fn measured(
    kind: &'static str,
    ctx: Arc<Context>,
    reconcile: impl std::future::Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile.await;
    ctx.metrics
        .reconciled(kind, result.as_ref().map(|_| ()), started.elapsed());
    result
}

fn error_policy<K: Resource>(obj: Arc<K>, error: &Error, _: Arc<Context>) -> Action {
    let (namespace, name) = (obj.meta().namespace.as_deref(), obj.meta().name.as_deref());
    match error.retry() {
        Retry::Backoff => {
            tracing::warn!(namespace, name, category = error.category(), %error, "reconcile failed; retrying");
            Action::requeue(BACKOFF)
        }
        Retry::WaitForChange => {
            tracing::info!(namespace, name, category = error.category(), %error, "waiting for a change");
            Action::requeue(RESYNC)
        }
    }
}

async fn log_result<K: Resource, E: std::error::Error>(
    result: Result<(ObjectRef<K>, Action), kube::runtime::controller::Error<Error, E>>,
) where
    K::DynamicType: Debug,
{
    use kube::runtime::controller::Error as ControllerError;
    match result {
        Ok(_) | Err(ControllerError::ReconcilerFailed(..)) => {} // error_policy logged it.
        Err(ControllerError::ObjectNotFound(obj)) => {
            tracing::debug!(%obj, "object gone before its reconcile");
        }
        Err(error) => tracing::warn!(%error, "controller"),
    }
}

/// Namespace and name of a stored object.
fn identity<K: Resource>(obj: &K, kind: &'static str) -> Result<(String, String), Error> {
    let meta = obj.meta();
    let field = |field| Error::IncompleteObject { kind, field };
    Ok((
        meta.namespace.clone().ok_or(field("metadata.namespace"))?,
        meta.name.clone().ok_or(field("metadata.name"))?,
    ))
}
