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
    Api, Resource, ResourceExt,
    runtime::{
        controller::Action,
        finalizer::{Event, finalizer},
    },
};
use openefs_crds::{AccessPoint, AccessPointId, FileSystem, names};

use crate::{Context, RESYNC, apply::status_if_changed, error::Error, events, identity};

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
    events::publish_transitions(
        ctx.core.as_ref().map(|core| &core.recorder),
        patched,
        &ap.object_ref(&()),
        ap.status.as_ref().map(|s| s.conditions.as_slice()),
        &desired.conditions,
    )
    .await;
    tracing::debug!(status_patched = patched, phase = ?desired.phase, "reconciled");
    Ok(())
}

#[cfg(test)]
mod tests {
    use kube::runtime::events::{Recorder, Reporter};
    use serde_json::json;

    use super::*;
    use crate::{CoreObjects, desired::OperatorSettings, fake_api::FakeApi};

    const NS: &str = "team-a";
    const AP: &str = "/apis/openefs.io/v1alpha1/namespaces/team-a/accesspoints/web";
    const FS: &str = "/apis/openefs.io/v1alpha1/namespaces/team-a/filesystems/shared";
    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/team-a/events";

    /// Settings pushes are the FileSystem reconciler's; this one never calls.
    struct NoAdmin;

    impl crate::filesystem::settings::AdminCalls for NoAdmin {
        fn push(
            &self,
            _: String,
            _: String,
            _: openefs_admin_api::v1::Settings,
        ) -> futures::future::BoxFuture<'static, Result<openefs_admin_api::v1::Usage, tonic::Status>>
        {
            unreachable!("the AccessPoint reconciler does not push settings")
        }
    }

    async fn run(api: &FakeApi, ctx: &Arc<Context>) {
        let ap: AccessPoint = serde_json::from_value(api.get(AP).unwrap()).unwrap();
        reconcile(Arc::new(ap), ctx.clone()).await.unwrap();
    }

    fn events(api: &FakeApi) -> Vec<String> {
        let mut seen: Vec<String> = api
            .list(EVENTS)
            .iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e["type"].as_str().unwrap(),
                    e["reason"].as_str().unwrap()
                )
            })
            .collect();
        seen.sort();
        seen
    }

    #[tokio::test]
    async fn readiness_transitions_become_events() {
        let (api, client) = FakeApi::new();
        api.insert(
            AP,
            json!({"apiVersion": "openefs.io/v1alpha1", "kind": "AccessPoint",
                   "metadata": {"name": "web", "namespace": NS, "generation": 1,
                                "uid": "0b9d3e41-2c6f-4a7e-9d10-5e8f7a6b4c3d",
                                "finalizers": [names::ACCESSPOINT_FINALIZER]},
                   "spec": {"fileSystemRef": {"name": "shared"}}}),
        );
        let ctx = Arc::new(Context {
            client: client.clone(),
            cluster_domain: "cluster.local".into(),
            metrics: Default::default(),
            core: Some(CoreObjects {
                settings: OperatorSettings::new("registry.example/openefs-nfsd:test"),
                recorder: Recorder::new(client, Reporter::from(names::FIELD_MANAGER)),
                admin: Arc::new(NoAdmin),
                monitors: Default::default(),
            }),
        });
        run(&api, &ctx).await;
        assert_eq!(events(&api), ["Warning:FileSystemNotFound"]);
        // Nothing changed: no new Event.
        run(&api, &ctx).await;
        assert_eq!(events(&api).len(), 1);

        api.insert(
            FS,
            json!({"apiVersion": "openefs.io/v1alpha1", "kind": "FileSystem",
                   "metadata": {"name": "shared", "namespace": NS, "generation": 1,
                                "uid": "6f3a1c2e-9b7d-4e21-8c55-0a1b2c3d4e5f"},
                   "spec": {},
                   "status": {"phase": "Available", "conditions": [{
                       "type": "Ready", "status": "True", "reason": "Available", "message": "",
                       "lastTransitionTime": "2026-11-30T00:00:00Z"}]}}),
        );
        run(&api, &ctx).await;
        assert_eq!(
            events(&api),
            ["Normal:Available", "Warning:FileSystemNotFound"]
        );
    }
}
