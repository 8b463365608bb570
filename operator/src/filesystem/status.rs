//! The FileSystem status, as a pure function of the object and what was
//! observed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use openefs_crds::{
    EncryptionStatus, FileSystem, FileSystemId, FileSystemStatus, LifecyclePhase, SizeInBytes,
    ThroughputStatus,
};

use crate::conditions::{self, READY, Status, Verdict};

/// `True` when the backing PersistentVolumeClaim is bound. Written with the
/// other conditions when the operator manages the core objects; read only
/// (another writer reports it) under `--only-custom-resources`.
pub const BACKING_STORAGE_READY: &str = "BackingStorageReady";

/// `True` when the NFS server pod is ready. Written or read as
/// [`BACKING_STORAGE_READY`].
pub const SERVER_READY: &str = "ServerReady";

/// `True` when an encrypted file system's server holds its data key and the
/// key is wrapped by the key source's current key-encryption key (see
/// [`super::encryption`]). Written or read as [`BACKING_STORAGE_READY`].
pub const ENCRYPTION_READY: &str = "EncryptionReady";

/// `True` when a file system that was Available stopped serving.
pub const DEGRADED: &str = "Degraded";

/// Condition types the reconciler always writes; the component conditions
/// it writes only when it observed them ([`Observed::components`]).
pub const OWNED_CONDITIONS: [&str; 2] = [READY, DEGRADED];

/// Ready reason when the file system can be mounted.
pub const REASON_AVAILABLE: &str = "Available";
/// Ready reason while the backing volume is not ready.
pub const REASON_BACKING_STORAGE_NOT_READY: &str = "BackingStorageNotReady";
/// Ready reason while the server is not ready.
pub const REASON_SERVER_NOT_READY: &str = "ServerNotReady";
/// Ready reason while an encrypted file system's data key is not ready.
pub const REASON_ENCRYPTION_NOT_READY: &str = "EncryptionNotReady";
/// Ready reason while the FileSystem is being deleted.
pub const REASON_DELETING: &str = "Deleting";
/// Ready reason while deletion waits for AccessPoints that reference it.
pub const REASON_ACCESS_POINTS_EXIST: &str = "AccessPointsExist";
/// Ready reason while deletion waits for PersistentVolumes that use it.
pub const REASON_VOLUMES_EXIST: &str = "VolumesExist";
/// Degraded reason when nothing is wrong.
pub const REASON_AS_EXPECTED: &str = "AsExpected";

/// What the reconciler saw besides the object itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Names of the AccessPoints that reference this FileSystem; only
    /// looked up (and only relevant) while it is being deleted.
    pub blocking_access_points: Vec<String>,
    /// Names of the PersistentVolumes whose handle names this FileSystem;
    /// looked up while it is being deleted, when the operator manages core
    /// objects.
    pub blocking_volumes: Vec<String>,
    /// `BackingStorageReady`, `ServerReady` (and more) as judged from the core
    /// objects; empty under `--only-custom-resources`, where another writer
    /// reports them and they are only read.
    pub components: Vec<Verdict>,
    /// What the server reported just now through its admin API; `None`
    /// when it could not be asked (the last figures stay).
    pub usage: Option<Usage>,
    /// The CA certificate of the server's TLS material; `None` when the
    /// material was not looked at (the last one stays).
    pub ca_bundle: Option<String>,
    /// The server's StatefulSet is rolling out a new revision
    /// ([`super::server::rolling_out`]).
    pub rolling_out: bool,
    /// The encryption the server reported just now; `None` when it was not
    /// asked or said nothing usable (the last one stays).
    pub encryption: Option<EncryptionStatus>,
}

/// A server's figures for the status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub client_connections: i32,
    pub stored_bytes: i64,
    /// `None` when throughput is not limited (elastic).
    pub permitted_mibps: Option<f64>,
    /// Only in bursting mode.
    pub burst_credit_balance_bytes: Option<i64>,
}

/// The status `fs` should have. Fields this side does not compute
/// (size, throughput, connections, conditions of other types) are kept.
pub fn desired(
    fs: &FileSystem,
    id: FileSystemId,
    endpoint: String,
    observed: &Observed,
    now: &Time,
) -> FileSystemStatus {
    let mut current = fs.status.clone().unwrap_or_default();
    let generation = fs.metadata.generation;
    current.conditions =
        conditions::merge(&current.conditions, &observed.components, generation, now);
    let deleting = fs.metadata.deletion_timestamp.is_some();
    let ready = ready_verdict(&current.conditions, deleting, fs.spec.encrypted, observed);
    let is_ready = ready.status == Status::True;
    let phase = conditions::phase(current.phase, deleting, is_ready, observed.rolling_out);
    let degraded = if phase == LifecyclePhase::Error {
        Verdict {
            type_: DEGRADED,
            status: Status::True,
            reason: ready.reason,
            message: format!("was Available and stopped serving: {}", ready.message),
        }
    } else {
        Verdict {
            type_: DEGRADED,
            status: Status::False,
            reason: REASON_AS_EXPECTED,
            message: String::new(),
        }
    };
    FileSystemStatus {
        observed_generation: generation,
        phase: Some(phase),
        conditions: conditions::merge(&current.conditions, &[ready, degraded], generation, now),
        file_system_id: Some(id),
        endpoint: Some(endpoint),
        ca_bundle: observed.ca_bundle.clone().or(current.ca_bundle),
        client_connections: observed
            .usage
            .as_ref()
            .map(|u| u.client_connections)
            .or(current.client_connections),
        size_in_bytes: match &observed.usage {
            // The time a figure was metered moves only with the figure, so
            // that an idle file system's status is not rewritten.
            Some(u) if current.size_in_bytes.as_ref().map(|s| s.value) != Some(u.stored_bytes) => {
                Some(SizeInBytes {
                    value: u.stored_bytes,
                    timestamp: now.clone(),
                })
            }
            _ => current.size_in_bytes.clone(),
        },
        throughput: match &observed.usage {
            Some(u) => u.permitted_mibps.map(|permitted_mibps| ThroughputStatus {
                permitted_mibps,
                burst_credit_balance_bytes: u.burst_credit_balance_bytes,
            }),
            None => current.throughput.clone(),
        },
        encryption: observed.encryption.clone().or(current.encryption),
    }
}

/// The part of `status` the reconciler owns, for server-side apply: applying
/// it never touches the fields and conditions other writers own.
pub fn owned(status: &FileSystemStatus, observed: &Observed) -> FileSystemStatus {
    let owns = |type_: &str| {
        OWNED_CONDITIONS.contains(&type_) || observed.components.iter().any(|v| v.type_ == type_)
    };
    FileSystemStatus {
        observed_generation: status.observed_generation,
        phase: status.phase,
        conditions: status
            .conditions
            .iter()
            .filter(|c| owns(&c.type_))
            .cloned()
            .collect(),
        file_system_id: status.file_system_id.clone(),
        endpoint: status.endpoint.clone(),
        ca_bundle: observed.ca_bundle.as_ref().and(status.ca_bundle.clone()),
        // Sent only when observed: otherwise the last figures stay. An
        // unlimited throughput is sent as no field, which removes it.
        client_connections: observed.usage.as_ref().and(status.client_connections),
        size_in_bytes: observed.usage.as_ref().and(status.size_in_bytes.clone()),
        throughput: observed.usage.as_ref().and(status.throughput.clone()),
        encryption: observed.encryption.as_ref().and(status.encryption.clone()),
    }
}

fn ready_verdict(
    current: &[Condition],
    deleting: bool,
    encrypted: bool,
    observed: &Observed,
) -> Verdict {
    let not_ready = |reason, message| Verdict {
        type_: READY,
        status: Status::False,
        reason,
        message,
    };
    if deleting {
        return match (
            observed.blocking_access_points.as_slice(),
            observed.blocking_volumes.as_slice(),
        ) {
            ([], []) => not_ready(REASON_DELETING, "being deleted".to_owned()),
            ([], volumes) => not_ready(
                REASON_VOLUMES_EXIST,
                format!(
                    "deletion waits until the PersistentVolumes that use this FileSystem are deleted: {}",
                    volumes.join(", ")
                ),
            ),
            (names, _) => not_ready(
                REASON_ACCESS_POINTS_EXIST,
                format!(
                    "deletion waits until the AccessPoints that reference this FileSystem are deleted: {}",
                    names.join(", ")
                ),
            ),
        };
    }
    let components = [
        (BACKING_STORAGE_READY, REASON_BACKING_STORAGE_NOT_READY),
        (SERVER_READY, REASON_SERVER_NOT_READY),
    ];
    // An encrypted file system is mountable only once its data key is.
    let encryption = encrypted.then_some((ENCRYPTION_READY, REASON_ENCRYPTION_NOT_READY));
    for (type_, reason) in components.into_iter().chain(encryption) {
        if !conditions::is_true(current, type_) {
            return not_ready(reason, component_message(current, type_));
        }
    }
    Verdict {
        type_: READY,
        status: Status::True,
        reason: REASON_AVAILABLE,
        message: String::new(),
    }
}

fn component_message(current: &[Condition], type_: &str) -> String {
    match conditions::find(current, type_) {
        None => format!("{type_} has not been reported"),
        Some(c) if c.message.is_empty() => format!("{type_} is {} ({})", c.status, c.reason),
        Some(c) => format!("{type_} is {} ({}): {}", c.status, c.reason, c.message),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::conditions::tests::at;

    const UID: &str = "6f3a1c2e-9b7d-4e21-8c55-0a1b2c3d4e5f";

    fn fs(generation: i64) -> FileSystem {
        let mut fs = FileSystem::new("shared", serde_json::from_str("{}").unwrap());
        fs.metadata = ObjectMeta {
            name: Some("shared".into()),
            namespace: Some("team".into()),
            uid: Some(UID.into()),
            generation: Some(generation),
            ..ObjectMeta::default()
        };
        fs
    }

    fn reconcile(fs: &FileSystem, observed: &Observed, now: i64) -> FileSystemStatus {
        desired(
            fs,
            FileSystemId::from_uid(UID),
            "fs-x.team.svc.cluster.local".into(),
            observed,
            &at(now),
        )
    }

    /// Plays the part that manages core kinds, which owns these conditions.
    fn report(status: &mut FileSystemStatus, type_: &'static str, ok: bool, now: i64) {
        status.conditions = conditions::merge(
            &status.conditions,
            &[Verdict {
                type_,
                status: Status::from_bool(ok),
                reason: if ok { "Ready" } else { "Pending" },
                message: String::new(),
            }],
            Some(1),
            &at(now),
        );
    }

    fn ready(status: &FileSystemStatus) -> &Condition {
        conditions::find(&status.conditions, READY).unwrap()
    }

    #[test]
    fn new_file_system_is_creating_with_ids_and_endpoint() {
        let status = reconcile(&fs(1), &Observed::default(), 0);
        assert_eq!(status.phase, Some(LifecyclePhase::Creating));
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(
            status.file_system_id.as_ref().map(FileSystemId::as_str),
            Some("fs-85629fff8f20c8a89")
        );
        assert_eq!(
            status.endpoint.as_deref(),
            Some("fs-x.team.svc.cluster.local")
        );
        let r = ready(&status);
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", REASON_BACKING_STORAGE_NOT_READY)
        );
        assert_eq!(r.message, "BackingStorageReady has not been reported");
        assert!(!conditions::is_true(&status.conditions, DEGRADED));
    }

    #[test]
    fn ready_follows_the_reported_components_and_degrades_after_available() {
        let mut object = fs(1);
        let mut status = reconcile(&object, &Observed::default(), 0);
        report(&mut status, BACKING_STORAGE_READY, true, 1);
        object.status = Some(status);
        let status = reconcile(&object, &Observed::default(), 2);
        assert_eq!(ready(&status).reason, REASON_SERVER_NOT_READY);
        assert_eq!(status.phase, Some(LifecyclePhase::Creating));
        assert_eq!(ready(&status).last_transition_time, at(0));

        let mut status = status;
        report(&mut status, SERVER_READY, true, 3);
        object.status = Some(status);
        let status = reconcile(&object, &Observed::default(), 4);
        assert_eq!(status.phase, Some(LifecyclePhase::Available));
        assert_eq!(ready(&status).status, "True");
        assert_eq!(ready(&status).last_transition_time, at(4));

        // A resync with nothing new is exactly the stored status: no patch.
        object.status = Some(status.clone());
        assert_eq!(reconcile(&object, &Observed::default(), 9), status);

        let mut status = status;
        report(&mut status, SERVER_READY, false, 10);
        object.status = Some(status);
        let status = reconcile(&object, &Observed::default(), 11);
        assert_eq!(status.phase, Some(LifecyclePhase::Error));
        let degraded = conditions::find(&status.conditions, DEGRADED).unwrap();
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", REASON_SERVER_NOT_READY)
        );
        assert_eq!(ready(&status).message, "ServerReady is False (Pending)");
    }

    #[test]
    fn observed_components_decide_readiness_in_the_same_reconcile() {
        let component = |type_, ok| Verdict {
            type_,
            status: Status::from_bool(ok),
            reason: if ok { "Ready" } else { "Pending" },
            message: String::new(),
        };
        let observed = Observed {
            components: vec![
                component(BACKING_STORAGE_READY, true),
                component(SERVER_READY, true),
            ],
            ..Observed::default()
        };
        let status = reconcile(&fs(1), &observed, 0);
        assert_eq!(status.phase, Some(LifecyclePhase::Available));
        assert!(conditions::is_true(&status.conditions, SERVER_READY));

        let mut object = fs(1);
        object.status = Some(status);
        let observed = Observed {
            components: vec![
                component(BACKING_STORAGE_READY, true),
                component(SERVER_READY, false),
            ],
            ..Observed::default()
        };
        let status = reconcile(&object, &observed, 5);
        assert_eq!(status.phase, Some(LifecyclePhase::Error));
        assert_eq!(ready(&status).reason, REASON_SERVER_NOT_READY);
        let server = conditions::find(&status.conditions, SERVER_READY).unwrap();
        assert_eq!(server.last_transition_time, at(5));
    }

    #[test]
    fn a_rollout_after_available_is_updating_not_error() {
        let component = |type_, ok| Verdict {
            type_,
            status: Status::from_bool(ok),
            reason: if ok { "Ready" } else { "Pending" },
            message: String::new(),
        };
        let observed = |serving, rolling_out| Observed {
            components: vec![
                component(BACKING_STORAGE_READY, true),
                component(SERVER_READY, serving),
            ],
            rolling_out,
            ..Observed::default()
        };
        let mut object = fs(1);
        object.status = Some(reconcile(&object, &observed(true, false), 0));
        // The old pod is gone, the new one not ready yet.
        let status = reconcile(&object, &observed(false, true), 1);
        assert_eq!(status.phase, Some(LifecyclePhase::Updating));
        assert_eq!(ready(&status).reason, REASON_SERVER_NOT_READY);
        assert!(!conditions::is_true(&status.conditions, DEGRADED));
        object.status = Some(status);
        let status = reconcile(&object, &observed(true, false), 2);
        assert_eq!(status.phase, Some(LifecyclePhase::Available));
        // A rollout of a server that never served is still Creating.
        let status = reconcile(&fs(1), &observed(false, true), 0);
        assert_eq!(status.phase, Some(LifecyclePhase::Creating));
    }

    #[test]
    fn an_encrypted_file_system_is_ready_only_with_its_data_key() {
        let component = |type_, ok| Verdict {
            type_,
            status: Status::from_bool(ok),
            reason: if ok { "Ready" } else { "DataKeyUnavailable" },
            message: String::new(),
        };
        let observed = |key_ok| Observed {
            components: vec![
                component(BACKING_STORAGE_READY, true),
                component(SERVER_READY, true),
                component(ENCRYPTION_READY, key_ok),
            ],
            ..Observed::default()
        };
        let mut object = fs(1);
        object.spec = serde_json::from_value(serde_json::json!({
            "encrypted": true, "kmsKey": {"secretKeyRef": {"name": "kek", "key": "k"}}}))
        .unwrap();
        let status = reconcile(&object, &observed(false), 0);
        assert_eq!(ready(&status).reason, REASON_ENCRYPTION_NOT_READY);
        assert_eq!(
            ready(&status).message,
            "EncryptionReady is False (DataKeyUnavailable)"
        );
        assert_eq!(status.phase, Some(LifecyclePhase::Creating));
        let status = reconcile(&object, &observed(true), 1);
        assert_eq!(status.phase, Some(LifecyclePhase::Available));
        // Unencrypted: the condition is not looked at.
        let status = reconcile(&fs(1), &observed(false), 0);
        assert_eq!(status.phase, Some(LifecyclePhase::Available));
    }

    #[test]
    fn spec_change_moves_observed_generation_not_transition_times() {
        let mut object = fs(1);
        object.status = Some(reconcile(&object, &Observed::default(), 0));
        object.metadata.generation = Some(2);
        let status = reconcile(&object, &Observed::default(), 5);
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(ready(&status).observed_generation, Some(2));
        assert_eq!(ready(&status).last_transition_time, at(0));
    }

    #[test]
    fn deletion_names_the_access_points_it_waits_for() {
        let mut object = fs(1);
        object.metadata.deletion_timestamp = Some(at(1));
        let blocked = Observed {
            blocking_access_points: vec!["a".into(), "b".into()],
            ..Observed::default()
        };
        let status = reconcile(&object, &blocked, 2);
        assert_eq!(status.phase, Some(LifecyclePhase::Deleting));
        assert_eq!(ready(&status).reason, REASON_ACCESS_POINTS_EXIST);
        assert!(
            ready(&status).message.ends_with(": a, b"),
            "{}",
            ready(&status).message
        );
        let status = reconcile(&object, &Observed::default(), 2);
        assert_eq!(ready(&status).reason, REASON_DELETING);
    }

    #[test]
    fn owned_part_leaves_other_writers_fields_out() {
        let mut status = reconcile(&fs(1), &Observed::default(), 0);
        report(&mut status, SERVER_READY, true, 1);
        status.client_connections = Some(3);
        let owned_part = owned(&status, &Observed::default());
        let types: Vec<&str> = owned_part
            .conditions
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, [READY, DEGRADED]);
        let observing = Observed {
            components: vec![Verdict {
                type_: SERVER_READY,
                status: Status::True,
                reason: "Serving",
                message: String::new(),
            }],
            ..Observed::default()
        };
        let owned_with_server = owned(&status, &observing);
        let types: Vec<&str> = owned_with_server
            .conditions
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, [READY, DEGRADED, SERVER_READY]);
        let owned = owned_part;
        assert_eq!(owned.client_connections, None);
        assert_eq!(owned.endpoint, status.endpoint);
        assert_eq!(owned.file_system_id, status.file_system_id);
    }
}
