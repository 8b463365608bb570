//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several
//! operator replicas exactly one reconciles.
//!
//! Written here rather than taken from a crate: the Lease managers on
//! crates.io (kube-lease-manager 0.12, kubert's) are built against kube 4
//! and older k8s-openapi, and this workspace is on kube 5. The protocol is
//! client-go's: the holder renews `renewTime`; a Lease not renewed for
//! `leaseDurationSeconds` may be taken; every write is a replace carrying the
//! `resourceVersion` that was read, so of two replicas racing for it the API
//! server lets exactly one win (409 Conflict for the other).

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client,
    api::{PostParams, entry::Entry},
};

use crate::error::Error;

/// Where the Lease is and who this replica is.
#[derive(Debug, Clone)]
pub struct Config {
    pub namespace: String,
    pub name: String,
    /// Unique per replica: the pod name.
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews; well under `lease_duration`.
    pub renew_every: Duration,
}

/// What to do with the Lease as it was read. Pure: the caller reads the
/// Lease and the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No Lease yet: create it, held by us.
    Create,
    /// Held by us: renew it.
    Renew,
    /// Free or expired: take it (a new term).
    Take,
    /// Held by someone else for this long still.
    Wait(Duration),
}

pub fn next_step(lease: Option<&Lease>, identity: &str, now: Timestamp) -> Step {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return if lease.is_some() {
            Step::Take
        } else {
            Step::Create
        };
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Step::Renew,
        None | Some("") => Step::Take,
        Some(_) => {
            let duration =
                SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(0).into());
            let renewed = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0);
            match renewed.map(|t| t + duration) {
                Some(expires) if expires > now => {
                    Step::Wait(Duration::try_from(expires.duration_since(now)).unwrap_or_default())
                }
                _ => Step::Take,
            }
        }
    }
}

/// `lease` as it is after `step` (Create, Take or Renew) at `now`.
pub fn written(lease: Option<&Lease>, step: Step, config: &Config, now: Timestamp) -> Lease {
    let mut lease = lease.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if step != Step::Renew {
        spec.holder_identity = Some(config.identity.clone());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(match step {
            Step::Create => 0,
            _ => spec.lease_transitions.unwrap_or(0) + 1,
        });
    }
    spec.lease_duration_seconds =
        Some(i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX));
    spec.renew_time = Some(MicroTime(now));
    lease
}

fn api_error(config: &Config, source: kube::Error) -> Error {
    Error::Lease {
        namespace: config.namespace.clone(),
        name: config.name.clone(),
        source: Box::new(source),
    }
}

/// One read-decide-write round. `Ok(true)` when this replica holds the
/// Lease afterwards, `Ok(false)` when another does (or won a race).
async fn round(api: &Api<Lease>, config: &Config) -> Result<(bool, Duration), Error> {
    let current = api
        .get_opt(&config.name)
        .await
        .map_err(|e| api_error(config, e))?;
    let now = Timestamp::now();
    let step = next_step(current.as_ref(), &config.identity, now);
    if let Step::Wait(left) = step {
        return Ok((false, left));
    }
    let lease = written(current.as_ref(), step, config, now);
    let result = if step == Step::Create {
        api.create(&PostParams::default(), &lease).await
    } else {
        // Carries the resourceVersion read above: a concurrent writer makes
        // this a 409 instead of two holders.
        api.replace(&config.name, &PostParams::default(), &lease)
            .await
    };
    match result {
        Ok(_) => {
            if step != Step::Renew {
                tracing::info!(lease = %config.name, identity = %config.identity, "acquired the leader Lease");
            }
            Ok((true, config.renew_every))
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok((false, config.renew_every)),
        Err(e) => Err(api_error(config, e)),
    }
}

/// Waits until this replica holds the Lease. API errors are logged and
/// retried: a replica that cannot reach the API server simply stays a
/// standby.
pub async fn acquire(client: &Client, config: &Config) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let mut announced = false;
    loop {
        let pause = match round(&api, config).await {
            Ok((true, _)) => return,
            Ok((false, left)) => {
                if !announced {
                    tracing::info!(lease = %config.name, "another replica leads; standing by");
                    announced = true;
                }
                left.min(config.renew_every).max(Duration::from_millis(200))
            }
            Err(error) => {
                tracing::warn!(%error, "leader election");
                config.renew_every
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// Renews the Lease until it is lost, and returns why: another replica
/// took it, or renewals failed for longer than the lease lasts (then
/// another replica may already lead, so this one must stop).
pub async fn hold(client: &Client, config: &Config) -> String {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(config.renew_every).await;
        match round(&api, config).await {
            Ok((true, _)) => last_renewal = tokio::time::Instant::now(),
            Ok((false, _)) => return "another replica holds the leader Lease".to_owned(),
            Err(error) => {
                tracing::warn!(%error, "renewing the leader Lease failed");
                if last_renewal.elapsed() >= config.lease_duration {
                    return format!(
                        "the leader Lease could not be renewed for {:?}: {error}",
                        config.lease_duration
                    );
                }
            }
        }
    }
}

/// Gives the Lease up (on shutdown), so a standby takes over at once
/// instead of after the lease duration. Best effort: logged, not returned.
pub async fn release(client: &Client, config: &Config) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let released = api
        .entry(&config.name)
        .await
        .map_err(|e| api_error(config, e));
    let outcome = match released {
        Ok(Entry::Occupied(mut entry)) => {
            let spec = entry.get_mut().spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
                return;
            }
            spec.holder_identity = None;
            entry
                .commit(&PostParams::default())
                .await
                .map_err(|e| e.to_string())
        }
        Ok(Entry::Vacant(_)) => Ok(()),
        Err(e) => Err(e.to_string()),
    };
    match outcome {
        Ok(()) => tracing::info!(lease = %config.name, "released the leader Lease"),
        Err(error) => tracing::warn!(%error, "releasing the leader Lease failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(identity: &str) -> Config {
        Config {
            namespace: "openefs-system".into(),
            name: "openefs-operator".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    #[test]
    fn a_lease_is_created_renewed_waited_for_and_taken_when_expired() {
        let a = config("a");
        assert_eq!(next_step(None, "a", at(0)), Step::Create);
        let lease = written(None, Step::Create, &a, at(0));
        let spec = lease.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(
            (spec.lease_duration_seconds, spec.lease_transitions),
            (Some(15), Some(0))
        );

        assert_eq!(next_step(Some(&lease), "a", at(5)), Step::Renew);
        assert_eq!(
            next_step(Some(&lease), "b", at(5)),
            Step::Wait(Duration::from_secs(10))
        );
        let renewed = written(Some(&lease), Step::Renew, &a, at(10));
        assert_eq!(
            next_step(Some(&renewed), "b", at(20)),
            Step::Wait(Duration::from_secs(5))
        );
        assert_eq!(next_step(Some(&renewed), "b", at(25)), Step::Take);

        let taken = written(Some(&renewed), Step::Take, &config("b"), at(25));
        let spec = taken.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_transitions, Some(1));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(25))));
    }

    fn fast(identity: &str) -> Config {
        Config {
            lease_duration: Duration::from_secs(1),
            renew_every: Duration::from_millis(100),
            ..config(identity)
        }
    }

    const LEASE: &str =
        "/apis/coordination.k8s.io/v1/namespaces/openefs-system/leases/openefs-operator";

    fn holder(api: &crate::fake_api::FakeApi) -> Option<String> {
        api.get(LEASE)?["spec"]["holderIdentity"]
            .as_str()
            .map(str::to_owned)
    }

    #[tokio::test]
    async fn one_replica_leads_the_other_takes_over_on_release() {
        let (api, client) = crate::fake_api::FakeApi::new();
        acquire(&client, &fast("a")).await;
        assert_eq!(holder(&api).as_deref(), Some("a"));
        let standby =
            tokio::time::timeout(Duration::from_millis(400), acquire(&client, &fast("b"))).await;
        assert!(standby.is_err(), "b acquired a Lease that a holds");
        assert_eq!(holder(&api).as_deref(), Some("a"));

        release(&client, &fast("a")).await;
        tokio::time::timeout(Duration::from_secs(2), acquire(&client, &fast("b")))
            .await
            .expect("b did not take the released Lease");
        assert_eq!(holder(&api).as_deref(), Some("b"));
        let lost = tokio::time::timeout(Duration::from_secs(2), hold(&client, &fast("a")))
            .await
            .expect("a did not notice that b leads");
        assert!(lost.contains("another replica"), "{lost}");
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_and_a_stale_write_loses() {
        let (api, client) = crate::fake_api::FakeApi::new();
        acquire(&client, &fast("a")).await;
        // a stops renewing; after the lease duration b may take it.
        tokio::time::timeout(Duration::from_secs(3), acquire(&client, &fast("b")))
            .await
            .expect("b did not take the expired Lease");
        assert_eq!(holder(&api).as_deref(), Some("b"));
        assert_eq!(api.get(LEASE).unwrap()["spec"]["leaseTransitions"], 1);

        // Two replicas that read the same version: only one write lands.
        let api_leases: Api<Lease> = Api::namespaced(client.clone(), "openefs-system");
        let read = api_leases.get("openefs-operator").await.unwrap();
        let mut first = read.clone();
        first.spec.as_mut().unwrap().holder_identity = Some("c".into());
        api_leases
            .replace("openefs-operator", &PostParams::default(), &first)
            .await
            .unwrap();
        let mut second = read;
        second.spec.as_mut().unwrap().holder_identity = Some("d".into());
        let err = api_leases
            .replace("openefs-operator", &PostParams::default(), &second)
            .await
            .unwrap_err();
        assert!(
            matches!(err, kube::Error::Api(ref s) if s.code == 409),
            "{err}"
        );
        assert_eq!(holder(&api).as_deref(), Some("c"));
    }

    #[tokio::test]
    async fn renewal_failures_longer_than_the_lease_give_it_up() {
        let (api, client) = crate::fake_api::FakeApi::new();
        acquire(&client, &fast("a")).await;
        api.fail("/apis/coordination.k8s.io/", 500);
        let lost = tokio::time::timeout(Duration::from_secs(3), hold(&client, &fast("a")))
            .await
            .expect("a kept leading without renewals");
        assert!(lost.contains("could not be renewed"), "{lost}");
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let mut lease = written(None, Step::Create, &config("a"), at(0));
        lease.spec.as_mut().unwrap().holder_identity = None;
        assert_eq!(next_step(Some(&lease), "b", at(1)), Step::Take);
    }
}
