//! AccessPoint reconciler, custom-resource side: finalizer, id, phase and the
//! `Ready` condition from the referenced FileSystem. The access point reaches
//! the file system's server through the FileSystem reconciler, which watches
//! AccessPoints and pushes all of a file system's to its nfsd
//! (`filesystem::settings`); a deleted one is left out of that push. The
//! finalizer's cleanup removes the root directory and its data only when
//! `rootDirectory.deletionPolicy` is Delete (otherwise they stay, as with
//! EFS).

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
use openefs_crds::{AccessPoint, AccessPointId, FileSystem, RootDirectoryDeletionPolicy, names};

use crate::filesystem::{desired, desired::MetaFactory, settings};
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
            Event::Cleanup(ap) => {
                if ap.spec.root_directory.deletion_policy == RootDirectoryDeletionPolicy::Delete {
                    delete_root_directory(&ap, &ctx).await?;
                }
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::from(Box::new(e)))
}

pub const REASON_ROOT_DIRECTORY_DELETED: &str = "RootDirectoryDeleted";
pub const REASON_ROOT_DIRECTORY_KEPT: &str = "RootDirectoryKept";
pub const REASON_ROOT_DIRECTORY_NOT_DELETED: &str = "RootDirectoryNotDeleted";

/// Deletes the root directory of an AccessPoint being deleted, through its
/// file system's nfsd. The FileSystem reconciler stops serving the access
/// point first (it watches AccessPoints); until it has, nfsd refuses and the
/// finalizer retries. Data another AccessPoint of the file system serves
/// (the same directory, one above or below) is kept, with a Warning Event.
/// Without a FileSystem, or without core objects to reach nfsd, there is
/// nothing to delete through.
async fn delete_root_directory(ap: &AccessPoint, ctx: &Context) -> Result<(), Error> {
    let (namespace, name) = identity(ap, "AccessPoint")?;
    let path = &ap.spec.root_directory.path;
    let Some(core) = &ctx.core else {
        tracing::warn!(%path, "root directory kept: no core objects are managed, nfsd is not reachable");
        return Ok(());
    };
    let fs_name = &ap.spec.file_system_ref.name;
    let Some(fs) = file_system(ctx, &namespace, fs_name).await? else {
        tracing::info!(%path, file_system = %fs_name, "root directory not deleted: the FileSystem is gone");
        return Ok(());
    };
    let reference = ap.object_ref(&());
    let others = crate::filesystem::referencing_access_points(ctx, &namespace, fs_name).await?;
    if let Some(other) = others.iter().find(|other| {
        other.metadata.uid != ap.metadata.uid
            && other.spec.root_directory.overlaps(&ap.spec.root_directory)
    }) {
        let note = format!(
            "root directory {path} kept: AccessPoint {} uses {}",
            other.name_any(),
            other.spec.root_directory.path
        );
        tracing::warn!("{note}");
        events::publish(
            &core.recorder,
            &reference,
            vec![events::warning(REASON_ROOT_DIRECTORY_KEPT, note)],
        )
        .await;
        return Ok(());
    }
    let factory = MetaFactory::new(&fs)?;
    let token = settings::ensure_token(&ctx.client, &factory).await?;
    let pod = desired::pod_dns_name(factory.id(), factory.namespace(), &ctx.cluster_domain);
    match core
        .admin
        .delete_root(settings::admin_endpoint(&pod), token, path.clone())
        .await
    {
        Ok(removed) => {
            let note = format!(
                "deleted root directory {path}: {} objects, {} metered bytes",
                removed.objects_removed, removed.metered_bytes_removed
            );
            tracing::info!("{note}");
            events::publish(
                &core.recorder,
                &reference,
                vec![events::normal(REASON_ROOT_DIRECTORY_DELETED, note)],
            )
            .await;
            Ok(())
        }
        Err(status) => {
            let error = Error::DeleteRootDirectory {
                namespace,
                name,
                path: path.clone(),
                source: Box::new(status),
            };
            events::publish(
                &core.recorder,
                &reference,
                vec![events::failure(REASON_ROOT_DIRECTORY_NOT_DELETED, &error)],
            )
            .await;
            Err(error)
        }
    }
}

/// The FileSystem an AccessPoint references; `None` when it does not exist.
async fn file_system(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<FileSystem>, Error> {
    Api::<FileSystem>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| Error::GetFileSystem {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source: Box::new(source),
        })
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
    let fs = file_system(ctx, &namespace, &ap.spec.file_system_ref.name).await?;
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
    use std::sync::Mutex;

    use futures::future::BoxFuture;
    use kube::runtime::events::{Recorder, Reporter};
    use openefs_admin_api::v1 as api;
    use serde_json::{Value, json};

    use super::*;
    use crate::filesystem::settings::AdminCalls;
    use crate::{CoreObjects, desired::OperatorSettings, fake_api::FakeApi};

    const NS: &str = "team-a";
    const AP: &str = "/apis/openefs.io/v1alpha1/namespaces/team-a/accesspoints/web";
    const FS: &str = "/apis/openefs.io/v1alpha1/namespaces/team-a/filesystems/shared";
    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/team-a/events";

    /// Stands in for nfsd's admin API: records root directory deletions and
    /// answers with `answer`. Settings pushes are the FileSystem
    /// reconciler's; this one never pushes.
    #[derive(Default)]
    struct FakeAdmin {
        deletes: Mutex<Vec<(String, String)>>,
        answer: Mutex<Option<tonic::Status>>,
    }

    impl AdminCalls for FakeAdmin {
        fn push(
            &self,
            _: String,
            _: String,
            _: api::Settings,
        ) -> BoxFuture<'static, Result<api::Usage, tonic::Status>> {
            unreachable!("the AccessPoint reconciler does not push settings")
        }

        fn delete_root(
            &self,
            endpoint: String,
            _: String,
            root_directory: String,
        ) -> BoxFuture<'static, Result<api::DeleteAccessPointRootResponse, tonic::Status>> {
            self.deletes
                .lock()
                .unwrap()
                .push((endpoint, root_directory));
            let answer = match self.answer.lock().unwrap().clone() {
                Some(status) => Err(status),
                None => Ok(api::DeleteAccessPointRootResponse {
                    objects_removed: 3,
                    metered_bytes_removed: 10240,
                }),
            };
            Box::pin(async move { answer })
        }

        fn encryption(
            &self,
            _: String,
            _: String,
        ) -> BoxFuture<'static, Result<api::Encryption, tonic::Status>> {
            unreachable!("the AccessPoint reconciler does not look at encryption")
        }

        fn rewrap(
            &self,
            _: String,
            _: String,
        ) -> BoxFuture<'static, Result<api::Encryption, tonic::Status>> {
            unreachable!("the AccessPoint reconciler does not rotate keys")
        }
    }

    fn context(client: kube::Client, admin: Arc<FakeAdmin>) -> Arc<Context> {
        Arc::new(Context {
            client: client.clone(),
            cluster_domain: "cluster.local".into(),
            metrics: Default::default(),
            core: Some(CoreObjects {
                settings: OperatorSettings::new("registry.example/openefs-nfsd:test"),
                recorder: Recorder::new(client, Reporter::from(names::FIELD_MANAGER)),
                admin,
                monitors: Default::default(),
            }),
        })
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
        let ctx = context(client, Arc::default());
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

    const FS_UID: &str = "6f3a1c2e-9b7d-4e21-8c55-0a1b2c3d4e5f";

    fn access_point(name: &str, uid: &str, path: &str, deleting: bool) -> Value {
        let mut ap = json!({"apiVersion": "openefs.io/v1alpha1", "kind": "AccessPoint",
            "metadata": {"name": name, "namespace": NS, "generation": 1, "uid": uid,
                         "finalizers": [names::ACCESSPOINT_FINALIZER]},
            "spec": {"fileSystemRef": {"name": "shared"},
                     "rootDirectory": {"path": path, "deletionPolicy": "Delete"}}});
        if deleting {
            ap["metadata"]["deletionTimestamp"] = json!("2026-11-30T00:00:00Z");
        }
        ap
    }

    /// A FileSystem, the AccessPoint `web` at /web being deleted with
    /// deletionPolicy Delete, and `other` at `other_path`.
    fn deleting_web(other_path: &str, admin: Arc<FakeAdmin>) -> (FakeApi, Arc<Context>) {
        let (api, client) = FakeApi::new();
        api.insert(
            FS,
            json!({"apiVersion": "openefs.io/v1alpha1", "kind": "FileSystem",
                   "metadata": {"name": "shared", "namespace": NS, "generation": 1, "uid": FS_UID},
                   "spec": {}}),
        );
        api.insert(
            AP,
            access_point("web", "0b9d3e41-2c6f-4a7e-9d10-5e8f7a6b4c3d", "/web", true),
        );
        api.insert(
            "/apis/openefs.io/v1alpha1/namespaces/team-a/accesspoints/other",
            access_point(
                "other",
                "1c8e2f52-3d7a-4b8f-8e21-6f9a8b7c5d4e",
                other_path,
                false,
            ),
        );
        (api, context(client, admin))
    }

    fn finalizers(api: &FakeApi) -> Value {
        api.get(AP).unwrap()["metadata"]["finalizers"].clone()
    }

    #[tokio::test]
    async fn deletion_policy_delete_removes_the_root_directory_through_nfsd() {
        let admin = Arc::new(FakeAdmin::default());
        let (api, ctx) = deleting_web("/web-other", admin.clone());
        run(&api, &ctx).await;
        assert_eq!(
            *admin.deletes.lock().unwrap(),
            [(
                "http://fs-85629fff8f20c8a89-0.fs-85629fff8f20c8a89-headless.team-a.svc.cluster.local:9050"
                    .to_owned(),
                "/web".to_owned()
            )]
        );
        assert!(
            finalizers(&api).as_array().is_none_or(|f| f.is_empty()),
            "{}",
            finalizers(&api)
        );
        assert_eq!(events(&api), ["Normal:RootDirectoryDeleted"]);
    }

    #[tokio::test]
    async fn a_refused_deletion_keeps_the_finalizer_for_a_retry() {
        let admin = Arc::new(FakeAdmin::default());
        *admin.answer.lock().unwrap() = Some(tonic::Status::failed_precondition(
            "in use by access point fsap-0b9d3e412c6f4a7e9",
        ));
        let (api, ctx) = deleting_web("/elsewhere", admin.clone());
        let ap: AccessPoint = serde_json::from_value(api.get(AP).unwrap()).unwrap();
        let err = reconcile(Arc::new(ap), ctx.clone()).await.unwrap_err();
        assert_eq!(err.category(), "delete-root-directory");
        assert_eq!(err.retry(), crate::error::Retry::Backoff);
        assert_eq!(finalizers(&api), json!([names::ACCESSPOINT_FINALIZER]));
        assert_eq!(events(&api), ["Warning:RootDirectoryNotDeleted"]);
    }

    #[tokio::test]
    async fn data_another_access_point_serves_is_kept() {
        for other in ["/web", "/web/sub", "/"] {
            let admin = Arc::new(FakeAdmin::default());
            let (api, ctx) = deleting_web(other, admin.clone());
            run(&api, &ctx).await;
            assert!(admin.deletes.lock().unwrap().is_empty(), "{other}");
            assert!(finalizers(&api).as_array().is_none_or(|f| f.is_empty()));
            assert_eq!(events(&api), ["Warning:RootDirectoryKept"], "{other}");
        }
    }
}
