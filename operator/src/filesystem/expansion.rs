//! Elastic size: when the backing volume fills past
//! `spec.backingStorage.autoExpand.thresholdPercent`, the operator raises
//! the backing PersistentVolumeClaim's storage request (volume expansion,
//! done by the StorageClass's driver), up to `autoExpand.maxSize`.
//!
//! The decisions are pure ([`request`], [`grown_size`], [`plan`],
//! [`verdict`]); [`expand`] reads the StorageClass, applies the larger
//! claim and publishes the Event.

use k8s_openapi::api::{core::v1::PersistentVolumeClaim, storage::v1::StorageClass};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{
    Api, Client,
    runtime::events::{Event, EventType},
};
use openefs_crds::{AutoExpand, schema::byte_quantity_bytes};

use crate::conditions::{Status, Verdict};

/// `True` while the backing volume can keep growing (or does not need to);
/// `False` when it needs to and cannot.
pub const AUTO_EXPANSION_READY: &str = "AutoExpansionReady";
/// The volume is used below the threshold.
pub const REASON_WITHIN_THRESHOLD: &str = "WithinThreshold";
/// A larger request was made and the volume is growing to it (also the
/// reason of the Event made when the request is raised).
pub const REASON_EXPANDING_STORAGE: &str = "ExpandingStorage";
/// The claim's StorageClass does not allow volume expansion (or the claim
/// has none, or it does not exist).
pub const REASON_EXPANSION_NOT_SUPPORTED: &str = "ExpansionNotSupported";
/// The volume is past the threshold and already at `maxSize`.
pub const REASON_MAX_SIZE_REACHED: &str = "MaxSizeReached";
/// The API server refused the larger request, or the StorageClass could
/// not be read.
pub const REASON_EXPANSION_FAILED: &str = "ExpansionFailed";
/// `autoExpand.enabled` is false.
pub const REASON_DISABLED: &str = "Disabled";
/// The server could not be asked for its volume's figures.
pub const REASON_USAGE_UNKNOWN: &str = "UsageUnknown";

/// Growth factor, in percent of the current request, of one expansion.
/// Proportional growth keeps the number of expansions (each a resize by the
/// storage driver, some of which allow only a few per day) logarithmic in
/// the final size; +50 % leaves the volume at two thirds full after a step
/// taken at the default threshold of 80 %, which is well below it again.
pub const GROWTH_PERCENT: u64 = 50;

const GIB: u64 = 1 << 30;

/// The `storage` request of a claim, as a quantity.
fn requested(pvc: &PersistentVolumeClaim) -> Option<&Quantity> {
    pvc.spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
}

/// The request the desired claim carries: `initial`, or the live claim's
/// request when that is larger. An earlier expansion raised it, a claim
/// cannot shrink, and an apply of the smaller `initialSize` would be
/// refused; a live request that cannot be read is kept as it is.
pub fn request(initial: &Quantity, live: Option<&PersistentVolumeClaim>) -> Quantity {
    let Some(live) = live.and_then(requested) else {
        return initial.clone();
    };
    match (
        byte_quantity_bytes(&initial.0),
        byte_quantity_bytes(&live.0),
    ) {
        (Some(initial_bytes), Some(live_bytes)) if initial_bytes >= live_bytes => initial.clone(),
        _ => live.clone(),
    }
}

/// The size one expansion asks for: `request` plus [`GROWTH_PERCENT`],
/// rounded up to a whole GiB (volumes are sized in GiB by most drivers, and
/// round figures read well), never above `max`. `None` when `request` is
/// already at or above `max`.
pub fn grown_size(request: u64, max: Option<u64>) -> Option<u64> {
    let grown = request
        .saturating_add(request.saturating_mul(GROWTH_PERCENT).div_ceil(100))
        .div_ceil(GIB)
        .saturating_mul(GIB);
    match max {
        Some(max) if request >= max => None,
        Some(max) => Some(grown.min(max)),
        None => Some(grown),
    }
}

/// A byte count as a quantity: whole GiB or MiB when it is one, bytes
/// otherwise.
pub fn quantity(bytes: u64) -> Quantity {
    const MIB: u64 = 1 << 20;
    Quantity(if bytes != 0 && bytes.is_multiple_of(GIB) {
        format!("{}Gi", bytes / GIB)
    } else if bytes != 0 && bytes.is_multiple_of(MIB) {
        format!("{}Mi", bytes / MIB)
    } else {
        bytes.to_string()
    })
}

/// What the live claim says about its size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim {
    /// `spec.resources.requests.storage`, in bytes.
    pub request: Option<u64>,
    /// `status.capacity.storage`, in bytes: what the volume has now.
    pub capacity: Option<u64>,
    /// A resize is under way: the claim's `Resizing` or
    /// `FileSystemResizePending` condition is `True`.
    pub resizing: bool,
}

impl Claim {
    pub fn of(pvc: &PersistentVolumeClaim) -> Self {
        let status = pvc.status.as_ref();
        Claim {
            request: requested(pvc).and_then(|q| byte_quantity_bytes(&q.0)),
            capacity: status
                .and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get("storage"))
                .and_then(|q| byte_quantity_bytes(&q.0)),
            resizing: status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| {
                    matches!(c.type_.as_str(), "Resizing" | "FileSystemResizePending")
                        && c.status == "True"
                }),
        }
    }
}

/// The backing volume as nfsd sees it (`statvfs`, admin `GetUsage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Volume {
    pub bytes_total: u64,
    pub bytes_free: u64,
}

impl Volume {
    /// Used share in whole percent, rounded down; `None` for a volume that
    /// reports no size.
    pub fn used_percent(&self) -> Option<u64> {
        let used = self.bytes_total.checked_sub(self.bytes_free)?;
        (self.bytes_total > 0)
            .then(|| (u128::from(used) * 100 / u128::from(self.bytes_total)) as u64)
    }
}

/// What to do about the backing volume's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// `autoExpand.enabled` is false.
    Disabled,
    /// The server's figures are not known (it could not be asked).
    Unknown,
    /// Used below the threshold.
    Within,
    /// The claim asks for more than the volume has, or the driver is
    /// resizing: the last expansion is not finished, so no new one.
    Resizing { request: u64, capacity: Option<u64> },
    /// Past the threshold: ask for `to` bytes (from `from`).
    Grow {
        from: u64,
        to: u64,
        used_percent: u64,
    },
    /// Past the threshold, and the request is already `maxSize`.
    MaxSizeReached { max: u64, used_percent: u64 },
}

/// The decision for a volume with figures `volume` (`None`: unknown) and
/// claim `claim`, under `auto`.
pub fn plan(auto: &AutoExpand, claim: &Claim, volume: Option<Volume>) -> Plan {
    if !auto.enabled {
        return Plan::Disabled;
    }
    let (Some(used_percent), Some(request)) =
        (volume.and_then(|v| v.used_percent()), claim.request)
    else {
        return Plan::Unknown;
    };
    if used_percent < u64::from(auto.threshold_percent) {
        return Plan::Within;
    }
    // The volume's figures lag the claim until the resize reaches the
    // node; growing again meanwhile would compound the same fill.
    if claim.resizing || claim.capacity.is_none_or(|capacity| capacity < request) {
        return Plan::Resizing {
            request,
            capacity: claim.capacity,
        };
    }
    let max = auto
        .max_size
        .as_ref()
        .and_then(|q| byte_quantity_bytes(&q.0));
    match grown_size(request, max) {
        Some(to) => Plan::Grow {
            from: request,
            to,
            used_percent,
        },
        None => Plan::MaxSizeReached {
            max: max.unwrap_or(request),
            used_percent,
        },
    }
}

/// Why a StorageClass cannot expand the claim, if it cannot.
pub fn refusal(class_name: Option<&str>, class: Option<&StorageClass>) -> Option<String> {
    let Some(name) = class_name else {
        return Some("the backing claim has no StorageClass".to_owned());
    };
    match class {
        None => Some(format!("StorageClass {name} does not exist")),
        Some(c) if c.allow_volume_expansion != Some(true) => Some(format!(
            "StorageClass {name} does not allow volume expansion (allowVolumeExpansion is not true)"
        )),
        Some(_) => None,
    }
}

/// The outcome of one reconcile's look at the volume's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The plan needed no write (from [`expand`]: anything but a `Grow`).
    Planned(Plan),
    /// The claim now requests `to` bytes.
    Requested {
        from: u64,
        to: u64,
        used_percent: u64,
    },
    /// The plan was to grow, and the StorageClass cannot (the message).
    NotSupported(String),
    /// The plan was to grow, and reading the StorageClass or applying the
    /// claim failed (the message).
    Failed(String),
}

/// `AutoExpansionReady` for `outcome`, with `auto`'s threshold.
pub fn verdict(auto: &AutoExpand, outcome: &Outcome) -> Verdict {
    let gib = |bytes: u64| quantity(bytes).0;
    let (status, reason, message) = match outcome {
        Outcome::Planned(Plan::Disabled) => (
            Status::False,
            REASON_DISABLED,
            "spec.backingStorage.autoExpand.enabled is false".to_owned(),
        ),
        Outcome::Planned(Plan::Unknown) => (
            Status::Unknown,
            REASON_USAGE_UNKNOWN,
            "nfsd has not reported the backing volume's usage".to_owned(),
        ),
        // No usage figure in the message: it would change the status, and
        // so trigger a reconcile, with every write to the file system.
        Outcome::Planned(Plan::Within) => (
            Status::True,
            REASON_WITHIN_THRESHOLD,
            format!(
                "the backing volume grows when more than {}% of it is used{}",
                auto.threshold_percent,
                auto.max_size
                    .as_ref()
                    .map_or_else(String::new, |m| format!(", up to {}", m.0))
            ),
        ),
        Outcome::Planned(Plan::Resizing { request, capacity }) => (
            Status::True,
            REASON_EXPANDING_STORAGE,
            format!(
                "waiting for the backing volume to grow to {} (capacity now {})",
                gib(*request),
                capacity.map_or_else(|| "unknown".to_owned(), gib)
            ),
        ),
        Outcome::Requested {
            from,
            to,
            used_percent,
        } => (
            Status::True,
            REASON_EXPANDING_STORAGE,
            format!(
                "{used_percent}% used: requested {} (was {})",
                gib(*to),
                gib(*from)
            ),
        ),
        // A plan to grow that [`expand`] was not asked to carry out.
        Outcome::Planned(Plan::Grow {
            to, used_percent, ..
        }) => (
            Status::True,
            REASON_EXPANDING_STORAGE,
            format!("{used_percent}% used: growing to {} is due", gib(*to)),
        ),
        Outcome::Planned(Plan::MaxSizeReached { max, used_percent }) => (
            Status::False,
            REASON_MAX_SIZE_REACHED,
            format!(
                "{used_percent}% used and the backing volume is at autoExpand.maxSize ({})",
                gib(*max)
            ),
        ),
        Outcome::NotSupported(why) => (
            Status::False,
            REASON_EXPANSION_NOT_SUPPORTED,
            format!("the backing volume is past the threshold and cannot grow: {why}"),
        ),
        Outcome::Failed(why) => (Status::False, REASON_EXPANSION_FAILED, why.clone()),
    };
    Verdict {
        type_: AUTO_EXPANSION_READY,
        status,
        reason,
        message,
    }
}

/// The Event for a raised request.
pub fn expanding_event(from: u64, to: u64, used_percent: u64) -> Event {
    Event {
        type_: EventType::Normal,
        reason: REASON_EXPANDING_STORAGE.to_owned(),
        note: Some(format!(
            "backing volume {used_percent}% used: requesting {} (was {})",
            quantity(to).0,
            quantity(from).0
        )),
        action: "ExpandVolume".to_owned(),
        secondary: None,
    }
}

/// Carries out `plan` for the applied claim `pvc`: when it says grow, reads
/// the claim's StorageClass and, if it allows expansion, applies
/// `grown` (the desired claim with the larger request, from
/// [`super::desired::objects`]). Failures become the outcome, not errors:
/// the rest of the reconcile (the status) must still be written, and the
/// next resync tries again.
pub async fn expand(
    client: &Client,
    plan: Plan,
    pvc: &PersistentVolumeClaim,
    grown: impl FnOnce(Quantity) -> Result<PersistentVolumeClaim, crate::Error>,
) -> Outcome {
    let Plan::Grow {
        from,
        to,
        used_percent,
    } = plan
    else {
        return Outcome::Planned(plan);
    };
    let class_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref());
    let class = match class_name {
        Some(name) => match Api::<StorageClass>::all(client.clone()).get_opt(name).await {
            Ok(class) => class,
            Err(e) => return Outcome::Failed(format!("reading StorageClass {name}: {e}")),
        },
        None => None,
    };
    if let Some(why) = refusal(class_name, class.as_ref()) {
        return Outcome::NotSupported(why);
    }
    let applied = match grown(quantity(to)) {
        Ok(claim) => crate::apply::object(client, &claim).await,
        Err(e) => Err(e),
    };
    match applied {
        Ok(_) => Outcome::Requested {
            from,
            to,
            used_percent,
        },
        Err(e) => Outcome::Failed(format!("requesting {}: {e}", quantity(to).0)),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimCondition, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus,
        VolumeResourceRequirements,
    };

    use super::*;

    fn auto(threshold: u8, max: Option<&str>) -> AutoExpand {
        AutoExpand {
            enabled: true,
            threshold_percent: threshold,
            max_size: max.map(|m| Quantity(m.into())),
        }
    }

    fn claim(request: u64, capacity: u64) -> Claim {
        Claim {
            request: Some(request),
            capacity: Some(capacity),
            resizing: false,
        }
    }

    /// A volume `percent` % used of `total` bytes.
    fn used(percent: u64, total: u64) -> Option<Volume> {
        Some(Volume {
            bytes_total: total,
            bytes_free: total * (100 - percent) / 100,
        })
    }

    #[test]
    fn growth_is_half_again_rounded_up_to_gib_and_capped() {
        assert_eq!(grown_size(10 * GIB, None), Some(15 * GIB));
        assert_eq!(grown_size(GIB, None), Some(2 * GIB), "1.5 GiB rounds up");
        assert_eq!(grown_size(100 << 20, None), Some(GIB), "150 MiB rounds up");
        assert_eq!(grown_size(15 * GIB, None), Some(23 * GIB), "22.5 GiB");
        assert_eq!(grown_size(10 * GIB, Some(12 * GIB)), Some(12 * GIB));
        assert_eq!(grown_size(10 * GIB, Some(100 * GIB)), Some(15 * GIB));
        assert_eq!(grown_size(12 * GIB, Some(12 * GIB)), None);
        assert_eq!(grown_size(13 * GIB, Some(12 * GIB)), None, "above max");
        assert_eq!(grown_size(u64::MAX, None), Some(u64::MAX), "saturates");
    }

    #[test]
    fn grows_only_past_the_threshold_of_a_settled_claim() {
        let a = auto(80, None);
        let settled = claim(10 * GIB, 10 * GIB);
        assert_eq!(plan(&a, &settled, used(79, 10 * GIB)), Plan::Within);
        assert_eq!(
            plan(&a, &settled, used(80, 10 * GIB)),
            Plan::Grow {
                from: 10 * GIB,
                to: 15 * GIB,
                used_percent: 80
            }
        );
        // The volume's file system is a little smaller than the claim.
        assert_eq!(
            plan(&a, &settled, used(85, 9 * GIB + (800 << 20))),
            Plan::Grow {
                from: 10 * GIB,
                to: 15 * GIB,
                used_percent: 85
            }
        );
        // A raised request not yet reached: no second step.
        let pending = claim(15 * GIB, 10 * GIB);
        assert_eq!(
            plan(&a, &pending, used(90, 10 * GIB)),
            Plan::Resizing {
                request: 15 * GIB,
                capacity: Some(10 * GIB)
            }
        );
        let resizing = Claim {
            resizing: true,
            ..settled.clone()
        };
        assert!(matches!(
            plan(&a, &resizing, used(90, 10 * GIB)),
            Plan::Resizing { .. }
        ));
        assert!(matches!(
            plan(&a, &pending, used(50, 10 * GIB)),
            Plan::Within
        ));
        assert_eq!(plan(&a, &settled, None), Plan::Unknown);
        assert_eq!(
            plan(
                &a,
                &settled,
                Some(Volume {
                    bytes_total: 0,
                    bytes_free: 0
                })
            ),
            Plan::Unknown
        );
        let off = AutoExpand {
            enabled: false,
            ..a
        };
        assert_eq!(plan(&off, &settled, used(99, 10 * GIB)), Plan::Disabled);
    }

    #[test]
    fn max_size_caps_the_growth_and_then_stops_it() {
        let a = auto(80, Some("12Gi"));
        assert_eq!(
            plan(&a, &claim(10 * GIB, 10 * GIB), used(90, 10 * GIB)),
            Plan::Grow {
                from: 10 * GIB,
                to: 12 * GIB,
                used_percent: 90
            }
        );
        assert_eq!(
            plan(&a, &claim(12 * GIB, 12 * GIB), used(90, 12 * GIB)),
            Plan::MaxSizeReached {
                max: 12 * GIB,
                used_percent: 90
            }
        );
        let v = verdict(
            &a,
            &Outcome::Planned(Plan::MaxSizeReached {
                max: 12 * GIB,
                used_percent: 90,
            }),
        );
        assert_eq!(
            (v.status, v.reason),
            (Status::False, REASON_MAX_SIZE_REACHED)
        );
        assert!(v.message.contains("(12Gi)"), "{}", v.message);
    }

    fn pvc(request: &str, capacity: Option<&str>, resizing: bool) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            spec: Some(PersistentVolumeClaimSpec {
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_owned(), Quantity(request.into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: Some(PersistentVolumeClaimStatus {
                capacity: capacity.map(|c| [("storage".to_owned(), Quantity(c.into()))].into()),
                conditions: resizing.then(|| {
                    vec![PersistentVolumeClaimCondition {
                        type_: "FileSystemResizePending".into(),
                        status: "True".into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_request_never_shrinks_below_the_live_claims() {
        let initial = Quantity("10Gi".into());
        assert_eq!(request(&initial, None), initial);
        let grown = pvc("15Gi", Some("15Gi"), false);
        assert_eq!(request(&initial, Some(&grown)).0, "15Gi");
        // A larger initialSize (the user raised it) wins.
        let raised = Quantity("20Gi".into());
        assert_eq!(request(&raised, Some(&grown)).0, "20Gi");
        // Equal sizes keep the spec's spelling.
        let same = pvc("10240Mi", None, false);
        assert_eq!(request(&initial, Some(&same)).0, "10Gi");
        // What cannot be compared is not touched.
        let odd = pvc("1e10", None, false);
        assert_eq!(request(&initial, Some(&odd)).0, "1e10");
        assert_eq!(
            request(&initial, Some(&PersistentVolumeClaim::default())),
            initial
        );
    }

    #[test]
    fn the_live_claim_is_read_in_bytes() {
        assert_eq!(
            Claim::of(&pvc("15Gi", Some("10Gi"), true)),
            Claim {
                request: Some(15 * GIB),
                capacity: Some(10 * GIB),
                resizing: true
            }
        );
        assert_eq!(
            Claim::of(&PersistentVolumeClaim::default()),
            Claim::default()
        );
    }

    #[test]
    fn a_class_must_exist_and_allow_expansion() {
        let class = |allow| StorageClass {
            allow_volume_expansion: allow,
            ..Default::default()
        };
        assert_eq!(refusal(Some("fast"), Some(&class(Some(true)))), None);
        for allow in [None, Some(false)] {
            let why = refusal(Some("fast"), Some(&class(allow))).unwrap();
            assert!(why.contains("does not allow volume expansion"), "{why}");
        }
        assert!(
            refusal(Some("fast"), None)
                .unwrap()
                .contains("does not exist")
        );
        assert!(refusal(None, None).unwrap().contains("no StorageClass"));
    }

    #[test]
    fn quantities_are_whole_units_when_they_can_be() {
        assert_eq!(quantity(15 * GIB).0, "15Gi");
        assert_eq!(quantity(1536 << 20).0, "1536Mi");
        assert_eq!(quantity(1000).0, "1000");
        assert_eq!(quantity(0).0, "0");
        for bytes in [15 * GIB, 1536 << 20, 1000] {
            assert_eq!(byte_quantity_bytes(&quantity(bytes).0), Some(bytes));
        }
    }

    #[test]
    fn verdicts_carry_stable_messages() {
        let a = auto(80, None);
        let within = verdict(&a, &Outcome::Planned(Plan::Within));
        assert_eq!(
            (within.status, within.reason, within.message.as_str()),
            (
                Status::True,
                REASON_WITHIN_THRESHOLD,
                "the backing volume grows when more than 80% of it is used"
            )
        );
        let requested = verdict(
            &a,
            &Outcome::Requested {
                from: 10 * GIB,
                to: 15 * GIB,
                used_percent: 85,
            },
        );
        assert_eq!(requested.reason, REASON_EXPANDING_STORAGE);
        assert_eq!(requested.message, "85% used: requested 15Gi (was 10Gi)");
        let refused = verdict(&a, &Outcome::NotSupported("no".into()));
        assert_eq!(
            (refused.status, refused.reason),
            (Status::False, REASON_EXPANSION_NOT_SUPPORTED)
        );
    }
}
