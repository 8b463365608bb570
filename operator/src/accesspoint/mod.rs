//! AccessPoint reconciler, custom-resource side: finalizer, id, phase and the
//! `Ready` condition from the referenced FileSystem. The access point reaches
//! the file system's server through the FileSystem reconciler, which watches
//! AccessPoints and pushes all of a file system's to its nfsd
//! (`filesystem::settings`); a deleted one is left out of that push, so the
//! finalizer's cleanup has nothing of its own to remove (the root directory
//! and its data stay, as with EFS).

pub mod status;

use std::sync::Arc;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, ResourceExt,
    runtime::{
        controller::Action,
        finalizer::{Event, finalizer},
    },
};
use openefs_crds::{AccessPoint, AccessPointId, FileSystem, names};

use crate::{Context, RESYNC, apply::status_if_changed, error::Error, identity};

/// One reconcile of `ap`, inside the finalizer helper.
#[tracing::instrument(skip_all, fields(kind = "AccessPoint", namespace = ap.namespace(), name = ap.name_any()))]
pub async fn reconcile(ap: Arc<AccessPoint>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (namespace, _) = identity(&*ap, "AccessPoint")?;
    let api: Api<AccessPoint> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, names::ACCESSPOINT_FINALIZER, ap, |event| async {
        match event {
            Event::Apply(ap) => {
                write_status(&api, &ap, &ctx).await?;
                Ok(Action::requeue(RESYNC))
            }
            Event::Cleanup(_) => Ok(Action::await_change()),
        }
    })
    .await
    .map_err(|e| Error::from(Box::new(e)))
}

async fn write_status(
    api: &Api<AccessPoint>,
    ap: &AccessPoint,
    ctx: &Context,
) -> Result<(), Error> {
    let (namespace, name) = identity(ap, "AccessPoint")?;
    let id = AccessPointId::of(ap).map_err(|_| Error::IncompleteObject {
        kind: "AccessPoint",
        field: "metadata.uid",
    })?;
    let fs_name = &ap.spec.file_system_ref.name;
    let fs = Api::<FileSystem>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(fs_name)
        .await
        .map_err(|source| Error::GetFileSystem {
            namespace: namespace.clone(),
            name: fs_name.clone(),
            source: Box::new(source),
        })?;
    let desired = status::desired(ap, id, fs.as_ref(), &Time(Timestamp::now()));
    let patched = status_if_changed(
        api,
        (&namespace, &name),
        ap.status.as_ref(),
        &desired,
        &status::owned(&desired),
    )
    .await?;
    tracing::debug!(status_patched = patched, phase = ?desired.phase, "reconciled");
    Ok(())
}
