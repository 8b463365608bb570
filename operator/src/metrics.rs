//! The operator's HTTP endpoint: `/metrics` (reconcile counts, errors and
//! durations per kind), `/healthz` (the process serves) and `/readyz` (the
//! controllers' caches have their first full list).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

use crate::error::Error;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    kind: &'static str,
    /// `ok`, or the error's category.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

/// Reconcile metrics and readiness, shared by the controllers and the
/// HTTP endpoint.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<Outcome, Counter>,
    durations: Family<Kind, Histogram>,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("openefs_operator");
        let reconciles = Family::<Outcome, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by kind and result (ok, or the error category)",
            reconciles.clone(),
        );
        let durations = Family::<Kind, Histogram>::new_with_constructor(|| {
            // 1 ms .. ~16 s: a reconcile is a handful of API calls.
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.001, 2.0, 15,
            ))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciles by kind",
            durations.clone(),
        );
        Self {
            registry,
            reconciles,
            durations,
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, kind: &'static str, result: Result<(), &Error>, took: Duration) {
        let result = match result {
            Ok(()) => "ok",
            Err(e) => e.category(),
        };
        self.reconciles
            .get_or_create(&Outcome { kind, result })
            .inc();
        self.durations
            .get_or_create(&Kind { kind })
            .observe(took.as_secs_f64());
    }

    /// What `/readyz` answers: ready when the caches are filled (reconciles
    /// see every object), or while standing by for the leader Lease.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The OpenMetrics text of every metric (also read by the dashboard test).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

async fn metrics_page(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    match metrics.encode() {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn readyz(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not filled yet\n")
    }
}

/// Serves the endpoint until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(metrics);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reconciles_by_result() {
        let m = Metrics::default();
        m.reconciled("FileSystem", Ok(()), Duration::from_millis(3));
        let err = Error::IncompleteObject {
            kind: "FileSystem",
            field: "metadata.uid",
        };
        m.reconciled("FileSystem", Err(&err), Duration::from_millis(3));
        m.reconciled("FileSystem", Ok(()), Duration::from_millis(3));
        let text = m.encode().unwrap();
        assert!(
            text.contains(r#"openefs_operator_reconciles_total{kind="FileSystem",result="ok"} 2"#),
            "{text}"
        );
        assert!(text.contains(
            r#"openefs_operator_reconciles_total{kind="FileSystem",result="incomplete-object"} 1"#
        ));
        assert!(
            text.contains(
                r#"openefs_operator_reconcile_duration_seconds_count{kind="FileSystem"} 3"#
            )
        );
    }
}
