//! FileSystem reconciler: finalizer, ids, endpoint, the NFS server's core
//! objects ([`desired`], applied by [`server`]), phase, conditions and
//! Events. Under `--only-custom-resources` the core objects are left out
//! and `BackingStorageReady`, `ServerReady` (and for an encrypted file
//! system `EncryptionReady`) are read from the status, where another writer
//! reports them.

pub mod desired;
pub mod encryption;
pub mod expansion;
pub mod monitoring;
pub mod server;
pub mod settings;
pub mod status;
pub mod tls;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, Resource, ResourceExt,
    api::ListParams,
    runtime::{
        controller::Action,
        finalizer::{Event, finalizer},
    },
};
use openefs_crds::{AccessPoint, FileSystem, FileSystemId, names, volume_handle::VolumeHandle};

use crate::{
    Context, CoreObjects, RESYNC, apply, apply::status_if_changed, error::Error, events, identity,
};
use status::Observed;

/// Name of the Service clients mount. The file system id rather than the
/// object's name: a FileSystem name is a DNS subdomain (up to 253 characters,
/// dots, leading digit), a Service name must be a DNS-1035 label, and the id
/// always is one (`fs-` + 17 hex digits) and cannot collide with a Service
/// the user created.
pub fn service_name(id: &FileSystemId) -> &str {
    id.as_str()
}

/// DNS name of the mount target, as resolvable inside the cluster.
pub fn endpoint(id: &FileSystemId, namespace: &str, cluster_domain: &str) -> String {
    format!("{}.{namespace}.svc.{cluster_domain}", service_name(id))
}

/// One reconcile of `fs`, inside the finalizer helper.
#[tracing::instrument(skip_all, fields(kind = "FileSystem", namespace = fs.namespace(), name = fs.name_any()))]
pub async fn reconcile(fs: Arc<FileSystem>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (namespace, _) = identity(&*fs, "FileSystem")?;
    let api: Api<FileSystem> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, names::FILESYSTEM_FINALIZER, fs, |event| async {
        match event {
            Event::Apply(fs) => {
                let (observed, deferred) = match &ctx.core {
                    Some(core) => apply_server(&fs, &ctx, core).await?,
                    None => (Observed::default(), None),
                };
                write_status(&api, &fs, &ctx, &observed).await?;
                // After the status: it tells what failed.
                match deferred {
                    Some(error) => Err(error),
                    None => Ok(Action::requeue(RESYNC)),
                }
            }
            Event::Cleanup(fs) => cleanup(&api, &fs, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::from(Box::new(e)))
}

/// Applies the server's core objects and judges them, then pushes the
/// runtime settings to a ready server, looks after its data key (when
/// encrypted) and grows its backing volume when the server reports it
/// filling. A failure to apply is also an Event on the FileSystem: it is
/// what `kubectl describe` shows when the server never appears. Besides
/// what was observed, returns an error to report after the status is
/// written (a failed key rotation, retried with backoff).
async fn apply_server(
    fs: &FileSystem,
    ctx: &Context,
    core: &CoreObjects,
) -> Result<(Observed, Option<Error>), Error> {
    let applied = async {
        let factory = desired::MetaFactory::new(fs)?;
        let dns_names = tls::dns_names(
            service_name(factory.id()),
            factory.namespace(),
            &ctx.cluster_domain,
        );
        let ca_bundle = tls::reconcile(&ctx.client, &factory, &dns_names).await?;
        let token = settings::ensure_token(&ctx.client, &factory).await?;
        let (namespace, name) = identity(fs, "FileSystem")?;
        let access_points = referencing_access_points(ctx, &namespace, &name).await?;
        let live_pvc = backing_pvc(&ctx.client, &factory).await?;
        let request = expansion::request(&fs.spec.backing_storage.initial_size, live_pvc.as_ref());
        let objects = desired::objects(fs, &access_points, &core.settings, Some(&request))?;
        let applied = server::apply(&ctx.client, &objects).await?;
        let pod = desired::pod_dns_name(factory.id(), factory.namespace(), &ctx.cluster_domain);
        let nfsd = settings::nfsd_settings(fs, &access_points);
        Ok::<_, Error>((applied, pod, token, nfsd, ca_bundle, access_points, factory))
    }
    .await;
    let reference = fs.object_ref(&());
    let (applied, pod, token, nfsd, ca_bundle, access_points, factory) = match applied {
        Ok(applied) => applied,
        Err(error) => {
            let event = events::failure(REASON_APPLY_FAILED, &error);
            events::publish(&core.recorder, &reference, vec![event]).await;
            return Err(error);
        }
    };
    apply_service_monitor(fs, ctx, core).await;
    let mut components = server::verdicts(&applied).to_vec();
    let serving = components
        .iter()
        .any(|v| v.type_ == status::SERVER_READY && v.status == crate::conditions::Status::True);
    let mut usage = None;
    let mut volume = None;
    if serving {
        let pushed = core
            .admin
            .push(settings::admin_endpoint(&pod), token.clone(), nfsd)
            .await;
        match &pushed {
            Ok(u) => {
                usage = Some(settings::usage(fs, u));
                volume = Some(expansion::Volume {
                    bytes_total: u.volume_bytes_total,
                    bytes_free: u.volume_bytes_free,
                });
                write_access_point_sizes(ctx, fs, &access_points, u).await;
            }
            Err(e) => tracing::warn!(error = %e, "settings not pushed to nfsd"),
        }
        components.push(settings::verdict(&pushed));
    } else {
        components.push(settings::waiting_verdict());
    }
    let rolling_out = server::rolling_out(&applied.stateful_set);
    let (encryption, deferred) = if fs.spec.encrypted {
        let observation = encryption::observe(
            &ctx.client,
            core.admin.as_ref(),
            &factory,
            (settings::admin_endpoint(&pod), token),
            serving,
        )
        .await;
        components.push(encryption::verdict(&observation));
        observe_encryption(fs, core, &reference, observation, rolling_out).await
    } else {
        (None, None)
    };
    let auto_expand = &fs.spec.backing_storage.auto_expand;
    let plan = expansion::plan(
        auto_expand,
        &expansion::Claim::of(&applied.backing_pvc),
        volume,
    );
    let outcome = expansion::expand(&ctx.client, plan, &applied.backing_pvc, |request| {
        Ok(desired::objects(fs, &access_points, &core.settings, Some(&request))?.backing_pvc)
    })
    .await;
    if let expansion::Outcome::Requested {
        from,
        to,
        used_percent,
    } = outcome
    {
        tracing::info!(from, to, used_percent, "backing volume expansion requested");
        let event = expansion::expanding_event(from, to, used_percent);
        events::publish(&core.recorder, &reference, vec![event]).await;
    }
    components.push(expansion::verdict(auto_expand, &outcome));
    let observed = Observed {
        components,
        usage,
        ca_bundle: Some(ca_bundle),
        rolling_out,
        encryption,
        ..Observed::default()
    };
    Ok((observed, deferred))
}

/// `status.encryption` from what nfsd reported, the rotation's Events, and
/// a failed rotation as an error. The data key is known to be wrapped by
/// the spec's kmsKey only when the pod runs the current template (no
/// rollout): an old pod still has the old key source.
async fn observe_encryption(
    fs: &FileSystem,
    core: &CoreObjects,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    observation: encryption::Observation,
    rolling_out: bool,
) -> (Option<openefs_crds::EncryptionStatus>, Option<Error>) {
    let encryption::Observation::Reported {
        encryption: reported,
        rotation,
    } = observation
    else {
        return (None, None);
    };
    events::publish(
        &core.recorder,
        reference,
        encryption::rotation_events(&rotation),
    )
    .await;
    let status = encryption::status(fs, &reported, !rolling_out);
    let error = match rotation {
        encryption::Rotation::Failed { to, error } => {
            identity(fs, "FileSystem")
                .ok()
                .map(|(namespace, name)| Error::RotateDataKey {
                    namespace,
                    name,
                    to,
                    source: Box::new(error),
                })
        }
        encryption::Rotation::NotNeeded | encryption::Rotation::Rotated { .. } => None,
    };
    (status, error)
}

/// The backing claim as stored, if it exists.
async fn backing_pvc(
    client: &kube::Client,
    factory: &desired::MetaFactory,
) -> Result<Option<PersistentVolumeClaim>, Error> {
    let name = desired::backing_pvc_name(factory.id());
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), factory.namespace())
        .get_opt(&name)
        .await
        .map_err(|source| Error::Read {
            what: format!("PersistentVolumeClaim {}/{name}", factory.namespace()),
            source: Box::new(source),
        })
}

/// Applies the server's ServiceMonitor where the kind exists. A failure
/// (the operator's role may predate the rule for it) is a warning and an
/// Event, not a failed reconcile: monitoring must not hold up serving.
async fn apply_service_monitor(fs: &FileSystem, ctx: &Context, core: &CoreObjects) {
    let Some(resource) = core.monitors.service_monitors(&ctx.client).await else {
        return;
    };
    let applied = match desired::service_monitor(fs) {
        Ok(monitor) => apply::dynamic(&ctx.client, &resource, &monitor).await,
        Err(e) => Err(e),
    };
    if let Err(error) = applied {
        tracing::warn!(%error, "ServiceMonitor not applied");
        let event = events::failure(REASON_APPLY_FAILED, &error);
        events::publish(&core.recorder, &fs.object_ref(&()), vec![event]).await;
    }
}

/// Writes each AccessPoint's metered size that nfsd reports differently
/// from its status. A failure is logged: sizes are figures, written again
/// at the next reconcile.
async fn write_access_point_sizes(
    ctx: &Context,
    fs: &FileSystem,
    access_points: &[AccessPoint],
    u: &openefs_admin_api::v1::Usage,
) {
    let Some(namespace) = fs.namespace() else {
        return;
    };
    let api: Api<AccessPoint> = Api::namespaced(ctx.client.clone(), &namespace);
    let now = Time(Timestamp::now());
    for (name, size) in settings::access_point_sizes(access_points, u, &now) {
        if let Err(e) = apply::metered_size(&api, (&namespace, &name), &size).await {
            tracing::warn!(error = %e, access_point = %name, "AccessPoint size not written");
        }
    }
}

/// Event reason when the server's core objects could not be applied.
pub const REASON_APPLY_FAILED: &str = "ApplyFailed";

/// Holds the deletion while AccessPoints reference the file system, or
/// (when the operator manages core objects) PersistentVolumes use it.
/// AccessPoint deletions trigger a new reconcile (the controller watches
/// them); volume deletions are seen at the next resync.
async fn cleanup(api: &Api<FileSystem>, fs: &FileSystem, ctx: &Context) -> Result<Action, Error> {
    let (namespace, name) = identity(fs, "FileSystem")?;
    let access_points: Vec<String> = referencing_access_points(ctx, &namespace, &name)
        .await?
        .iter()
        .map(|ap| ap.name_any())
        .collect();
    let volumes = match ctx.core {
        Some(_) => using_volumes(ctx, &namespace, &name).await?,
        None => Vec::new(),
    };
    write_status(
        api,
        fs,
        ctx,
        &Observed {
            blocking_access_points: access_points.clone(),
            blocking_volumes: volumes.clone(),
            ..Observed::default()
        },
    )
    .await?;
    if access_points.is_empty() && volumes.is_empty() {
        tracing::info!("nothing uses it any more; releasing the finalizer");
        Ok(Action::await_change())
    } else {
        Err(Error::DeletionBlocked {
            namespace,
            name,
            access_points,
            volumes,
        })
    }
}

/// Names of the PersistentVolumes of this driver whose handle names
/// FileSystem `namespace/name` (whole, a directory or an AccessPoint of
/// it), sorted. Released volumes count too: their data lives there.
async fn using_volumes(ctx: &Context, namespace: &str, name: &str) -> Result<Vec<String>, Error> {
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let list = pvs
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::Read {
            what: "PersistentVolumes".to_owned(),
            source: Box::new(source),
        })?;
    let mut names: Vec<String> = list
        .items
        .iter()
        .filter(|pv| {
            pv.spec
                .as_ref()
                .and_then(|s| s.csi.as_ref())
                .filter(|csi| csi.driver == names::CSI_DRIVER_NAME)
                .and_then(|csi| csi.volume_handle.parse::<VolumeHandle>().ok())
                .is_some_and(|h| h.namespace == namespace && h.file_system == name)
        })
        .map(|pv| pv.name_any())
        .collect();
    names.sort();
    Ok(names)
}

/// The AccessPoints in `namespace` that reference FileSystem `name`, sorted
/// by name. A live list, not the watch cache: a cache that has not yet seen
/// a new AccessPoint would let the FileSystem go from under it, or leave it
/// out of the server's settings.
pub(crate) async fn referencing_access_points(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Vec<AccessPoint>, Error> {
    let aps: Api<AccessPoint> = Api::namespaced(ctx.client.clone(), namespace);
    let list =
        aps.list(&ListParams::default())
            .await
            .map_err(|source| Error::ListAccessPoints {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source: Box::new(source),
            })?;
    let mut referencing: Vec<AccessPoint> = list
        .items
        .into_iter()
        .filter(|ap| ap.spec.file_system_ref.name == name)
        .collect();
    referencing.sort_by_key(|ap| ap.name_any());
    Ok(referencing)
}

async fn write_status(
    api: &Api<FileSystem>,
    fs: &FileSystem,
    ctx: &Context,
    observed: &Observed,
) -> Result<(), Error> {
    let (namespace, name) = identity(fs, "FileSystem")?;
    let id = FileSystemId::of(fs).map_err(|_| Error::IncompleteObject {
        kind: "FileSystem",
        field: "metadata.uid",
    })?;
    let endpoint = endpoint(&id, &namespace, &ctx.cluster_domain);
    let desired = status::desired(fs, id, endpoint, observed, &Time(Timestamp::now()));
    let patched = status_if_changed(
        api,
        (&namespace, &name),
        fs.status.as_ref(),
        &desired,
        &status::owned(&desired, observed),
    )
    .await?;
    events::publish_transitions(
        ctx.core.as_ref().map(|core| &core.recorder),
        patched,
        &fs.object_ref(&()),
        fs.status.as_ref().map(|s| s.conditions.as_slice()),
        &desired.conditions,
    )
    .await;
    tracing::debug!(status_patched = patched, phase = ?desired.phase, "reconciled");
    Ok(())
}

#[cfg(test)]
mod reconcile_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_is_the_service_dns_name() {
        let id: FileSystemId = "fs-0123456789abcdef0".parse().unwrap();
        assert_eq!(
            endpoint(&id, "team-a", "cluster.local"),
            "fs-0123456789abcdef0.team-a.svc.cluster.local"
        );
        assert_eq!(service_name(&id), "fs-0123456789abcdef0");
    }
}
