//! Encryption at rest, the operator's side. nfsd encrypts file data with a
//! data key it keeps only wrapped by a key-encryption key (KEK); the
//! operator gives the server pod its KEK source ([`pod_parts`]), rotates the
//! KEK through the admin API when the source offers a new one, keeps a copy
//! of the wrapped data key, and reports it all as `status.encryption` and
//! the `EncryptionReady` condition ([`verdict`]).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, KeyToPath, Pod, Secret, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::Event;
use kube::{Api, Client};
use openefs_admin_api::KEY_ERROR_PREFIX;
use openefs_admin_api::v1 as api;
use openefs_crds::{EncryptionStatus, FileSystem, KeySource, KmsKey};

use super::desired::{MetaFactory, NFSD_CONTAINER, stateful_set_name};
use super::settings::AdminCalls;
use super::status::ENCRYPTION_READY;
use super::tls::ca_secret_name;
use crate::conditions::{Status, Verdict};
use crate::error::Error;
use crate::events;

/// `EncryptionReady` reason when the data key is unwrapped and wrapped by
/// the key source's current KEK.
pub const REASON_DATA_KEY_CURRENT: &str = "DataKeyCurrent";
/// The server could not unwrap the data key (wrong or missing KEK, KMS
/// plugin down) and refused to serve.
pub const REASON_DATA_KEY_UNAVAILABLE: &str = "DataKeyUnavailable";
/// The source offers a new KEK and rewrapping the data key with it failed.
pub const REASON_ROTATION_FAILED: &str = "RotationFailed";
/// The server serves, but cannot read or reach its KEK source now (a
/// restart would fail to unwrap the data key).
pub const REASON_KEY_SOURCE_UNAVAILABLE: &str = "KeySourceUnavailable";
/// The server reports no encryption: it would store plaintext.
pub const REASON_SERVER_NOT_ENCRYPTING: &str = "ServerNotEncrypting";
/// The server is not serving (for another reason than its data key).
pub const REASON_WAITING_FOR_SERVER: &str = "WaitingForServer";
/// The server's admin API did not answer.
pub const REASON_NOT_REPORTED: &str = "NotReported";
/// Event reason of a done rotation.
pub const REASON_KEY_ROTATED: &str = "KeyRotated";

/// Key of the copy of the wrapped data key record in the `<fs-id>-ca`
/// Secret.
pub const WRAPPED_DATA_KEY: &str = "wrapped-data-key.json";

/// Field manager of that copy: the TLS material is applied under the
/// operator's own manager, and an apply of the CA Secret without the copy
/// must not remove it.
pub const DATA_KEY_FIELD_MANAGER: &str = "openefs-data-key";

/// Where the Secret with the current KEK is mounted in the server pod.
pub const KEK_PATH: &str = "/etc/openefs/kek";
/// Where the Secret with the previous KEK is mounted, while one is needed.
pub const PREVIOUS_KEK_PATH: &str = "/etc/openefs/previous-kek";
/// The file name of the KEK in both mounts.
pub const KEK_FILE: &str = "kek";
/// Where the node directory holding the KMS plugin's socket is mounted.
pub const KMS_PATH: &str = "/var/run/openefs/kms";

/// What encryption adds to the server pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodParts {
    pub args: Vec<String>,
    pub volumes: Vec<Volume>,
    pub mounts: Vec<VolumeMount>,
}

/// nfsd's KEK flags, volumes and mounts for `fs` (nothing when it is not
/// encrypted). The previous KEK is the `status.encryption.kmsKey` the data
/// key was last seen wrapped with, when the spec now names another Secret
/// key: nfsd unwraps with it and rewraps with the new one at start.
pub fn pod_parts(fs: &FileSystem) -> Result<PodParts, Error> {
    let mut parts = PodParts::default();
    if !fs.spec.encrypted {
        return Ok(parts);
    }
    let invalid = |reason: &str| Error::InvalidKmsKey {
        reason: reason.to_owned(),
    };
    let current = fs
        .spec
        .kms_key
        .as_ref()
        .ok_or_else(|| invalid("encrypted is true and kmsKey is missing"))?;
    match (&current.secret_key_ref, &current.kms_plugin) {
        (Some(secret), None) => {
            parts.secret_kek("kek", KEK_PATH, secret, false);
            parts.args.push("--kek-file".to_owned());
            parts.args.push(format!("{KEK_PATH}/{KEK_FILE}"));
        }
        (None, Some(plugin)) => {
            let (directory, socket) = socket_location(&plugin.endpoint)?;
            parts.volumes.push(Volume {
                name: "kms".to_owned(),
                host_path: Some(HostPathVolumeSource {
                    path: directory,
                    type_: Some("Directory".to_owned()),
                }),
                ..Volume::default()
            });
            // The directory, not the socket: a restarted plugin makes a new
            // socket, which a mount of the old one would not see.
            parts.mounts.push(VolumeMount {
                name: "kms".to_owned(),
                mount_path: KMS_PATH.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
            parts.args.push("--kms-endpoint".to_owned());
            parts.args.push(format!("unix://{KMS_PATH}/{socket}"));
        }
        _ => {
            return Err(invalid(
                "exactly one of secretKeyRef or kmsPlugin must be set",
            ));
        }
    }
    Ok(with_previous(parts, fs, current))
}

fn with_previous(mut parts: PodParts, fs: &FileSystem, current: &KmsKey) -> PodParts {
    if let Some(previous) = previous_secret(fs, current) {
        // Optional: once the old Secret is deleted, the pod still starts
        // (the data key is then wrapped by the new KEK, or nfsd says why not).
        parts.secret_kek("previous-kek", PREVIOUS_KEK_PATH, previous, true);
        parts.args.push("--previous-kek-file".to_owned());
        parts.args.push(format!("{PREVIOUS_KEK_PATH}/{KEK_FILE}"));
    }
    parts
}

/// The Secret key the data key is still wrapped with when the spec names
/// another source. A previous KMS plugin has no flag: nfsd unwraps with a
/// previous key only from a file.
fn previous_secret<'a>(
    fs: &'a FileSystem,
    current: &KmsKey,
) -> Option<&'a openefs_crds::SecretKeyRef> {
    let wrapped_with = fs.status.as_ref()?.encryption.as_ref()?.kms_key.as_ref()?;
    (wrapped_with != current)
        .then_some(wrapped_with.secret_key_ref.as_ref())
        .flatten()
}

impl PodParts {
    /// A Secret volume with just the KEK's key, readable by nfsd only (it
    /// runs as root), mounted read-only as a directory: a sub-path mount
    /// would never see the Secret's updates, which are how a KEK is rotated
    /// in place.
    fn secret_kek(
        &mut self,
        name: &str,
        path: &str,
        secret: &openefs_crds::SecretKeyRef,
        optional: bool,
    ) {
        self.volumes.push(Volume {
            name: name.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                items: Some(vec![KeyToPath {
                    key: secret.key.clone(),
                    path: KEK_FILE.to_owned(),
                    ..KeyToPath::default()
                }]),
                default_mode: Some(0o400),
                optional: optional.then_some(true),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        self.mounts.push(VolumeMount {
            name: name.to_owned(),
            mount_path: path.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
}

/// The node directory of a `unix:///dir/socket` endpoint and the socket's
/// name in it. The directory is mounted from the node, so it must be a
/// plain absolute path below `/` (never `/` itself), as written: no `.`,
/// `..` or empty segments.
fn socket_location(endpoint: &str) -> Result<(String, String), Error> {
    let invalid = |reason: &str| Error::InvalidKmsKey {
        reason: format!("kmsPlugin.endpoint {endpoint:?}: {reason}"),
    };
    let path = endpoint
        .strip_prefix("unix:///")
        .ok_or_else(|| invalid("not unix:///absolute/path"))?;
    let segments: Vec<&str> = path.split('/').collect();
    if segments
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        return Err(invalid("the path must not contain ., .. or empty segments"));
    }
    match segments.split_last() {
        Some((socket, directory)) if !directory.is_empty() => {
            Ok((format!("/{}", directory.join("/")), (*socket).to_owned()))
        }
        _ => Err(invalid(
            "the socket must be in a directory below /, which is mounted into the server pod",
        )),
    }
}

/// Why the nfsd container of `pod` last stopped, when it stopped over its
/// data key: nfsd then writes one line ([`KEY_ERROR_PREFIX`], the record's
/// and the configured key ids) to its termination log, which the kubelet
/// reports as the container's termination message. `None` while nfsd runs,
/// or when it stopped for another reason (whose message is the end of its
/// log).
pub fn key_error(pod: &Pod) -> Option<String> {
    let status = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == NFSD_CONTAINER)?;
    let state = status.state.as_ref()?;
    // A running container's last termination is history: the key may
    // have been fixed since.
    if state.running.is_some() {
        return None;
    }
    let terminated = state
        .terminated
        .as_ref()
        .or_else(|| status.last_state.as_ref()?.terminated.as_ref())?;
    let message = terminated.message.as_deref()?.trim();
    let about_keys =
        message.starts_with(KEY_ERROR_PREFIX) || message.to_ascii_lowercase().contains("data key");
    (terminated.exit_code != 0 && about_keys).then(|| message.to_owned())
}

/// What the reconciler learnt about a file system's encryption.
#[derive(Debug, Clone)]
pub enum Observation {
    /// The server is not serving; `key_error` is the termination message
    /// of an nfsd that stopped over its data key.
    NotServing { key_error: Option<String> },
    /// GetEncryption failed.
    Unreachable(tonic::Status),
    /// What nfsd reported, after a rotation if one was due.
    Reported {
        encryption: api::Encryption,
        rotation: Rotation,
    },
}

/// The outcome of comparing the wrapping KEK with the source's current one.
#[derive(Debug, Clone)]
pub enum Rotation {
    NotNeeded,
    Rotated { from: String, to: String },
    Failed { to: String, error: tonic::Status },
}

/// Whether the source offers a KEK other than the one wrapping the data key.
pub fn rotation_due(e: &api::Encryption) -> bool {
    e.enabled
        && e.current_key_error.is_empty()
        && !e.current_key_id.is_empty()
        && e.wrapping_key_id != e.current_key_id
}

/// `EncryptionReady` from what was observed.
pub fn verdict(observation: &Observation) -> Verdict {
    let verdict = |status, reason, message: String| Verdict {
        type_: ENCRYPTION_READY,
        status,
        reason,
        message,
    };
    match observation {
        Observation::NotServing {
            key_error: Some(message),
        } => verdict(
            Status::False,
            REASON_DATA_KEY_UNAVAILABLE,
            format!("nfsd refused to serve: {message}"),
        ),
        Observation::NotServing { key_error: None } => verdict(
            Status::Unknown,
            REASON_WAITING_FOR_SERVER,
            "reported once the server is ready".to_owned(),
        ),
        Observation::Unreachable(s) => verdict(
            Status::Unknown,
            REASON_NOT_REPORTED,
            format!("nfsd's admin API: {}", s.message()),
        ),
        Observation::Reported { encryption: e, .. } if !e.enabled => verdict(
            Status::False,
            REASON_SERVER_NOT_ENCRYPTING,
            "nfsd reports that it does not encrypt file data (is its image older than the \
             operator?)"
                .to_owned(),
        ),
        Observation::Reported {
            encryption: e,
            rotation: Rotation::Failed { to, error },
        } => verdict(
            Status::False,
            REASON_ROTATION_FAILED,
            format!(
                "rewrapping the data key from {} to {to}: {}",
                e.wrapping_key_id,
                error.message()
            ),
        ),
        Observation::Reported { encryption: e, .. } if !e.current_key_error.is_empty() => verdict(
            Status::False,
            REASON_KEY_SOURCE_UNAVAILABLE,
            format!(
                "the data key is wrapped by {}, but the key source cannot be read now (a \
                 restart would fail): {}",
                e.wrapping_key_id, e.current_key_error
            ),
        ),
        Observation::Reported { encryption: e, .. } => verdict(
            Status::True,
            REASON_DATA_KEY_CURRENT,
            format!(
                "{} data key wrapped by {} ({})",
                e.algorithm, e.wrapping_key_id, e.key_source
            ),
        ),
    }
}

/// `status.encryption` from nfsd's report, `None` when it reports nothing
/// usable (the last one stays). `confirmed`: the pod runs the current
/// template and the data key is wrapped by its current KEK, so it is
/// wrapped by the spec's `kmsKey`; otherwise the last known one stays.
pub fn status(fs: &FileSystem, e: &api::Encryption, confirmed: bool) -> Option<EncryptionStatus> {
    let key_source = match e.key_source.as_str() {
        "secret" => KeySource::Secret,
        "kms" => KeySource::Kms,
        _ => return None,
    };
    if !e.enabled || e.wrapping_key_id.is_empty() {
        return None;
    }
    let last = fs.status.as_ref().and_then(|s| s.encryption.as_ref());
    let settled = confirmed && e.current_key_error.is_empty() && !rotation_due(e);
    Some(EncryptionStatus {
        key_source,
        key_id: e.wrapping_key_id.clone(),
        last_rotation_time: e.wrapped_at.parse::<Timestamp>().ok().map(Time),
        kms_key: if settled {
            fs.spec.kms_key.clone()
        } else {
            last.and_then(|l| l.kms_key.clone())
        },
    })
}

/// The events of a rotation.
pub fn rotation_events(rotation: &Rotation) -> Vec<Event> {
    match rotation {
        Rotation::NotNeeded => Vec::new(),
        Rotation::Rotated { from, to } => vec![events::normal(
            REASON_KEY_ROTATED,
            format!("data key rewrapped from {from} to {to}"),
        )],
        Rotation::Failed { to, error } => vec![events::warning(
            REASON_ROTATION_FAILED,
            format!("rewrapping the data key to {to}: {}", error.message()),
        )],
    }
}

/// Asks a serving nfsd for its encryption, rotates the KEK when the source
/// offers a new one, and keeps a copy of the wrapped data key in the
/// `<fs-id>-ca` Secret; reads the pod of a server that is not serving for
/// a key error.
pub async fn observe(
    client: &Client,
    admin: &dyn AdminCalls,
    factory: &MetaFactory,
    (endpoint, token): (String, String),
    serving: bool,
) -> Observation {
    if !serving {
        return Observation::NotServing {
            key_error: server_key_error(client, factory).await,
        };
    }
    let encryption = match admin.encryption(endpoint.clone(), token.clone()).await {
        Ok(e) => e,
        Err(s) => return Observation::Unreachable(s),
    };
    let (encryption, rotation) = if rotation_due(&encryption) {
        let (from, to) = (
            encryption.wrapping_key_id.clone(),
            encryption.current_key_id.clone(),
        );
        match admin.rewrap(endpoint, token).await {
            Ok(rewrapped) => {
                tracing::info!(%from, %to, "data key rewrapped");
                (rewrapped, Rotation::Rotated { from, to })
            }
            Err(error) => {
                tracing::warn!(%from, %to, %error, "rewrapping the data key failed");
                (encryption, Rotation::Failed { to, error })
            }
        }
    } else {
        (encryption, Rotation::NotNeeded)
    };
    if encryption.enabled
        && !encryption.wrapped_data_key.is_empty()
        && let Err(error) = keep_copy(client, factory, &encryption.wrapped_data_key).await
    {
        // Retried at the next reconcile; the volume's copy is the one nfsd
        // reads.
        tracing::warn!(%error, "copy of the wrapped data key not written");
    }
    Observation::Reported {
        encryption,
        rotation,
    }
}

async fn server_key_error(client: &Client, factory: &MetaFactory) -> Option<String> {
    let name = format!("{}-0", stateful_set_name(factory.id()));
    match Api::<Pod>::namespaced(client.clone(), factory.namespace())
        .get_opt(&name)
        .await
    {
        Ok(pod) => pod.as_ref().and_then(key_error),
        Err(error) => {
            tracing::warn!(%error, pod = %name, "server pod not read");
            None
        }
    }
}

/// Writes `record` into the CA Secret unless it is there already.
async fn keep_copy(client: &Client, factory: &MetaFactory, record: &[u8]) -> Result<(), Error> {
    let name = ca_secret_name(factory.id());
    let api: Api<Secret> = Api::namespaced(client.clone(), factory.namespace());
    let stored = api.get_opt(&name).await.map_err(|source| Error::Read {
        what: format!("Secret {}/{name}", factory.namespace()),
        source: Box::new(source),
    })?;
    let kept = stored
        .as_ref()
        .and_then(|s| s.data.as_ref()?.get(WRAPPED_DATA_KEY))
        .map(|b| b.0.as_slice());
    if kept == Some(record) {
        return Ok(());
    }
    let copy = Secret {
        metadata: factory.meta(&name, true),
        data: Some(BTreeMap::from([(
            WRAPPED_DATA_KEY.to_owned(),
            ByteString(record.to_vec()),
        )])),
        ..Secret::default()
    };
    crate::apply::object_as(client, &copy, DATA_KEY_FIELD_MANAGER).await?;
    tracing::info!(secret = %name, "copy of the wrapped data key written");
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fs(spec: serde_json::Value, wrapped_with: Option<serde_json::Value>) -> FileSystem {
        let mut fs = FileSystem::new("shared", serde_json::from_value(spec).unwrap());
        fs.status = wrapped_with.map(|kms_key| {
            serde_json::from_value(json!({"encryption": {
                "keySource": "secret", "keyId": "sha256:aaaa", "kmsKey": kms_key}}))
            .unwrap()
        });
        fs
    }

    fn secret(name: &str) -> serde_json::Value {
        json!({"secretKeyRef": {"name": name, "key": "kek"}})
    }

    fn encrypted(kms_key: serde_json::Value) -> serde_json::Value {
        json!({"encrypted": true, "kmsKey": kms_key})
    }

    #[test]
    fn a_plain_file_system_gets_nothing() {
        assert_eq!(
            pod_parts(&fs(json!({}), None)).unwrap(),
            PodParts::default()
        );
    }

    #[test]
    fn a_secret_kek_is_one_key_mounted_read_only_for_root() {
        let parts = pod_parts(&fs(encrypted(secret("vault")), None)).unwrap();
        assert_eq!(parts.args, ["--kek-file", "/etc/openefs/kek/kek"]);
        let source = parts.volumes[0].secret.as_ref().unwrap();
        assert_eq!(source.secret_name.as_deref(), Some("vault"));
        assert_eq!(
            source.items,
            Some(vec![KeyToPath {
                key: "kek".into(),
                path: "kek".into(),
                ..KeyToPath::default()
            }])
        );
        assert_eq!(source.default_mode, Some(0o400));
        assert_eq!(source.optional, None, "the pod waits for the current KEK");
        assert_eq!(parts.mounts[0].mount_path, KEK_PATH);
        assert_eq!(parts.mounts[0].read_only, Some(true));
        assert_eq!(parts.mounts[0].sub_path, None);
        // Wrapped by the same key: no previous one.
        let same = pod_parts(&fs(encrypted(secret("vault")), Some(secret("vault")))).unwrap();
        assert_eq!(same, parts);
    }

    #[test]
    fn the_previous_secret_is_mounted_while_the_data_key_is_wrapped_by_it() {
        let parts = pod_parts(&fs(encrypted(secret("new")), Some(secret("old")))).unwrap();
        assert_eq!(
            parts.args,
            [
                "--kek-file",
                "/etc/openefs/kek/kek",
                "--previous-kek-file",
                "/etc/openefs/previous-kek/kek"
            ]
        );
        let previous = parts.volumes[1].secret.as_ref().unwrap();
        assert_eq!(previous.secret_name.as_deref(), Some("old"));
        assert_eq!(previous.optional, Some(true));
        assert_eq!(parts.mounts[1].mount_path, PREVIOUS_KEK_PATH);
        // From a Secret to a KMS plugin: the Secret is the previous KEK.
        let plugin = json!({"kmsPlugin": {"endpoint": "unix:///run/kms/plugin.sock"}});
        let parts = pod_parts(&fs(encrypted(plugin.clone()), Some(secret("old")))).unwrap();
        assert!(parts.args.contains(&"--previous-kek-file".to_owned()));
        // A previous KMS plugin cannot be passed (nfsd takes a file).
        let parts = pod_parts(&fs(encrypted(secret("new")), Some(plugin))).unwrap();
        assert!(!parts.args.contains(&"--previous-kek-file".to_owned()));
    }

    #[test]
    fn a_kms_plugin_socket_directory_is_mounted_from_the_node() {
        let plugin = json!({"kmsPlugin": {"endpoint": "unix:///var/run/kmsplugin/socket.sock"}});
        let parts = pod_parts(&fs(encrypted(plugin), None)).unwrap();
        assert_eq!(
            parts.args,
            ["--kms-endpoint", "unix:///var/run/openefs/kms/socket.sock"]
        );
        let host = parts.volumes[0].host_path.as_ref().unwrap();
        assert_eq!(host.path, "/var/run/kmsplugin");
        assert_eq!(host.type_.as_deref(), Some("Directory"));
        assert_eq!(parts.mounts[0].mount_path, KMS_PATH);
        for bad in [
            "unix:///socket.sock",
            "unix:///run/../etc/x.sock",
            "unix:///run/./x.sock",
            "unix:///run//x.sock",
            "unix:///run/kms/",
            "unix://relative/x.sock",
            "tcp://127.0.0.1:1",
        ] {
            let err = pod_parts(&fs(
                encrypted(json!({"kmsPlugin": {"endpoint": bad}})),
                None,
            ))
            .unwrap_err();
            assert!(matches!(err, Error::InvalidKmsKey { .. }), "{bad}: {err}");
            assert_eq!(err.retry(), crate::Retry::WaitForChange);
        }
    }

    fn pod(state: serde_json::Value, last: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"status": {"containerStatuses": [{
            "name": "nfsd", "ready": false, "restartCount": 1, "image": "x", "imageID": "",
            "state": state, "lastState": last}]}}))
        .unwrap()
    }

    #[test]
    fn only_a_stop_over_the_data_key_is_a_key_error() {
        let key = json!({"terminated": {"exitCode": 1,
            "message": "nfsd: cannot unwrap the Data Key (record sha256:a, configured sha256:b)\n"}});
        let waiting = json!({"waiting": {"reason": "CrashLoopBackOff"}});
        assert_eq!(
            key_error(&pod(waiting.clone(), key.clone())).as_deref(),
            Some("nfsd: cannot unwrap the Data Key (record sha256:a, configured sha256:b)")
        );
        assert!(key_error(&pod(key.clone(), json!({}))).is_some());
        // Running again: the error is history.
        assert_eq!(key_error(&pod(json!({"running": {}}), key)), None);
        let missing = json!({"terminated": {"exitCode": 1, "message":
            "encryption at rest: reading KEK file /etc/openefs/kek/kek: No such file or directory"}});
        assert!(key_error(&pod(waiting.clone(), missing)).is_some());
        let crash = json!({"terminated": {"exitCode": 2, "message": "panicked at main.rs"}});
        assert_eq!(key_error(&pod(waiting.clone(), crash)), None);
        let clean = json!({"terminated": {"exitCode": 0, "message": "data key"}});
        assert_eq!(key_error(&pod(waiting, clean)), None);
        assert_eq!(key_error(&Pod::default()), None);
    }

    fn reported(wrapping: &str, current: &str, error: &str) -> api::Encryption {
        api::Encryption {
            enabled: true,
            algorithm: "AES-256-XTS".into(),
            key_source: "kms".into(),
            wrapping_key_id: wrapping.into(),
            current_key_id: current.into(),
            current_key_error: error.into(),
            wrapped_data_key: b"{}".to_vec(),
            wrapped_at: "2026-11-30T10:00:00Z".into(),
        }
    }

    #[test]
    fn rotation_is_due_only_for_a_known_other_current_key() {
        assert!(rotation_due(&reported("a", "b", "")));
        assert!(!rotation_due(&reported("a", "a", "")));
        assert!(!rotation_due(&reported("a", "", "socket gone")));
        let mut plain = reported("a", "b", "");
        plain.enabled = false;
        assert!(!rotation_due(&plain));
    }

    #[test]
    fn the_verdict_says_what_is_wrong() {
        let of = |e: api::Encryption| {
            let v = verdict(&Observation::Reported {
                encryption: e,
                rotation: Rotation::NotNeeded,
            });
            (v.status, v.reason)
        };
        assert_eq!(
            of(reported("a", "a", "")),
            (Status::True, REASON_DATA_KEY_CURRENT)
        );
        assert_eq!(
            of(reported("a", "", "connecting: no such file")),
            (Status::False, REASON_KEY_SOURCE_UNAVAILABLE)
        );
        let mut plain = reported("", "", "");
        plain.enabled = false;
        assert_eq!(of(plain), (Status::False, REASON_SERVER_NOT_ENCRYPTING));
        let unreachable = verdict(&Observation::Unreachable(tonic::Status::unavailable("x")));
        assert_eq!(
            (unreachable.status, unreachable.reason),
            (Status::Unknown, REASON_NOT_REPORTED)
        );
    }

    #[test]
    fn the_status_confirms_the_spec_key_only_when_settled() {
        let plugin = json!({"kmsPlugin": {"endpoint": "unix:///run/kms/plugin.sock"}});
        let object = fs(encrypted(plugin), Some(secret("old")));
        let settled = status(&object, &reported("k2", "k2", ""), true).unwrap();
        assert_eq!(settled.key_source, KeySource::Kms);
        assert_eq!(settled.key_id, "k2");
        assert_eq!(settled.kms_key, object.spec.kms_key);
        assert_eq!(
            settled.last_rotation_time,
            Some(Time("2026-11-30T10:00:00Z".parse().unwrap()))
        );
        let old = object.status.as_ref().unwrap().encryption.clone().unwrap();
        for (e, confirmed) in [
            (reported("k2", "k2", ""), false),
            (reported("k1", "k2", ""), true),
            (reported("k1", "", "down"), true),
        ] {
            assert_eq!(status(&object, &e, confirmed).unwrap().kms_key, old.kms_key);
        }
        let mut unknown = reported("k2", "k2", "");
        unknown.key_source = "vault".into();
        assert_eq!(status(&object, &unknown, true), None);
    }
}
