//! The operator on a real cluster: runs when `KUBECONFIG` points at a
//! cluster with the chart installed (`helm install openefs charts/openefs`),
//! and otherwise skips and says so (this CI has no cluster; the reconcile
//! logic is tested against an in-memory API and the real API server).
//!
//! It creates a FileSystem in a fresh namespace, waits until it is
//! Available, checks the objects the operator made for it, creates an
//! AccessPoint, waits until that is Available too, and deletes both.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{Namespace, PersistentVolumeClaim, Secret, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
};
use openefs_crds::{AccessPoint, FileSystem, LifecyclePhase};
use serde_json::json;

/// How long a FileSystem may take to become Available: a volume to
/// provision and an image to pull.
const AVAILABLE_WITHIN: Duration = Duration::from_secs(600);

async fn wait_available<F, Fut>(what: &str, mut phase: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<LifecyclePhase>>>,
{
    let deadline = Instant::now() + AVAILABLE_WITHIN;
    loop {
        let now = phase().await?;
        if now == Some(LifecyclePhase::Available) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} not Available within {AVAILABLE_WITHIN:?} (phase {now:?})");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn file_system_and_access_point_on_a_real_cluster() -> Result<()> {
    if std::env::var_os("KUBECONFIG").is_none() {
        println!(
            "skipped: KUBECONFIG is not set (this test needs a cluster with the chart installed)"
        );
        return Ok(());
    }
    let client = Client::try_default().await.context("KUBECONFIG")?;
    let ns = format!("openefs-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;
    let result = exercise(&client, &ns).await;
    namespaces.delete(&ns, &DeleteParams::default()).await.ok();
    result
}

async fn exercise(client: &Client, ns: &str) -> Result<()> {
    let fss: Api<FileSystem> = Api::namespaced(client.clone(), ns);
    let fs: FileSystem = serde_json::from_value(json!({
        "apiVersion": "openefs.io/v1alpha1", "kind": "FileSystem",
        "metadata": {"name": "e2e"},
        "spec": {"deletionPolicy": "Delete", "backingStorage": {"initialSize": "1Gi"}}
    }))?;
    fss.create(&PostParams::default(), &fs).await?;
    wait_available("FileSystem e2e", || async {
        Ok(fss.get("e2e").await?.status.and_then(|s| s.phase))
    })
    .await?;
    let status = fss.get("e2e").await?.status.context("no status")?;
    let id = status.file_system_id.context("no fileSystemId")?;
    let id = id.as_str();
    ensure!(
        status
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with(&format!("{id}.{ns}.svc."))),
        "endpoint {:?}",
        status.endpoint
    );

    Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get(id)
        .await?;
    Api::<Service>::namespaced(client.clone(), ns)
        .get(id)
        .await?;
    Api::<Service>::namespaced(client.clone(), ns)
        .get(&format!("{id}-headless"))
        .await?;
    Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
        .get(id)
        .await?;
    let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .get(&format!("{id}-data"))
        .await?;
    ensure!(
        pvc.status.and_then(|s| s.phase).as_deref() == Some("Bound"),
        "backing PVC not bound"
    );
    let tls = Api::<Secret>::namespaced(client.clone(), ns)
        .get(&format!("{id}-tls"))
        .await?;
    let keys = tls.data.unwrap_or_default();
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        ensure!(keys.contains_key(key), "{key} missing from the TLS Secret");
    }
    ensure!(
        !keys.contains_key("ca.key"),
        "the CA key is in the TLS Secret"
    );

    let aps: Api<AccessPoint> = Api::namespaced(client.clone(), ns);
    let ap: AccessPoint = serde_json::from_value(json!({
        "apiVersion": "openefs.io/v1alpha1", "kind": "AccessPoint",
        "metadata": {"name": "app"},
        "spec": {"fileSystemRef": {"name": "e2e"}, "rootDirectory": {"path": "/app"}}
    }))?;
    aps.create(&PostParams::default(), &ap).await?;
    wait_available("AccessPoint app", || async {
        Ok(aps.get("app").await?.status.and_then(|s| s.phase))
    })
    .await?;
    aps.delete("app", &DeleteParams::default()).await?;
    fss.delete("e2e", &DeleteParams::default()).await?;
    Ok(())
}
