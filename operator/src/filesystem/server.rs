//! The FileSystem's NFS server as core objects: applies what
//! [`super::desired`] computes, and judges from the objects the API server
//! returns whether the backing volume and the server are ready.

use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::PersistentVolumeClaim};
use kube::Client;

use super::desired::DesiredObjects;
use super::status::{BACKING_STORAGE_READY, SERVER_READY};
use crate::apply;
use crate::conditions::{Status, Verdict};
use crate::error::Error;

/// BackingStorageReady reason when the claim is bound to a volume.
pub const REASON_BOUND: &str = "Bound";
/// BackingStorageReady reason while no volume is bound to the claim.
pub const REASON_PENDING: &str = "Pending";
/// BackingStorageReady reason when the bound volume is gone.
pub const REASON_VOLUME_LOST: &str = "VolumeLost";
/// ServerReady reason when the nfsd pod is ready.
pub const REASON_SERVING: &str = "Serving";
/// ServerReady reason while the nfsd pod is not ready.
pub const REASON_POD_NOT_READY: &str = "PodNotReady";

/// The objects whose state the FileSystem's conditions report, as the API
/// server returned them from the apply.
#[derive(Debug, Clone)]
pub struct Applied {
    pub backing_pvc: PersistentVolumeClaim,
    pub stateful_set: StatefulSet,
}

/// Applies every core object, the volume first (the pod mounts it) and the
/// disruption budget last (it guards the pod). Every reconcile applies all
/// of them: server-side apply is a no-op when nothing changed and repairs
/// whatever was edited or deleted.
pub async fn apply(client: &Client, objects: &DesiredObjects) -> Result<Applied, Error> {
    let backing_pvc = apply::object(client, &objects.backing_pvc).await?;
    apply::object(client, &objects.config_map).await?;
    apply::object(client, &objects.headless_service).await?;
    apply::object(client, &objects.service).await?;
    let stateful_set = apply::object(client, &objects.stateful_set).await?;
    apply::object(client, &objects.pod_disruption_budget).await?;
    Ok(Applied {
        backing_pvc,
        stateful_set,
    })
}

/// `BackingStorageReady` and `ServerReady` of what was applied.
pub fn verdicts(applied: &Applied) -> [Verdict; 2] {
    [
        backing_storage(&applied.backing_pvc),
        server(&applied.stateful_set),
    ]
}

fn backing_storage(pvc: &PersistentVolumeClaim) -> Verdict {
    let status = pvc.status.as_ref();
    let verdict = |status, reason, message| Verdict {
        type_: BACKING_STORAGE_READY,
        status,
        reason,
        message,
    };
    match status.and_then(|s| s.phase.as_deref()) {
        Some("Bound") => {
            let capacity = status
                .and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get("storage"))
                .map_or("unknown", |q| q.0.as_str());
            let volume = pvc
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .unwrap_or("?");
            verdict(
                Status::True,
                REASON_BOUND,
                format!("bound to PersistentVolume {volume}, capacity {capacity}"),
            )
        }
        Some("Lost") => verdict(
            Status::False,
            REASON_VOLUME_LOST,
            "the PersistentVolume the claim was bound to no longer exists; the data must be \
             restored to a new volume"
                .to_owned(),
        ),
        _ => {
            let class = pvc
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.as_deref())
                .map_or_else(
                    || "the default StorageClass".to_owned(),
                    |c| format!("StorageClass {c}"),
                );
            verdict(
                Status::False,
                REASON_PENDING,
                format!("waiting for a volume from {class} to be bound to the claim"),
            )
        }
    }
}

/// Whether the StatefulSet is replacing its pod with a new revision: the
/// controller has not yet seen the latest spec, or some replica still runs
/// the old revision. A StatefulSet without a status (just created) is not
/// rolling out; `updatedReplicas` is omitted by the API when 0.
pub fn rolling_out(stateful_set: &StatefulSet) -> bool {
    let Some(status) = stateful_set.status.as_ref() else {
        return false;
    };
    let unseen_spec = matches!(
        (status.observed_generation, stateful_set.metadata.generation),
        (Some(observed), Some(generation)) if observed < generation
    );
    let revisions_differ = matches!(
        (&status.current_revision, &status.update_revision),
        (Some(current), Some(update)) if current != update
    );
    let wanted = stateful_set.spec.replicas.unwrap_or(1);
    let not_updated = status.updated_replicas.unwrap_or(0) < wanted;
    unseen_spec || revisions_differ || not_updated
}

fn server(stateful_set: &StatefulSet) -> Verdict {
    let wanted = stateful_set.spec.replicas.unwrap_or(1);
    let ready = stateful_set
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    if wanted > 0 && ready >= wanted {
        Verdict {
            type_: SERVER_READY,
            status: Status::True,
            reason: REASON_SERVING,
            message: String::new(),
        }
    } else {
        Verdict {
            type_: SERVER_READY,
            status: Status::False,
            reason: REASON_POD_NOT_READY,
            message: format!("{ready} of {wanted} nfsd pods ready"),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{
        apps::v1::{StatefulSetSpec, StatefulSetStatus},
        core::v1::{PersistentVolumeClaimSpec, PersistentVolumeClaimStatus},
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;

    fn pvc(phase: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some("fast".into()),
                volume_name: phase.is_some_and(|p| p == "Bound").then(|| "pv-1".into()),
                ..Default::default()
            }),
            status: phase.map(|p| PersistentVolumeClaimStatus {
                phase: Some(p.into()),
                capacity: Some([("storage".to_owned(), Quantity("10Gi".into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn stateful_set(ready: Option<i32>) -> StatefulSet {
        StatefulSet {
            spec: StatefulSetSpec {
                replicas: Some(1),
                ..Default::default()
            },
            status: ready.map(|r| StatefulSetStatus {
                ready_replicas: Some(r),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn backing_storage_follows_the_claim_phase() {
        let bound = backing_storage(&pvc(Some("Bound")));
        assert_eq!((bound.status, bound.reason), (Status::True, REASON_BOUND));
        assert_eq!(
            bound.message,
            "bound to PersistentVolume pv-1, capacity 10Gi"
        );
        for phase in [None, Some("Pending")] {
            let pending = backing_storage(&pvc(phase));
            assert_eq!(
                (pending.status, pending.reason),
                (Status::False, REASON_PENDING)
            );
            assert!(
                pending.message.contains("StorageClass fast"),
                "{}",
                pending.message
            );
        }
        let lost = backing_storage(&pvc(Some("Lost")));
        assert_eq!(
            (lost.status, lost.reason),
            (Status::False, REASON_VOLUME_LOST)
        );
    }

    #[test]
    fn a_new_revision_or_an_unseen_spec_is_a_rollout() {
        let settled = || {
            let mut sts = stateful_set(Some(1));
            sts.metadata.generation = Some(3);
            sts.status = Some(StatefulSetStatus {
                observed_generation: Some(3),
                replicas: 1,
                ready_replicas: Some(1),
                updated_replicas: Some(1),
                current_revision: Some("fs-1-aaa".into()),
                update_revision: Some("fs-1-aaa".into()),
                ..Default::default()
            });
            sts
        };
        assert!(!rolling_out(&settled()));
        assert!(!rolling_out(&stateful_set(None)), "no status yet");

        let mut unseen = settled();
        unseen.metadata.generation = Some(4);
        assert!(rolling_out(&unseen));
        let mut new_revision = settled();
        new_revision.status.as_mut().unwrap().update_revision = Some("fs-1-bbb".into());
        assert!(rolling_out(&new_revision));
        let mut old_pod = settled();
        old_pod.status.as_mut().unwrap().updated_replicas = None;
        assert!(rolling_out(&old_pod), "0 updated replicas is omitted");
    }

    #[test]
    fn server_is_ready_when_its_pod_is() {
        let serving = server(&stateful_set(Some(1)));
        assert_eq!(
            (serving.status, serving.reason),
            (Status::True, REASON_SERVING)
        );
        for ready in [None, Some(0)] {
            let waiting = server(&stateful_set(ready));
            assert_eq!(
                (waiting.status, waiting.reason, waiting.message.as_str()),
                (
                    Status::False,
                    REASON_POD_NOT_READY,
                    "0 of 1 nfsd pods ready"
                )
            );
        }
    }
}
