//! Kubernetes Events for condition transitions: each condition that
//! appears or changes status becomes one Event on the object, so
//! `kubectl describe` tells the story without reading operator logs.

use k8s_openapi::{api::core::v1::ObjectReference, apimachinery::pkg::apis::meta::v1::Condition};
use kube::runtime::events::{Event, EventType, Recorder};

/// The action every reconcile event reports.
const ACTION: &str = "Reconcile";

/// Condition types whose `True` is bad news.
const NEGATIVE_POLARITY: [&str; 1] = [crate::filesystem::status::DEGRADED];

/// One Event per condition of `after` that is new or whose status differs
/// from `before`. The reason is the condition's; a Warning when the
/// condition turned bad.
pub fn for_transitions(before: &[Condition], after: &[Condition]) -> Vec<Event> {
    after
        .iter()
        .filter(|c| {
            before
                .iter()
                .find(|b| b.type_ == c.type_)
                .is_none_or(|b| b.status != c.status)
        })
        .map(|c| {
            let good = (c.status == "True") != NEGATIVE_POLARITY.contains(&c.type_.as_str());
            let note = if c.message.is_empty() {
                format!("{} is {}", c.type_, c.status)
            } else {
                format!("{} is {}: {}", c.type_, c.status, c.message)
            };
            Event {
                type_: if good {
                    EventType::Normal
                } else {
                    EventType::Warning
                },
                reason: c.reason.clone(),
                note: Some(note),
                action: ACTION.to_owned(),
                secondary: None,
            }
        })
        .collect()
}

/// After a status write: publishes one Event per condition transition from
/// `before` (the status read, if any) to `after` on `reference`, when the
/// write happened (`patched`) and there is a recorder (Events need the core
/// kinds' permissions).
pub async fn publish_transitions(
    recorder: Option<&Recorder>,
    patched: bool,
    reference: &ObjectReference,
    before: Option<&[Condition]>,
    after: &[Condition],
) {
    let (true, Some(recorder)) = (patched, recorder) else {
        return;
    };
    let events = for_transitions(before.unwrap_or_default(), after);
    publish(recorder, reference, events).await;
}

/// A Warning Event for a reconcile that failed before it could write a
/// status (`reason` is CamelCase).
pub fn failure(reason: &str, error: &crate::Error) -> Event {
    warning(reason, error.to_string())
}

/// A Normal Event for something done (`reason` is CamelCase).
pub fn normal(reason: &str, note: String) -> Event {
    Event {
        type_: EventType::Normal,
        reason: reason.to_owned(),
        note: Some(note),
        action: ACTION.to_owned(),
        secondary: None,
    }
}

/// A Warning Event for something left undone on purpose.
pub fn warning(reason: &str, note: String) -> Event {
    Event {
        type_: EventType::Warning,
        reason: reason.to_owned(),
        note: Some(note),
        action: ACTION.to_owned(),
        secondary: None,
    }
}

/// Publishes `events` on `reference`. A failed publish is logged, not
/// returned: an Event is a report, and failing the reconcile over it would
/// leave the real work undone.
pub async fn publish(recorder: &Recorder, reference: &ObjectReference, events: Vec<Event>) {
    for event in events {
        if let Err(error) = recorder.publish(&event, reference).await {
            tracing::warn!(%error, reason = event.reason, "publishing an Event failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::tests::at;

    fn condition(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: at(0),
        }
    }

    #[test]
    fn only_new_and_flipped_conditions_become_events() {
        let before = [
            condition("Ready", "False", "ServerNotReady"),
            condition("Degraded", "False", "AsExpected"),
            condition("ServerReady", "False", "PodNotReady"),
        ];
        let after = [
            condition("Ready", "True", "Available"),
            condition("Degraded", "False", "AsExpected"),
            condition("ServerReady", "False", "Pending"),
            condition("BackingStorageReady", "True", "Bound"),
        ];
        let events = for_transitions(&before, &after);
        let got: Vec<(EventType, &str, &str)> = events
            .iter()
            .map(|e| (e.type_, e.reason.as_str(), e.note.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(
            got,
            [
                (EventType::Normal, "Available", "Ready is True"),
                (EventType::Normal, "Bound", "BackingStorageReady is True"),
            ]
        );
        assert!(for_transitions(&after, &after).is_empty());
    }

    #[test]
    fn turning_bad_is_a_warning() {
        let before = [
            condition("Ready", "True", "Available"),
            condition("Degraded", "False", "AsExpected"),
        ];
        let after = [
            condition("Ready", "False", "ServerNotReady"),
            condition("Degraded", "True", "ServerNotReady"),
        ];
        let types: Vec<EventType> = for_transitions(&before, &after)
            .iter()
            .map(|e| e.type_)
            .collect();
        assert_eq!(types, [EventType::Warning, EventType::Warning]);
    }
}
