//! The AccessPoint status, as a pure function of the object and its
//! FileSystem.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use openefs_crds::{AccessPoint, AccessPointId, AccessPointStatus, FileSystem, LifecyclePhase};

use crate::conditions::{self, READY, Status, Verdict};

/// Ready reason when the access point can be mounted.
pub const REASON_AVAILABLE: &str = "Available";
/// Ready reason when the referenced FileSystem does not exist.
pub const REASON_FILE_SYSTEM_NOT_FOUND: &str = "FileSystemNotFound";
/// Ready reason when the referenced FileSystem exists but is not Available.
pub const REASON_FILE_SYSTEM_NOT_READY: &str = "FileSystemNotReady";

/// The status `ap` should have, given its FileSystem (`None`: not found).
pub fn desired(
    ap: &AccessPoint,
    id: AccessPointId,
    fs: Option<&FileSystem>,
    now: &Time,
) -> AccessPointStatus {
    let current = ap.status.clone().unwrap_or_default();
    let ready = ready_verdict(&ap.spec.file_system_ref.name, fs);
    let phase = conditions::phase(
        current.phase,
        ap.metadata.deletion_timestamp.is_some(),
        ready.status == Status::True,
        false,
    );
    let generation = ap.metadata.generation;
    AccessPointStatus {
        observed_generation: generation,
        phase: Some(phase),
        access_point_id: Some(id),
        conditions: conditions::merge(&current.conditions, &[ready], generation, now),
        ..current
    }
}

/// The part of `status` the custom-resource side owns, for server-side
/// apply: everything but the metered size.
pub fn owned(status: &AccessPointStatus) -> AccessPointStatus {
    AccessPointStatus {
        size_in_bytes: None,
        ..status.clone()
    }
}

fn ready_verdict(fs_name: &str, fs: Option<&FileSystem>) -> Verdict {
    let not_ready = |reason, message| Verdict {
        type_: READY,
        status: Status::False,
        reason,
        message,
    };
    let Some(fs) = fs else {
        return not_ready(
            REASON_FILE_SYSTEM_NOT_FOUND,
            format!("FileSystem {fs_name} does not exist in this namespace"),
        );
    };
    let status = fs.status.clone().unwrap_or_default();
    if fs.metadata.deletion_timestamp.is_some() {
        return not_ready(
            REASON_FILE_SYSTEM_NOT_READY,
            format!("FileSystem {fs_name} is being deleted"),
        );
    }
    // A FileSystem that is Updating while its new pod is already ready
    // serves; one whose pod is down in the rollout is not Ready.
    if matches!(
        status.phase,
        Some(LifecyclePhase::Available | LifecyclePhase::Updating)
    ) && conditions::is_true(&status.conditions, READY)
    {
        return Verdict {
            type_: READY,
            status: Status::True,
            reason: REASON_AVAILABLE,
            message: String::new(),
        };
    }
    let phase = status
        .phase
        .map_or_else(|| "not reconciled yet".to_owned(), |p| format!("{p:?}"));
    let message = match conditions::find(&status.conditions, READY) {
        Some(c) if !c.message.is_empty() => {
            format!(
                "FileSystem {fs_name} is {phase}: {} ({})",
                c.reason, c.message
            )
        }
        Some(c) => format!("FileSystem {fs_name} is {phase}: {}", c.reason),
        None => format!("FileSystem {fs_name} is {phase}"),
    };
    not_ready(REASON_FILE_SYSTEM_NOT_READY, message)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
    use openefs_crds::FileSystemStatus;

    use super::*;
    use crate::conditions::tests::at;

    fn ap() -> AccessPoint {
        let mut ap = AccessPoint::new(
            "web",
            serde_json::from_value(serde_json::json!({"fileSystemRef": {"name": "shared"}}))
                .unwrap(),
        );
        ap.metadata = ObjectMeta {
            name: Some("web".into()),
            namespace: Some("team".into()),
            uid: Some("u-1".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        };
        ap
    }

    fn fs(phase: LifecyclePhase, ready: &str) -> FileSystem {
        let mut fs = FileSystem::new("shared", serde_json::from_str("{}").unwrap());
        fs.status = Some(FileSystemStatus {
            phase: Some(phase),
            conditions: vec![Condition {
                type_: READY.into(),
                status: ready.into(),
                reason: "ServerNotReady".into(),
                message: "ServerReady has not been reported".into(),
                observed_generation: Some(1),
                last_transition_time: at(0),
            }],
            ..FileSystemStatus::default()
        });
        fs
    }

    fn ready(status: &AccessPointStatus) -> (&str, &str, &str) {
        let c = conditions::find(&status.conditions, READY).unwrap();
        (c.status.as_str(), c.reason.as_str(), c.message.as_str())
    }

    #[test]
    fn missing_file_system_is_not_found() {
        let status = desired(&ap(), AccessPointId::from_uid("u-1"), None, &at(0));
        assert_eq!(
            ready(&status),
            (
                "False",
                REASON_FILE_SYSTEM_NOT_FOUND,
                "FileSystem shared does not exist in this namespace"
            )
        );
        assert_eq!(status.phase, Some(LifecyclePhase::Creating));
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(status.access_point_id, Some(AccessPointId::from_uid("u-1")));
    }

    #[test]
    fn ready_only_when_the_file_system_is_available() {
        let creating = fs(LifecyclePhase::Creating, "False");
        let status = desired(
            &ap(),
            AccessPointId::from_uid("u-1"),
            Some(&creating),
            &at(0),
        );
        assert_eq!(
            ready(&status),
            (
                "False",
                REASON_FILE_SYSTEM_NOT_READY,
                "FileSystem shared is Creating: ServerNotReady (ServerReady has not been reported)"
            )
        );
        let mut object = ap();
        object.status = Some(status);
        // A phase that says Available with a Ready that does not is not enough.
        let inconsistent = fs(LifecyclePhase::Available, "False");
        let status = desired(
            &object,
            AccessPointId::from_uid("u-1"),
            Some(&inconsistent),
            &at(1),
        );
        assert_eq!(ready(&status).0, "False");

        let available = fs(LifecyclePhase::Available, "True");
        let status = desired(
            &object,
            AccessPointId::from_uid("u-1"),
            Some(&available),
            &at(2),
        );
        assert_eq!(ready(&status), ("True", REASON_AVAILABLE, ""));
        assert_eq!(status.phase, Some(LifecyclePhase::Available));
        assert_eq!(status.conditions[0].last_transition_time, at(2));

        object.status = Some(status.clone());
        assert_eq!(
            desired(
                &object,
                AccessPointId::from_uid("u-1"),
                Some(&available),
                &at(3)
            ),
            status
        );

        // Losing the file system after being Available is an Error.
        let status = desired(&object, AccessPointId::from_uid("u-1"), None, &at(4));
        assert_eq!(status.phase, Some(LifecyclePhase::Error));
        assert_eq!(status.conditions[0].last_transition_time, at(4));
    }

    #[test]
    fn an_updating_file_system_serves_while_its_ready_is_true() {
        let id = || AccessPointId::from_uid("u-1");
        let serving = fs(LifecyclePhase::Updating, "True");
        let status = desired(&ap(), id(), Some(&serving), &at(0));
        assert_eq!(ready(&status).0, "True");
        let down = fs(LifecyclePhase::Updating, "False");
        let status = desired(&ap(), id(), Some(&down), &at(0));
        assert_eq!(
            (ready(&status).0, ready(&status).1),
            ("False", REASON_FILE_SYSTEM_NOT_READY)
        );
    }

    #[test]
    fn deleting_file_system_is_not_ready() {
        let mut deleting = fs(LifecyclePhase::Available, "True");
        deleting.metadata.deletion_timestamp = Some(at(0));
        let status = desired(
            &ap(),
            AccessPointId::from_uid("u-1"),
            Some(&deleting),
            &at(1),
        );
        assert_eq!(
            ready(&status),
            (
                "False",
                REASON_FILE_SYSTEM_NOT_READY,
                "FileSystem shared is being deleted"
            )
        );
    }
}
