//! The FileSystem reconcile against the in-memory API ([`crate::fake_api`]):
//! create, readiness, drift repair, failures and deletion.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use kube::runtime::events::{Recorder, Reporter};
use openefs_admin_api::v1 as admin_api;
use openefs_crds::{FileSystem, names};
use serde_json::{Value, json};

use super::settings::AdminCalls;
use super::{REASON_APPLY_FAILED, reconcile};
use crate::{Context, CoreObjects, desired::OperatorSettings, fake_api::FakeApi};

const NS: &str = "team-a";
const UID: &str = "6f3a1c2e-9b7d-4e21-8c55-0a1b2c3d4e5f";
/// FileSystemId::from_uid(UID).
const ID: &str = "fs-85629fff8f20c8a89";
const FS: &str = "/apis/openefs.io/v1alpha1/namespaces/team-a/filesystems/shared";
const PVC: &str = "/api/v1/namespaces/team-a/persistentvolumeclaims/fs-85629fff8f20c8a89-data";
const SERVICE: &str = "/api/v1/namespaces/team-a/services/fs-85629fff8f20c8a89";
const HEADLESS: &str = "/api/v1/namespaces/team-a/services/fs-85629fff8f20c8a89-headless";
const STS: &str = "/apis/apps/v1/namespaces/team-a/statefulsets/fs-85629fff8f20c8a89";
const PDB: &str = "/apis/policy/v1/namespaces/team-a/poddisruptionbudgets/fs-85629fff8f20c8a89";
const CA_SECRET: &str = "/api/v1/namespaces/team-a/secrets/fs-85629fff8f20c8a89-ca";
const TLS_SECRET: &str = "/api/v1/namespaces/team-a/secrets/fs-85629fff8f20c8a89-tls";
const ADMIN_SECRET: &str = "/api/v1/namespaces/team-a/secrets/fs-85629fff8f20c8a89-admin";
const CONFIG_MAP: &str = "/api/v1/namespaces/team-a/configmaps/fs-85629fff8f20c8a89-nfsd";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/team-a/events";
const ACCESS_POINTS: &str = "/apis/openefs.io/v1alpha1/namespaces/team-a/accesspoints";

/// Stands in for nfsd's admin API: records every push and answers with
/// `answer`.
#[derive(Default)]
struct FakeAdmin {
    pushes: Mutex<Vec<(String, String, admin_api::Settings)>>,
    answer: Mutex<Option<tonic::Status>>,
    /// The backing volume's (total, free) bytes it reports.
    volume: Mutex<(u64, u64)>,
    /// What GetEncryption answers; RewrapDataKey wraps with its current key.
    encryption: Mutex<admin_api::Encryption>,
    /// RewrapDataKey fails with this.
    rewrap_failure: Mutex<Option<tonic::Status>>,
    rewraps: Mutex<u32>,
}

impl FakeAdmin {
    fn pushes(&self) -> Vec<(String, String, admin_api::Settings)> {
        self.pushes.lock().unwrap().clone()
    }

    fn fail_with(&self, status: tonic::Status) {
        *self.answer.lock().unwrap() = Some(status);
    }

    /// An encrypted nfsd whose data key is wrapped by `wrapping` while its
    /// key source offers `current`.
    fn report_keys(&self, wrapping: &str, current: &str) {
        *self.encryption.lock().unwrap() = admin_api::Encryption {
            enabled: true,
            algorithm: "AES-256-XTS".into(),
            key_source: "secret".into(),
            wrapping_key_id: wrapping.into(),
            current_key_id: current.into(),
            current_key_error: String::new(),
            wrapped_data_key: format!(r#"{{"wrapping_key_id":"{wrapping}"}}"#).into_bytes(),
            wrapped_at: "2026-11-30T10:00:00Z".into(),
        };
    }

    fn rewraps(&self) -> u32 {
        *self.rewraps.lock().unwrap()
    }

    /// Reports a volume of `total` bytes, `used_percent` of it used.
    fn report_volume(&self, total: u64, used_percent: u64) {
        *self.volume.lock().unwrap() = (total, total * (100 - used_percent) / 100);
    }
}

impl AdminCalls for FakeAdmin {
    fn push(
        &self,
        endpoint: String,
        token: String,
        settings: admin_api::Settings,
    ) -> BoxFuture<'static, Result<admin_api::Usage, tonic::Status>> {
        self.pushes
            .lock()
            .unwrap()
            .push((endpoint, token, settings));
        let (volume_bytes_total, volume_bytes_free) = *self.volume.lock().unwrap();
        let answer = match self.answer.lock().unwrap().clone() {
            Some(status) => Err(status),
            None => Ok(admin_api::Usage {
                volume_bytes_total,
                volume_bytes_free,
                client_connections: 3,
                stored_bytes: 6 << 30,
                burst_credit_bytes: 1 << 40,
                permitted_bytes_per_second: Some(100 << 20),
                access_points: vec![admin_api::AccessPointUsage {
                    id: "fsap-474c09b5b06e069d2".into(),
                    stored_bytes: 12 << 10,
                    max_bytes: None,
                }],
                ..Default::default()
            }),
        };
        Box::pin(async move { answer })
    }

    fn delete_root(
        &self,
        _: String,
        _: String,
        _: String,
    ) -> BoxFuture<'static, Result<admin_api::DeleteAccessPointRootResponse, tonic::Status>> {
        unreachable!("the FileSystem reconciler deletes no root directories")
    }

    fn encryption(
        &self,
        _: String,
        _: String,
    ) -> BoxFuture<'static, Result<admin_api::Encryption, tonic::Status>> {
        let answer = match self.answer.lock().unwrap().clone() {
            Some(status) => Err(status),
            None => Ok(self.encryption.lock().unwrap().clone()),
        };
        Box::pin(async move { answer })
    }

    fn rewrap(
        &self,
        _: String,
        _: String,
    ) -> BoxFuture<'static, Result<admin_api::Encryption, tonic::Status>> {
        *self.rewraps.lock().unwrap() += 1;
        let answer = match self.rewrap_failure.lock().unwrap().clone() {
            Some(status) => Err(status),
            None => {
                let mut e = self.encryption.lock().unwrap();
                let current = e.current_key_id.clone();
                e.wrapping_key_id = current.clone();
                e.wrapped_data_key = format!(r#"{{"wrapping_key_id":"{current}"}}"#).into_bytes();
                e.wrapped_at = "2026-11-30T11:00:00Z".into();
                Ok(e.clone())
            }
        };
        Box::pin(async move { answer })
    }
}

fn setup(core: bool) -> (FakeApi, Arc<Context>) {
    let (api, ctx, _) = setup_with_admin(core);
    (api, ctx)
}

fn setup_with_admin(core: bool) -> (FakeApi, Arc<Context>, Arc<FakeAdmin>) {
    let admin = Arc::new(FakeAdmin::default());
    let (api, client) = FakeApi::new();
    api.insert(
        FS,
        json!({
            "apiVersion": "openefs.io/v1alpha1", "kind": "FileSystem",
            "metadata": {"name": "shared", "namespace": NS, "uid": UID, "generation": 1,
                         "finalizers": [names::FILESYSTEM_FINALIZER]},
            "spec": {}
        }),
    );
    let ctx = Context {
        client: client.clone(),
        cluster_domain: "cluster.local".into(),
        metrics: Default::default(),
        core: core.then(|| CoreObjects {
            settings: OperatorSettings::new("registry.example/openefs-nfsd:test"),
            recorder: Recorder::new(client, Reporter::from(names::FIELD_MANAGER)),
            admin: admin.clone(),
            monitors: Default::default(),
        }),
    };
    (api, Arc::new(ctx), admin)
}

async fn run(api: &FakeApi, ctx: &Arc<Context>) -> Result<(), crate::Error> {
    let fs: FileSystem = serde_json::from_value(api.get(FS).expect("FileSystem stored")).unwrap();
    reconcile(Arc::new(fs), ctx.clone()).await.map(|_| ())
}

fn condition(api: &FakeApi, type_: &str) -> (String, String) {
    let fs = api.get(FS).unwrap();
    let c = fs["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {fs}"));
    (
        c["status"].as_str().unwrap().to_owned(),
        c["reason"].as_str().unwrap().to_owned(),
    )
}

fn phase(api: &FakeApi) -> Value {
    api.get(FS).unwrap()["status"]["phase"].clone()
}

/// Reasons of the Events stored so far, in name order (names are unique).
fn event_reasons(api: &FakeApi) -> Vec<String> {
    let mut reasons: Vec<String> = api
        .list(EVENTS)
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["type"].as_str().unwrap_or("?"),
                e["reason"].as_str().unwrap_or("?")
            )
        })
        .collect();
    reasons.sort();
    reasons
}

fn set_cluster_state(api: &FakeApi) {
    api.update(PVC, |pvc| {
        pvc["spec"]["volumeName"] = json!("pv-7");
        pvc["status"] = json!({"phase": "Bound", "capacity": {"storage": "10Gi"}});
    });
    api.update(STS, |sts| {
        sts["status"] = json!({"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1,
                               "currentRevision": "rev-1", "updateRevision": "rev-1"})
    });
}

#[tokio::test]
async fn creates_the_server_and_becomes_available_when_it_is_ready() {
    let (api, ctx) = setup(true);
    run(&api, &ctx).await.unwrap();

    let requests = api.take_requests();
    let applies: Vec<&str> = requests
        .iter()
        .filter(|r| r.contains("fieldManager=openefs") && r.contains("force=true"))
        .map(|r| r.split(['?', ' ']).nth(1).unwrap())
        .collect();
    let status_path = format!("{FS}/status");
    assert_eq!(
        applies,
        [
            CA_SECRET,
            TLS_SECRET,
            ADMIN_SECRET,
            PVC,
            CONFIG_MAP,
            HEADLESS,
            SERVICE,
            STS,
            PDB,
            status_path.as_str()
        ]
    );
    for path in [
        CA_SECRET,
        TLS_SECRET,
        ADMIN_SECRET,
        PVC,
        CONFIG_MAP,
        SERVICE,
        HEADLESS,
        STS,
        PDB,
    ] {
        let object = api
            .get(path)
            .unwrap_or_else(|| panic!("{path} not applied"));
        assert_eq!(
            object["metadata"]["labels"][names::LABEL_INSTANCE],
            ID,
            "{path}"
        );
    }
    assert_eq!(
        api.get(STS).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/openefs-nfsd:test"
    );
    assert_eq!(phase(&api), "Creating");
    assert_eq!(
        condition(&api, "BackingStorageReady"),
        ("False".into(), "Pending".into())
    );
    assert_eq!(
        condition(&api, "ServerReady"),
        ("False".into(), "PodNotReady".into())
    );
    assert_eq!(
        condition(&api, "Ready"),
        ("False".into(), "BackingStorageNotReady".into())
    );

    set_cluster_state(&api);
    run(&api, &ctx).await.unwrap();
    assert_eq!(phase(&api), "Available");
    assert_eq!(
        condition(&api, "Ready"),
        ("True".into(), "Available".into())
    );
    assert_eq!(
        condition(&api, "BackingStorageReady"),
        ("True".into(), "Bound".into())
    );
    let reasons = event_reasons(&api);
    for expected in [
        "Normal:Available",
        "Normal:Bound",
        "Normal:Serving",
        "Warning:PodNotReady",
    ] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "{expected} missing from {reasons:?}"
        );
    }

    // Nothing changed: the objects are applied again (that is how drift is
    // found), the TLS material is only read, the status is not written and
    // no Event is published.
    api.take_requests();
    let events_before = api.list(EVENTS).len();
    let tls_before = api.get(TLS_SECRET);
    run(&api, &ctx).await.unwrap();
    let requests = api.take_requests();
    assert!(
        !requests.iter().any(|r| r.contains("/status")),
        "{requests:?}"
    );
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with("PATCH") && r.contains("/secrets/")),
        "{requests:?}"
    );
    assert_eq!(api.get(TLS_SECRET), tls_before);
    assert_eq!(api.list(EVENTS).len(), events_before);
}

#[tokio::test]
async fn edited_and_deleted_objects_are_repaired() {
    let (api, ctx) = setup(true);
    run(&api, &ctx).await.unwrap();
    set_cluster_state(&api);
    api.update(SERVICE, |svc| svc["spec"]["ports"][0]["port"] = json!(2050));
    api.remove(PDB);
    run(&api, &ctx).await.unwrap();
    assert_eq!(api.get(SERVICE).unwrap()["spec"]["ports"][0]["port"], 2049);
    assert!(api.get(PDB).is_some(), "PodDisruptionBudget not recreated");
    // The cluster's own fields survive the re-apply.
    assert_eq!(api.get(PVC).unwrap()["spec"]["volumeName"], "pv-7");
}

#[tokio::test]
async fn a_damaged_tls_secret_gets_a_new_certificate_from_the_same_ca() {
    let (api, ctx) = setup(true);
    run(&api, &ctx).await.unwrap();
    let ca_before = api.get(CA_SECRET).unwrap();
    api.update(TLS_SECRET, |secret| {
        secret["data"]["tls.crt"] = json!("bm90IGEgY2VydGlmaWNhdGU=");
    });
    run(&api, &ctx).await.unwrap();
    let tls = api.get(TLS_SECRET).unwrap();
    assert_ne!(tls["data"]["tls.crt"], "bm90IGEgY2VydGlmaWNhdGU=");
    assert_eq!(tls["data"]["ca.crt"], ca_before["data"]["ca.crt"]);
    assert_eq!(api.get(CA_SECRET).unwrap()["data"], ca_before["data"]);
    assert_eq!(tls["type"], "kubernetes.io/tls");
    assert!(tls["data"].get("ca.key").is_none(), "the CA key leaked");
}

#[tokio::test]
async fn a_server_that_stops_serving_degrades_the_file_system() {
    let (api, ctx) = setup(true);
    run(&api, &ctx).await.unwrap();
    set_cluster_state(&api);
    run(&api, &ctx).await.unwrap();
    api.update(STS, |sts| sts["status"]["readyReplicas"] = json!(0));
    run(&api, &ctx).await.unwrap();
    assert_eq!(phase(&api), "Error");
    assert_eq!(
        condition(&api, "Degraded"),
        ("True".into(), "ServerNotReady".into())
    );
    let reasons = event_reasons(&api);
    assert!(
        reasons.iter().any(|r| r == "Warning:ServerNotReady"),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn a_failed_apply_is_an_error_and_an_event() {
    let (api, ctx) = setup(true);
    api.fail("/apis/apps/v1/", 403);
    let err = run(&api, &ctx).await.unwrap_err();
    assert_eq!(err.category(), "apply", "{err}");
    assert_eq!(err.retry(), crate::Retry::Backoff);
    assert!(err.to_string().contains("StatefulSet"), "{err}");
    assert_eq!(
        event_reasons(&api),
        [format!("Warning:{REASON_APPLY_FAILED}")]
    );
    // The status is not written from a half-applied state.
    assert!(api.get(FS).unwrap()["status"].is_null());
}

const POD: &str = "/api/v1/namespaces/team-a/pods/fs-85629fff8f20c8a89-0";

/// An encrypted FileSystem whose data key is wrapped by Secret `kek`'s key.
fn encrypt(api: &FakeApi, secret: &str) {
    api.update(FS, |fs| {
        fs["spec"] = json!({"encrypted": true,
            "kmsKey": {"secretKeyRef": {"name": secret, "key": "key"}}})
    });
}

fn nfsd_args(api: &FakeApi) -> Vec<String> {
    let sts = api.get(STS).unwrap();
    serde_json::from_value(sts["spec"]["template"]["spec"]["containers"][0]["args"].clone())
        .unwrap()
}

/// The Secrets the server pod mounts, by volume name.
fn secret_volumes(api: &FakeApi) -> Vec<(String, String)> {
    let sts = api.get(STS).unwrap();
    sts["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| {
            let secret = v["secret"]["secretName"].as_str()?;
            Some((v["name"].as_str()?.to_owned(), secret.to_owned()))
        })
        .filter(|(name, _)| name.contains("kek"))
        .collect()
}

/// The copy of the wrapped data key in the CA Secret.
fn kept_copy(api: &FakeApi) -> Option<String> {
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(api.get(CA_SECRET)?).unwrap();
    let bytes = secret.data?.get("wrapped-data-key.json")?.0.clone();
    Some(String::from_utf8(bytes).unwrap())
}

fn encryption_message(api: &FakeApi) -> String {
    let fs = api.get(FS).unwrap();
    let c = fs["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "EncryptionReady")
        .unwrap();
    c["message"].as_str().unwrap().to_owned()
}

/// An encrypted FileSystem (its KEK in the Secret `kek`) reconciled once,
/// its server now running, and nfsd reporting its data key wrapped by
/// `wrapping` while the source offers `current`.
async fn running_encrypted(
    wrapping: &str,
    current: &str,
) -> (FakeApi, Arc<Context>, Arc<FakeAdmin>) {
    let (api, ctx, admin) = setup_with_admin(true);
    encrypt(&api, "kek");
    run(&api, &ctx).await.unwrap();
    set_cluster_state(&api);
    admin.report_keys(wrapping, current);
    (api, ctx, admin)
}

#[tokio::test]
async fn an_encrypted_file_system_is_served_with_its_kek_and_its_data_key_kept() {
    let (api, ctx, admin) = setup_with_admin(true);
    encrypt(&api, "kek");
    run(&api, &ctx).await.unwrap();
    let args = nfsd_args(&api);
    let at = args
        .iter()
        .position(|a| a == "--kek-file")
        .expect("--kek-file");
    assert_eq!(args[at + 1], "/etc/openefs/kek/kek");
    assert!(!args.contains(&"--previous-kek-file".to_owned()));
    assert_eq!(secret_volumes(&api), [("kek".into(), "kek".into())]);
    assert_eq!(
        condition(&api, "EncryptionReady"),
        ("Unknown".into(), "WaitingForServer".into())
    );

    set_cluster_state(&api);
    admin.report_keys("sha256:aaaa", "sha256:aaaa");
    api.take_requests();
    run(&api, &ctx).await.unwrap();
    assert_eq!(
        condition(&api, "EncryptionReady"),
        ("True".into(), "DataKeyCurrent".into())
    );
    assert_eq!(
        condition(&api, "Ready"),
        ("True".into(), "Available".into())
    );
    // Under a field manager of its own: the TLS material's applies, which
    // leave the copy out, must not remove it.
    let requests = api.take_requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("PATCH {CA_SECRET}?"))
                && r.contains("fieldManager=openefs-data-key")),
        "{requests:?}"
    );
    let encryption = &api.get(FS).unwrap()["status"]["encryption"];
    assert_eq!(
        *encryption,
        json!({"keySource": "secret", "keyId": "sha256:aaaa",
               "lastRotationTime": "2026-11-30T10:00:00Z",
               "kmsKey": {"secretKeyRef": {"name": "kek", "key": "key"}}})
    );
    assert_eq!(admin.rewraps(), 0, "nothing to rotate");
    assert_eq!(
        kept_copy(&api).as_deref(),
        Some(r#"{"wrapping_key_id":"sha256:aaaa"}"#)
    );
    // The copy was written beside the TLS material, which stays.
    assert!(api.get(CA_SECRET).unwrap()["data"]["ca.key"].is_string());

    // Nothing changed: no rotation, no write of the copy, no status write.
    api.take_requests();
    run(&api, &ctx).await.unwrap();
    assert_eq!(admin.rewraps(), 0);
    let requests = api.take_requests();
    for unchanged in [CA_SECRET.to_owned(), format!("{FS}/status")] {
        assert!(
            !requests
                .iter()
                .any(|r| r.starts_with(&format!("PATCH {unchanged}?"))),
            "{unchanged}: {requests:?}"
        );
    }
}

#[tokio::test]
async fn a_new_kek_at_the_source_is_rotated_with_an_event() {
    let (api, ctx, admin) = running_encrypted("sha256:aaaa", "sha256:aaaa").await;
    run(&api, &ctx).await.unwrap();

    // The Secret's value changed: the source offers another key.
    admin.report_keys("sha256:aaaa", "sha256:bbbb");
    run(&api, &ctx).await.unwrap();
    assert_eq!(admin.rewraps(), 1);
    assert!(
        event_reasons(&api).contains(&"Normal:KeyRotated".to_owned()),
        "{:?}",
        event_reasons(&api)
    );
    let encryption = &api.get(FS).unwrap()["status"]["encryption"];
    assert_eq!(encryption["keyId"], "sha256:bbbb");
    assert_eq!(encryption["lastRotationTime"], "2026-11-30T11:00:00Z");
    assert_eq!(
        condition(&api, "EncryptionReady"),
        ("True".into(), "DataKeyCurrent".into())
    );
    assert_eq!(
        kept_copy(&api).as_deref(),
        Some(r#"{"wrapping_key_id":"sha256:bbbb"}"#)
    );
    run(&api, &ctx).await.unwrap();
    assert_eq!(admin.rewraps(), 1, "rotated once");
}

#[tokio::test]
async fn a_failed_rotation_is_a_condition_an_event_and_a_retry() {
    let (api, ctx, admin) = running_encrypted("sha256:aaaa", "sha256:bbbb").await;
    *admin.rewrap_failure.lock().unwrap() = Some(tonic::Status::unavailable("KMS plugin down"));
    let err = run(&api, &ctx).await.unwrap_err();
    assert_eq!(err.category(), "rotate-data-key", "{err}");
    assert_eq!(err.retry(), crate::Retry::Backoff);
    assert_eq!(
        condition(&api, "EncryptionReady"),
        ("False".into(), "RotationFailed".into())
    );
    assert!(
        encryption_message(&api).contains("KMS plugin down"),
        "{}",
        encryption_message(&api)
    );
    assert_eq!(
        condition(&api, "Ready"),
        ("False".into(), "EncryptionNotReady".into())
    );
    assert!(event_reasons(&api).contains(&"Warning:RotationFailed".to_owned()));
    // Still wrapped by the old key, as nfsd says.
    assert_eq!(
        api.get(FS).unwrap()["status"]["encryption"]["keyId"],
        "sha256:aaaa"
    );

    *admin.rewrap_failure.lock().unwrap() = None;
    run(&api, &ctx).await.unwrap();
    assert_eq!(admin.rewraps(), 2);
    assert_eq!(
        condition(&api, "EncryptionReady"),
        ("True".into(), "DataKeyCurrent".into())
    );
}

#[tokio::test]
async fn nfsd_refusing_its_data_key_is_data_key_unavailable() {
    let (api, ctx) = setup(true);
    encrypt(&api, "kek");
    // As nfsd words it.
    let message = "encryption at rest: cannot unwrap the data key in /data/state: it is wrapped \
                   by secret key sha256:0123456789abcdef, the configured key is \
                   sha256:fedcba9876543210: aead::Error";
    api.insert(
        POD,
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "fs-85629fff8f20c8a89-0", "namespace": NS},
               "status": {"containerStatuses": [{
                   "name": "nfsd", "ready": false, "restartCount": 3, "image": "x", "imageID": "",
                   "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                   "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                "message": message}}}]}}),
    );
    run(&api, &ctx).await.unwrap();
    assert_eq!(
        condition(&api, "EncryptionReady"),
        ("False".into(), "DataKeyUnavailable".into())
    );
    assert!(
        encryption_message(&api).ends_with(message),
        "{}",
        encryption_message(&api)
    );
    assert!(event_reasons(&api).contains(&"Warning:DataKeyUnavailable".to_owned()));
    assert_eq!(phase(&api), "Creating");
}

#[tokio::test]
async fn pointing_kms_key_at_another_secret_mounts_the_previous_one_until_rewrapped() {
    let (api, ctx, admin) = running_encrypted("sha256:aaaa", "sha256:aaaa").await;
    run(&api, &ctx).await.unwrap();

    encrypt(&api, "kek-2");
    // The server rolls out the new template; the old pod still serves.
    api.update(STS, |sts| sts["status"]["updateRevision"] = json!("rev-2"));
    run(&api, &ctx).await.unwrap();
    assert_eq!(
        secret_volumes(&api),
        [
            ("kek".into(), "kek-2".into()),
            ("previous-kek".into(), "kek".into())
        ]
    );
    let sts = api.get(STS).unwrap();
    let previous = sts["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "previous-kek")
        .unwrap()
        .clone();
    assert_eq!(previous["secret"]["optional"], true);
    assert!(nfsd_args(&api).contains(&"/etc/openefs/previous-kek/kek".to_owned()));
    assert_eq!(
        api.get(FS).unwrap()["status"]["encryption"]["kmsKey"]["secretKeyRef"]["name"],
        "kek",
        "not confirmed during the rollout"
    );

    // The new pod unwrapped with the previous key and rewrapped.
    api.update(STS, |sts| sts["status"]["currentRevision"] = json!("rev-2"));
    admin.report_keys("sha256:cccc", "sha256:cccc");
    run(&api, &ctx).await.unwrap();
    assert_eq!(
        api.get(FS).unwrap()["status"]["encryption"]["kmsKey"]["secretKeyRef"]["name"],
        "kek-2"
    );
    run(&api, &ctx).await.unwrap();
    assert_eq!(secret_volumes(&api), [("kek".into(), "kek-2".into())]);
    assert!(!nfsd_args(&api).contains(&"--previous-kek-file".to_owned()));
}

#[tokio::test]
async fn only_custom_resources_touches_no_core_kind() {
    let (api, ctx) = setup(false);
    run(&api, &ctx).await.unwrap();
    let requests = api.take_requests();
    assert!(
        requests.iter().all(|r| r.contains("/apis/openefs.io/")),
        "{requests:?}"
    );
    assert_eq!(
        condition(&api, "Ready"),
        ("False".into(), "BackingStorageNotReady".into())
    );
}

#[tokio::test]
async fn deletion_waits_for_access_points_then_releases_the_finalizer() {
    let (api, ctx) = setup(true);
    run(&api, &ctx).await.unwrap();
    api.update(FS, |fs| {
        fs["metadata"]["deletionTimestamp"] = json!("2026-01-02T00:00:00Z")
    });
    api.insert(
        &format!("{ACCESS_POINTS}/app"),
        json!({"apiVersion": "openefs.io/v1alpha1", "kind": "AccessPoint",
               "metadata": {"name": "app", "namespace": NS, "uid": "ap-1"},
               "spec": {"fileSystemRef": {"name": "shared"}}}),
    );
    let err = run(&api, &ctx).await.unwrap_err();
    assert_eq!(err.category(), "deletion-blocked", "{err}");
    assert_eq!(
        condition(&api, "Ready"),
        ("False".into(), "AccessPointsExist".into())
    );
    assert_eq!(
        api.get(FS).unwrap()["metadata"]["finalizers"],
        json!([names::FILESYSTEM_FINALIZER])
    );

    // The AccessPoint goes; a PersistentVolume on a directory of the file
    // system still holds the deletion (another file system's does not).
    let pv = |name: &str, handle: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolume",
               "metadata": {"name": name},
               "spec": {"csi": {"driver": "csi.openefs.io", "volumeHandle": handle}}})
    };
    api.insert(
        "/api/v1/persistentvolumes/reports",
        pv("reports", "team-a/shared:reports"),
    );
    api.insert(
        "/api/v1/persistentvolumes/other",
        pv("other", "team-a/elsewhere"),
    );
    api.remove(&format!("{ACCESS_POINTS}/app"));
    let err = run(&api, &ctx).await.unwrap_err();
    assert!(
        err.to_string()
            .ends_with("the PersistentVolumes that use it: reports"),
        "{err}"
    );
    assert_eq!(
        condition(&api, "Ready"),
        ("False".into(), "VolumesExist".into())
    );

    api.remove("/api/v1/persistentvolumes/reports");
    run(&api, &ctx).await.unwrap();
    let finalizers = &api.get(FS).unwrap()["metadata"]["finalizers"];
    assert!(
        finalizers.as_array().is_none_or(|f| f.is_empty()),
        "finalizer still there: {finalizers}"
    );
}

#[tokio::test]
async fn settings_are_pushed_to_a_ready_server_with_the_stored_token() {
    let (api, ctx, admin) = setup_with_admin(true);
    api.update(FS, |fs| {
        fs["spec"] = json!({"policy": {"rootAccess": "squash", "readOnly": true}})
    });
    for (name, fs) in [("web", "shared"), ("other", "elsewhere")] {
        api.insert(
            &format!("{ACCESS_POINTS}/{name}"),
            json!({"apiVersion": "openefs.io/v1alpha1", "kind": "AccessPoint",
                   "metadata": {"name": name, "namespace": NS,
                                "uid": "0b9d3e41-2c6f-4a7e-9d10-5e8f7a6b4c3d"},
                   "spec": {"fileSystemRef": {"name": fs},
                            "posixUser": {"uid": 1000, "gid": 1000},
                            "rootDirectory": {"path": "/web"}}}),
        );
    }
    run(&api, &ctx).await.unwrap();
    // Not ready: nothing pushed, the ConfigMap carries the policy.
    assert!(admin.pushes().is_empty());
    assert_eq!(
        condition(&api, "SettingsApplied"),
        ("False".into(), "WaitingForServer".into())
    );
    let config = api.get(CONFIG_MAP).unwrap();
    let toml = config["data"]["nfsd.toml"].as_str().unwrap();
    assert!(
        toml.contains("root-squash = true\nread-only = true"),
        "{toml}"
    );
    let token = |api: &FakeApi| {
        let secret = api.get(ADMIN_SECRET).unwrap();
        secret["data"]["token"].as_str().unwrap().to_owned()
    };
    let stored = token(&api);

    set_cluster_state(&api);
    run(&api, &ctx).await.unwrap();
    run(&api, &ctx).await.unwrap();
    let pushes = admin.pushes();
    assert_eq!(pushes.len(), 2, "every reconcile pushes");
    let (endpoint, pushed_token, settings) = &pushes[0];
    assert_eq!(
        endpoint,
        &format!("http://{ID}-0.{ID}-headless.team-a.svc.cluster.local:9050")
    );
    // The Secret stores base64; the token pushed is what it decodes to.
    use k8s_openapi::ByteString;
    let decoded: ByteString = serde_json::from_value(json!(stored)).unwrap();
    assert_eq!(pushed_token.as_bytes(), decoded.0.as_slice());
    assert_eq!(token(&api), stored, "the token is made once");
    let policy = settings.policy.clone().unwrap();
    assert!(policy.root_squash && policy.read_only);
    // Only the access point of this file system, by its id.
    let [web] = settings.access_points.as_slice() else {
        panic!("{:?}", settings.access_points)
    };
    assert_eq!(
        (web.id.as_str(), web.root_directory.as_str()),
        ("fsap-474c09b5b06e069d2", "/web")
    );
    assert_eq!(web.posix_user.as_ref().map(|u| u.uid), Some(1000));
    assert!(toml.contains("id = \"fsap-474c09b5b06e069d2\""), "{toml}");
    assert_eq!(
        condition(&api, "SettingsApplied"),
        ("True".into(), "Applied".into())
    );
    let status = api.get(FS).unwrap()["status"].clone();
    assert_eq!(status["clientConnections"], 3);
    assert_eq!(status["sizeInBytes"]["value"], 6i64 << 30);
    assert_eq!(
        status["throughput"],
        json!({"permittedMiBps": 100.0, "burstCreditBalanceBytes": 1i64 << 40}),
        "bursting, EFS's default mode: credits are reported"
    );
    // nfsd's per-access-point figure reaches the AccessPoint's status.
    let size = |name: &str| {
        api.get(&format!("{ACCESS_POINTS}/{name}")).unwrap()["status"]["sizeInBytes"]["value"]
            .clone()
    };
    assert_eq!(size("web"), json!(12 << 10));
    assert_eq!(size("other"), Value::Null, "not this file system's");
    // The policy is not in the pod template: changing it rolls no pod.
    let args = api.get(STS).unwrap()["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    assert!(!args.to_string().contains("squash"), "{args}");

    admin.fail_with(tonic::Status::unavailable("connection refused"));
    run(&api, &ctx).await.unwrap();
    assert_eq!(
        condition(&api, "SettingsApplied"),
        ("False".into(), "AdminUnreachable".into())
    );
    assert_eq!(
        api.get(FS).unwrap()["status"]["clientConnections"],
        3,
        "the last figure stays while nfsd cannot be asked"
    );
}

const GIB: u64 = 1 << 30;
const STORAGE_CLASS: &str = "/apis/storage.k8s.io/v1/storageclasses/standard";

/// The claim's `spec.resources.requests.storage`.
fn requested(api: &FakeApi) -> Value {
    api.get(PVC).unwrap()["spec"]["resources"]["requests"]["storage"].clone()
}

/// A serving file system whose claim got the default class `standard`
/// (as the API server's admission does), which allows expansion or not.
async fn serving_with_class(
    allow_expansion: Option<bool>,
) -> (FakeApi, Arc<Context>, Arc<FakeAdmin>) {
    let (api, ctx, admin) = setup_with_admin(true);
    admin.report_volume(10 * GIB, 10);
    run(&api, &ctx).await.unwrap();
    set_cluster_state(&api);
    api.update(PVC, |pvc| {
        pvc["spec"]["storageClassName"] = json!("standard")
    });
    let mut class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                           "metadata": {"name": "standard"}, "provisioner": "example.com/disk"});
    if let Some(allow) = allow_expansion {
        class["allowVolumeExpansion"] = json!(allow);
    }
    api.insert(STORAGE_CLASS, class);
    run(&api, &ctx).await.unwrap();
    assert_eq!(phase(&api), "Available");
    assert_eq!(
        condition(&api, "AutoExpansionReady"),
        ("True".into(), "WithinThreshold".into())
    );
    (api, ctx, admin)
}

fn count(reasons: &[String], wanted: &str) -> usize {
    reasons.iter().filter(|r| *r == wanted).count()
}

#[tokio::test]
async fn a_filling_volume_grows_its_claim_which_never_shrinks_back() {
    let (api, ctx, admin) = serving_with_class(Some(true)).await;
    assert_eq!(requested(&api), "10Gi");

    admin.report_volume(10 * GIB, 85);
    run(&api, &ctx).await.unwrap();
    assert_eq!(requested(&api), "15Gi", "+50 %, whole GiB");
    assert_eq!(
        condition(&api, "AutoExpansionReady"),
        ("True".into(), "ExpandingStorage".into())
    );
    let reasons = event_reasons(&api);
    assert_eq!(count(&reasons, "Normal:ExpandingStorage"), 1, "{reasons:?}");

    // The driver has not grown the volume yet (capacity 10Gi): the next
    // reconcile neither applies initialSize again nor grows a second time.
    run(&api, &ctx).await.unwrap();
    assert_eq!(requested(&api), "15Gi");
    assert_eq!(
        count(&event_reasons(&api), "Normal:ExpandingStorage"),
        1,
        "no second expansion while the first is under way"
    );

    // Grown: the fill is back below the threshold, and the request stays.
    api.update(PVC, |pvc| {
        pvc["status"]["capacity"]["storage"] = json!("15Gi")
    });
    admin.report_volume(15 * GIB, 57);
    run(&api, &ctx).await.unwrap();
    assert_eq!(requested(&api), "15Gi");
    assert_eq!(
        condition(&api, "AutoExpansionReady"),
        ("True".into(), "WithinThreshold".into())
    );
}

#[tokio::test]
async fn a_class_that_cannot_expand_is_a_condition_and_an_event_not_a_loop() {
    let (api, ctx, admin) = serving_with_class(None).await;
    admin.report_volume(10 * GIB, 90);
    run(&api, &ctx).await.unwrap();
    assert_eq!(requested(&api), "10Gi", "the claim is left as it is");
    assert_eq!(
        condition(&api, "AutoExpansionReady"),
        ("False".into(), "ExpansionNotSupported".into())
    );
    let reasons = event_reasons(&api);
    assert_eq!(
        count(&reasons, "Warning:ExpansionNotSupported"),
        1,
        "{reasons:?}"
    );
    assert_eq!(count(&reasons, "Normal:ExpandingStorage"), 0);
    let fs = api.get(FS).unwrap();
    let message = fs["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "AutoExpansionReady")
        .unwrap()["message"]
        .clone();
    assert!(
        message
            .as_str()
            .unwrap()
            .contains("StorageClass standard does not allow volume expansion"),
        "{message}"
    );

    // Nothing changed: no status write, no new Event.
    api.take_requests();
    let events_before = api.list(EVENTS).len();
    run(&api, &ctx).await.unwrap();
    let requests = api.take_requests();
    assert!(
        !requests.iter().any(|r| r.contains("/status")),
        "{requests:?}"
    );
    assert_eq!(api.list(EVENTS).len(), events_before);
    assert_eq!(requested(&api), "10Gi");

    // At maxSize: its own reason.
    api.update(FS, |fs| {
        fs["spec"]["backingStorage"] = json!({"autoExpand": {"maxSize": "10Gi"}})
    });
    run(&api, &ctx).await.unwrap();
    assert_eq!(
        condition(&api, "AutoExpansionReady"),
        ("False".into(), "MaxSizeReached".into())
    );
}

const MONITOR: &str =
    "/apis/monitoring.coreos.com/v1/namespaces/team-a/servicemonitors/fs-85629fff8f20c8a89";
const MONITORING_DISCOVERY: &str = "/apis/monitoring.coreos.com/v1";

#[tokio::test]
async fn a_service_monitor_is_applied_only_where_the_kind_is_served() {
    let (api, ctx) = setup(true);
    run(&api, &ctx).await.unwrap();
    assert!(api.get(MONITOR).is_none());
    let asked = |requests: &[String]| {
        requests
            .iter()
            .filter(|r| r.starts_with(&format!("GET {MONITORING_DISCOVERY}?")))
            .count()
    };
    assert_eq!(asked(&api.take_requests()), 1);
    // The answer is remembered: no discovery request per reconcile.
    run(&api, &ctx).await.unwrap();
    assert_eq!(asked(&api.take_requests()), 0);

    let (api, ctx) = setup(true);
    api.insert(
        MONITORING_DISCOVERY,
        json!({"kind": "APIResourceList", "apiVersion": "v1",
               "groupVersion": "monitoring.coreos.com/v1",
               "resources": [{"name": "servicemonitors", "singularName": "servicemonitor",
                              "namespaced": true, "kind": "ServiceMonitor",
                              "verbs": ["get", "list", "watch", "create", "patch", "delete"]}]}),
    );
    run(&api, &ctx).await.unwrap();
    let requests = api.take_requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("PATCH {MONITOR}?"))
                && r.contains("fieldManager=openefs")
                && r.contains("force=true")),
        "{requests:?}"
    );
    let monitor = api.get(MONITOR).expect("ServiceMonitor applied");
    assert_eq!(monitor["kind"], "ServiceMonitor");
    assert_eq!(monitor["metadata"]["ownerReferences"][0]["uid"], UID);
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        api.get(HEADLESS).unwrap()["spec"]["selector"]
    );
}

#[tokio::test]
async fn a_rollout_of_a_serving_server_is_updating() {
    let (api, ctx) = setup(true);
    run(&api, &ctx).await.unwrap();
    set_cluster_state(&api);
    run(&api, &ctx).await.unwrap();
    assert_eq!(phase(&api), "Available");
    // A new revision: the old pod is gone, the new one not ready yet.
    api.update(STS, |sts| {
        sts["status"]["updateRevision"] = json!("rev-2");
        sts["status"]["updatedReplicas"] = json!(0);
        sts["status"]["readyReplicas"] = json!(0);
    });
    run(&api, &ctx).await.unwrap();
    assert_eq!(phase(&api), "Updating");
    assert_eq!(
        condition(&api, "Degraded"),
        ("False".into(), "AsExpected".into())
    );
    api.update(STS, |sts| {
        sts["status"]["currentRevision"] = json!("rev-2");
        sts["status"]["updatedReplicas"] = json!(1);
        sts["status"]["readyReplicas"] = json!(1);
    });
    run(&api, &ctx).await.unwrap();
    assert_eq!(phase(&api), "Available");
}
