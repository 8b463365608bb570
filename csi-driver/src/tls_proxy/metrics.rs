//! The proxy's Prometheus metrics, per tunnel, and the `/metrics` endpoint.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TunnelLabel {
    tunnel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabel {
    tunnel: String,
    /// `to_server` (client writes) or `to_client` (server replies).
    direction: &'static str,
}

/// Direction of forwarded bytes.
#[derive(Clone, Copy, Debug)]
pub enum Direction {
    /// From the local (kernel) side to the server.
    ToServer,
    /// From the server back to the local side.
    ToClient,
}

/// Counters of every tunnel, labelled by tunnel name.
pub struct Metrics {
    registry: Registry,
    bytes: Family<BytesLabel, Counter>,
    connections: Family<TunnelLabel, Counter>,
    active: Family<TunnelLabel, Gauge>,
    handshake_failures: Family<TunnelLabel, Counter>,
    reconnects: Family<TunnelLabel, Counter>,
    tunnels: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("openefs_tls_proxy");
        let bytes = Family::<BytesLabel, Counter>::default();
        let connections = Family::<TunnelLabel, Counter>::default();
        let active = Family::<TunnelLabel, Gauge>::default();
        let handshake_failures = Family::<TunnelLabel, Counter>::default();
        let reconnects = Family::<TunnelLabel, Counter>::default();
        let tunnels = Gauge::default();
        registry.register(
            "bytes",
            "Bytes forwarded, by tunnel and direction",
            bytes.clone(),
        );
        registry.register(
            "connections",
            "Local connections accepted, by tunnel",
            connections.clone(),
        );
        registry.register(
            "active_connections",
            "Local connections open now, by tunnel",
            active.clone(),
        );
        registry.register(
            "handshake_failures",
            "Connections to the server that failed (TCP connect or TLS handshake), by tunnel",
            handshake_failures.clone(),
        );
        registry.register(
            "reconnects",
            "Local connections after a tunnel's first since the proxy started (client reconnects)",
            reconnects.clone(),
        );
        registry.register("tunnels", "Tunnels listening", tunnels.clone());
        Self {
            registry,
            bytes,
            connections,
            active,
            handshake_failures,
            reconnects,
            tunnels,
        }
    }
}

fn label(tunnel: &str) -> TunnelLabel {
    TunnelLabel {
        tunnel: tunnel.to_owned(),
    }
}

impl Metrics {
    /// The counter for one tunnel and direction, fetched once per connection
    /// so the copy loop only increments an atomic.
    pub fn bytes(&self, tunnel: &str, direction: Direction) -> Counter {
        let direction = match direction {
            Direction::ToServer => "to_server",
            Direction::ToClient => "to_client",
        };
        self.bytes
            .get_or_create(&BytesLabel {
                tunnel: tunnel.to_owned(),
                direction,
            })
            .clone()
    }

    /// A local connection was accepted; `again`: not the tunnel's first.
    pub fn connection_opened(&self, tunnel: &str, again: bool) {
        self.connections.get_or_create(&label(tunnel)).inc();
        self.active.get_or_create(&label(tunnel)).inc();
        if again {
            self.reconnects.get_or_create(&label(tunnel)).inc();
        }
    }

    pub fn connection_closed(&self, tunnel: &str) {
        self.active.get_or_create(&label(tunnel)).dec();
    }

    pub fn handshake_failed(&self, tunnel: &str) {
        self.handshake_failures.get_or_create(&label(tunnel)).inc();
    }

    pub fn set_tunnels(&self, n: usize) {
        self.tunnels.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text of every metric.
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

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .with_state(metrics);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
