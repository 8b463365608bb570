//! `metav1.Condition` bookkeeping and the lifecycle phase, shared by both
//! kinds. Pure: the caller passes the clock's reading.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use openefs_crds::LifecyclePhase;

/// Condition type that is `True` when the object can be mounted.
pub const READY: &str = "Ready";

/// Status of a condition, as the API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }

    /// `True` when `ok`, `False` otherwise.
    pub fn from_bool(ok: bool) -> Self {
        if ok { Status::True } else { Status::False }
    }
}

/// What a reconciler concludes about one condition; [`merge`] decides its
/// transition time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub type_: &'static str,
    pub status: Status,
    /// CamelCase reason, as `metav1.Condition` requires.
    pub reason: &'static str,
    pub message: String,
}

/// `current` with every verdict written in: a condition keeps its
/// `lastTransitionTime` unless its status flips (reason and message may
/// change without a transition), new conditions get `now`, conditions
/// of other types (written by someone else) stay as they are, and the
/// order is stable so an unchanged status compares equal.
pub fn merge(
    current: &[Condition],
    verdicts: &[Verdict],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let written = |v: &Verdict, last_transition_time: Time| Condition {
        type_: v.type_.to_owned(),
        status: v.status.as_str().to_owned(),
        reason: v.reason.to_owned(),
        message: v.message.clone(),
        observed_generation: generation,
        last_transition_time,
    };
    let mut out: Vec<Condition> = current
        .iter()
        .map(|c| match verdicts.iter().find(|v| v.type_ == c.type_) {
            Some(v) if v.status.as_str() == c.status => written(v, c.last_transition_time.clone()),
            Some(v) => written(v, now.clone()),
            None => c.clone(),
        })
        .collect();
    for v in verdicts {
        if !current.iter().any(|c| c.type_ == v.type_) {
            out.push(written(v, now.clone()));
        }
    }
    out
}

/// The condition of type `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether a condition of type `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == Status::True.as_str())
}

/// The phase of an object that is (or is not) ready now, given its previous
/// phase: `Creating` until it has been `Available` once, `Error` when it
/// stops being ready after that. `rolling_out`: its server is replacing
/// its pod with a new revision; if the old revision was serving
/// (`Available`, or already `Updating`), the phase is `Updating`, ready or
/// not, because a single-pod server is briefly down in every rollout and
/// that is not an error. A rollout of a server that never served, or had
/// stopped serving, changes nothing.
pub fn phase(
    previous: Option<LifecyclePhase>,
    deleting: bool,
    ready: bool,
    rolling_out: bool,
) -> LifecyclePhase {
    use LifecyclePhase::*;
    match (deleting, rolling_out, ready, previous) {
        (true, _, _, _) => Deleting,
        (false, true, _, Some(Available | Updating)) => Updating,
        (false, _, true, _) => Available,
        (false, _, false, Some(Available | Updating | Error)) => Error,
        (false, _, false, Some(Creating | Deleting) | None) => Creating,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    pub fn at(second: i64) -> Time {
        Time(Timestamp::from_second(1_700_000_000 + second).unwrap())
    }

    fn verdict(type_: &'static str, status: Status, reason: &'static str) -> Verdict {
        Verdict {
            type_,
            status,
            reason,
            message: format!("{reason} message"),
        }
    }

    #[test]
    fn new_conditions_start_now_in_verdict_order() {
        let out = merge(
            &[],
            &[
                verdict("Ready", Status::False, "Waiting"),
                verdict("Degraded", Status::False, "AsExpected"),
            ],
            Some(1),
            &at(0),
        );
        let types: Vec<&str> = out.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "Degraded"]);
        assert_eq!(out[0].status, "False");
        assert_eq!(out[0].reason, "Waiting");
        assert_eq!(out[0].message, "Waiting message");
        assert_eq!(out[0].observed_generation, Some(1));
        assert_eq!(out[0].last_transition_time, at(0));
    }

    #[test]
    fn transition_time_changes_only_on_a_flip() {
        let first = merge(
            &[],
            &[verdict("Ready", Status::False, "A")],
            Some(1),
            &at(0),
        );
        // Same status, new reason and generation: time kept.
        let same = merge(
            &first,
            &[verdict("Ready", Status::False, "B")],
            Some(2),
            &at(10),
        );
        assert_eq!(same[0].last_transition_time, at(0));
        assert_eq!(same[0].reason, "B");
        assert_eq!(same[0].observed_generation, Some(2));
        // A no-op gives back exactly what was there.
        assert_eq!(
            merge(
                &same,
                &[verdict("Ready", Status::False, "B")],
                Some(2),
                &at(20)
            ),
            same
        );
        // A flip takes the new time.
        let flipped = merge(
            &same,
            &[verdict("Ready", Status::True, "Ok")],
            Some(2),
            &at(30),
        );
        assert_eq!(flipped[0].last_transition_time, at(30));
        assert_eq!(flipped[0].status, "True");
        let unknown = merge(
            &flipped,
            &[verdict("Ready", Status::Unknown, "U")],
            Some(2),
            &at(40),
        );
        assert_eq!(unknown[0].last_transition_time, at(40));
    }

    #[test]
    fn conditions_of_other_writers_stay_in_place() {
        let theirs = merge(
            &[],
            &[verdict("ServerReady", Status::True, "Up")],
            Some(1),
            &at(0),
        );
        let mine = merge(
            &theirs,
            &[verdict("Ready", Status::True, "Ok")],
            Some(1),
            &at(5),
        );
        assert_eq!(mine[0], theirs[0]);
        assert_eq!(mine[1].type_, "Ready");
        assert!(is_true(&mine, "ServerReady") && is_true(&mine, "Ready"));
        assert!(!is_true(&mine, "Degraded"));
    }

    #[test]
    fn phase_is_creating_until_first_available() {
        use LifecyclePhase::*;
        let steady = |previous, deleting, ready| phase(previous, deleting, ready, false);
        assert_eq!(steady(None, false, false), Creating);
        assert_eq!(steady(Some(Creating), false, false), Creating);
        assert_eq!(steady(Some(Creating), false, true), Available);
        assert_eq!(steady(Some(Available), false, false), Error);
        assert_eq!(steady(Some(Error), false, true), Available);
        assert_eq!(steady(Some(Error), false, false), Error);
        assert_eq!(steady(Some(Available), true, true), Deleting);
        assert_eq!(steady(None, true, false), Deleting);
    }

    #[test]
    fn a_rollout_of_a_serving_server_is_updating() {
        use LifecyclePhase::*;
        let rolling = |previous, ready| phase(previous, false, ready, true);
        // The old pod goes before the new one is ready: Updating, not Error.
        assert_eq!(rolling(Some(Available), true), Updating);
        assert_eq!(rolling(Some(Available), false), Updating);
        assert_eq!(rolling(Some(Updating), false), Updating);
        // Done: back to what readiness says.
        assert_eq!(phase(Some(Updating), false, true, false), Available);
        assert_eq!(phase(Some(Updating), false, false, false), Error);
        // Nothing served before the rollout: it changes nothing.
        assert_eq!(rolling(None, false), Creating);
        assert_eq!(rolling(Some(Creating), false), Creating);
        assert_eq!(rolling(Some(Creating), true), Available);
        assert_eq!(rolling(Some(Error), false), Error);
        assert_eq!(rolling(Some(Error), true), Available);
        // Deletion wins.
        assert_eq!(phase(Some(Available), true, true, true), Deleting);
    }
}
