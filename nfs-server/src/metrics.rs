//! Prometheus metrics of the server and the tiny HTTP endpoint serving them.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::fmt::Write;

use openefs_nfs_wire::mount::MountError;
use openefs_nfs_wire::nfs3::Nfs3Error;
use openefs_nfs_wire::nfs4::{Nfs4Error, Nfs4Status};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::throughput::IoKind;

/// How an operation ended, as a label: `NFS4_OK`, `REPLAY` (answered from
/// the slot reply cache) or the error's name; NFSv3 and MOUNT procedures
/// say `NFS3_OK`/`NFS3ERR_*` and `MNT3_OK`/`MNT3ERR_*`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Replay,
    Err(Nfs4Error),
    V3(Result<(), Nfs3Error>),
    Mount(Result<(), MountError>),
}

impl From<Nfs4Status> for Outcome {
    fn from(s: Nfs4Status) -> Self {
        match s {
            Ok(()) => Self::Ok,
            Err(e) => Self::Err(e),
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, enc: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Self::Ok => enc.write_str("NFS4_OK"),
            Self::Replay => enc.write_str("REPLAY"),
            // The variant name, upper-cased: NFS4ERR_BADSTATEID.
            Self::Err(e) => write!(enc, "NFS4ERR_{}", format!("{e:?}").to_uppercase()),
            Self::V3(Ok(())) => enc.write_str("NFS3_OK"),
            Self::V3(Err(e)) => write!(enc, "NFS3ERR_{}", format!("{e:?}").to_uppercase()),
            Self::Mount(Ok(())) => enc.write_str("MNT3_OK"),
            Self::Mount(Err(e)) => write!(enc, "MNT3ERR_{}", format!("{e:?}").to_uppercase()),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpStatus {
    op: &'static str,
    status: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: &'static str,
}

/// What a client reclaimed after a restart.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Reclaimed {
    Open,
    Lock,
}

impl EncodeLabelValue for Reclaimed {
    fn encode(&self, enc: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        enc.write_str(match self {
            Self::Open => "open",
            Self::Lock => "lock",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReclaimKind {
    kind: Reclaimed,
}

fn latency_histogram() -> Histogram {
    // 25 µs … ~6.5 s: from a cached GETATTR to a large synchronous WRITE.
    Histogram::new(exponential_buckets(25e-6, 2.0, 19))
}

pub struct Metrics {
    registry: Registry,
    ops: Family<OpStatus, Counter>,
    latency: Family<Op, Histogram, fn() -> Histogram>,
    bytes_read: Counter,
    bytes_written: Counter,
    connections: Gauge,
    grace_active: Gauge,
    reclaims: Family<ReclaimKind, Counter>,
    plaintext_refused: Counter,
    tls_handshake_failures: Counter,
    io: IoMetrics,
}

/// The throughput metering, mirroring EFS's CloudWatch metrics.
#[derive(Default)]
struct IoMetrics {
    burst_credits: Gauge<f64, AtomicU64>,
    permitted: Gauge<f64, AtomicU64>,
    metered: Counter<f64, AtomicU64>,
    total: Counter,
    data_read: Counter,
    data_write: Counter,
    metadata: Counter,
    percent_limit: Gauge<f64, AtomicU64>,
    /// No label: the file system; `access_point`: one access point.
    storage: Family<Vec<(&'static str, String)>, Gauge>,
    /// The access points with a `storage` series, to drop removed ones.
    storage_aps: std::sync::Mutex<Vec<String>>,
}

impl IoMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "burst_credit_balance_bytes",
            "Burst credits left (EFS BurstCreditBalance)",
            self.burst_credits.clone(),
        );
        registry.register(
            "permitted_throughput_bytes_per_second",
            "Metered bytes/s allowed now, 0 when unlimited (EFS PermittedThroughput)",
            self.permitted.clone(),
        );
        registry.register(
            "metered_io_bytes",
            "Metered bytes: reads at one third, each request at least 4 KiB (EFS MeteredIOBytes)",
            self.metered.clone(),
        );
        registry.register(
            "total_io_bytes",
            "Data and metadata bytes of all requests (EFS TotalIOBytes)",
            self.total.clone(),
        );
        registry.register(
            "data_read_io_bytes",
            "File data bytes read (EFS DataReadIOBytes)",
            self.data_read.clone(),
        );
        registry.register(
            "data_write_io_bytes",
            "File data bytes written (EFS DataWriteIOBytes)",
            self.data_write.clone(),
        );
        registry.register(
            "metadata_io_bytes",
            "Metadata operations, 4 KiB each (EFS MetadataIOBytes)",
            self.metadata.clone(),
        );
        registry.register(
            "percent_io_limit",
            "Metered throughput over the last second as a percentage of the permitted throughput (EFS PercentIOLimit)",
            self.percent_limit.clone(),
        );
        registry.register(
            "storage_bytes",
            "Metered bytes stored, in the file system or (label access_point) through one access point (EFS StorageBytes)",
            self.storage.clone(),
        );
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("openefs_nfsd");
        let ops = Family::<OpStatus, Counter>::default();
        let latency =
            Family::<Op, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let bytes_read = Counter::default();
        let bytes_written = Counter::default();
        let connections = Gauge::default();
        let grace_active = Gauge::default();
        let reclaims = Family::<ReclaimKind, Counter>::default();
        let plaintext_refused = Counter::default();
        let tls_handshake_failures = Counter::default();
        registry.register(
            "operations",
            "NFS operations executed, by operation and result status",
            ops.clone(),
        );
        registry.register(
            "operation_duration_seconds",
            "Time to execute one NFS operation",
            latency.clone(),
        );
        registry.register(
            "read_bytes",
            "File data bytes read by clients",
            bytes_read.clone(),
        );
        registry.register(
            "written_bytes",
            "File data bytes written by clients",
            bytes_written.clone(),
        );
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "grace_active",
            "1 while the server is in its grace period after a restart (only reclaims served)",
            grace_active.clone(),
        );
        registry.register(
            "reclaims",
            "Opens and locks clients took back in a grace period",
            reclaims.clone(),
        );
        registry.register(
            "plaintext_refused",
            "Plaintext RPC connections refused because TLS is required",
            plaintext_refused.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out (bad or untrusted certificate, not TLS)",
            tls_handshake_failures.clone(),
        );
        let io = IoMetrics::default();
        io.register(&mut registry);
        Self {
            registry,
            io,
            ops,
            latency,
            bytes_read,
            bytes_written,
            connections,
            grace_active,
            reclaims,
            plaintext_refused,
            tls_handshake_failures,
        }
    }
}

impl Metrics {
    pub fn op_done(&self, op: &'static str, status: Outcome, took: Duration) {
        self.ops.get_or_create(&OpStatus { op, status }).inc();
        self.latency
            .get_or_create(&Op { op })
            .observe(took.as_secs_f64());
    }

    pub fn read(&self, n: usize) {
        self.bytes_read.inc_by(n as u64);
    }

    pub fn written(&self, n: usize) {
        self.bytes_written.inc_by(n as u64);
    }

    /// One metered request: `bytes` of data (metadata: 4 KiB) counting as
    /// `metered` bytes.
    pub fn io(&self, kind: IoKind, bytes: u64, metered: f64) {
        self.io.metered.inc_by(metered);
        self.io.total.inc_by(bytes);
        match kind {
            IoKind::DataRead => self.io.data_read.inc_by(bytes),
            IoKind::DataWrite => self.io.data_write.inc_by(bytes),
            IoKind::MetadataRead | IoKind::MetadataWrite => self.io.metadata.inc_by(bytes),
        };
    }

    /// The throughput limit's state: credits, permitted metered bytes/s
    /// (`None`: unlimited), its use in percent, stored bytes.
    pub fn set_throughput(&self, credits: f64, permitted: Option<f64>, percent: f64, stored: u64) {
        self.io.burst_credits.set(credits);
        self.io.permitted.set(permitted.unwrap_or(0.0));
        self.io.percent_limit.set(percent);
        self.io
            .storage
            .get_or_create(&Vec::new())
            .set(i64::try_from(stored).unwrap_or(i64::MAX));
    }

    /// Stored bytes per access point; series of access points not in `aps`
    /// go.
    pub fn set_access_point_storage(&self, aps: &[openefs_vfs::ApUsage]) {
        let mut shown = self
            .io
            .storage_aps
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let label = |id: &str| vec![("access_point", id.to_owned())];
        // A set: this runs every second, with thousands of access points.
        let now: std::collections::HashSet<&str> = aps.iter().map(|ap| ap.id.as_str()).collect();
        for gone in shown.iter().filter(|id| !now.contains(id.as_str())) {
            self.io.storage.remove(&label(gone));
        }
        for ap in aps {
            self.io
                .storage
                .get_or_create(&label(&ap.id))
                .set(i64::try_from(ap.stored_bytes).unwrap_or(i64::MAX));
        }
        *shown = aps.iter().map(|ap| ap.id.clone()).collect();
    }

    pub fn connection_opened(&self) {
        self.connections.inc();
    }

    pub fn connection_closed(&self) {
        self.connections.dec();
    }

    /// Client connections open now.
    pub fn connections(&self) -> u64 {
        self.connections.get().max(0) as u64
    }

    pub fn set_grace(&self, active: bool) {
        self.grace_active.set(i64::from(active));
    }

    pub fn reclaimed(&self, kind: Reclaimed) {
        self.reclaims.get_or_create(&ReclaimKind { kind }).inc();
    }

    pub fn plaintext_refused(&self) {
        self.plaintext_refused.inc();
    }

    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.inc();
    }

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

/// Serves `GET /metrics` until `shutdown` fires.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .with_state(metrics);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_ops_bytes_and_connections() {
        let m = Metrics::default();
        m.op_done("READ", Outcome::Ok, Duration::from_micros(100));
        m.op_done("READ", Outcome::Ok, Duration::from_micros(100));
        m.op_done(
            "READ",
            Outcome::Err(Nfs4Error::Stale),
            Duration::from_micros(100),
        );
        m.read(4096);
        m.op_done(
            "NFSPROC3_LOOKUP",
            Outcome::V3(Err(Nfs3Error::Noent)),
            Duration::from_micros(100),
        );
        m.op_done(
            "MOUNTPROC3_MNT",
            Outcome::Mount(Ok(())),
            Duration::from_micros(100),
        );
        m.connection_opened();
        m.set_grace(true);
        m.reclaimed(Reclaimed::Lock);
        let text = m.encode().unwrap();
        assert!(text.contains(r#"openefs_nfsd_operations_total{op="READ",status="NFS4_OK"} 2"#));
        assert!(
            text.contains(r#"openefs_nfsd_operations_total{op="READ",status="NFS4ERR_STALE"} 1"#)
        );
        assert!(text.contains("openefs_nfsd_read_bytes_total 4096"));
        assert!(text.contains(
            r#"openefs_nfsd_operations_total{op="NFSPROC3_LOOKUP",status="NFS3ERR_NOENT"} 1"#
        ));
        assert!(
            text.contains(
                r#"openefs_nfsd_operations_total{op="MOUNTPROC3_MNT",status="MNT3_OK"} 1"#
            )
        );
        assert!(text.contains("openefs_nfsd_connections 1"));
        assert!(text.contains("openefs_nfsd_grace_active 1"));
        assert!(text.contains(r#"openefs_nfsd_reclaims_total{kind="lock"} 1"#));
        assert!(text.contains(r#"openefs_nfsd_operation_duration_seconds_count{op="READ"} 3"#));
    }

    #[test]
    fn throughput_metrics_mirror_efs() {
        let m = Metrics::default();
        m.io(IoKind::DataRead, 3 << 20, 1048576.0);
        m.io(IoKind::DataWrite, 100, 4096.0);
        m.io(IoKind::MetadataWrite, 4096, 4096.0);
        m.set_throughput(1.5, Some(2.0 * 1048576.0), 12.5, 8192);
        let text = m.encode().unwrap();
        for line in [
            "openefs_nfsd_metered_io_bytes_total 1056768.0",
            "openefs_nfsd_total_io_bytes_total 3149924",
            "openefs_nfsd_data_read_io_bytes_total 3145728",
            "openefs_nfsd_data_write_io_bytes_total 100",
            "openefs_nfsd_metadata_io_bytes_total 4096",
            "openefs_nfsd_burst_credit_balance_bytes 1.5",
            "openefs_nfsd_permitted_throughput_bytes_per_second 2097152.0",
            "openefs_nfsd_percent_io_limit 12.5",
            "openefs_nfsd_storage_bytes 8192",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        let ap = |id: &str, stored_bytes| openefs_vfs::ApUsage {
            id: id.into(),
            stored_bytes,
            known: true,
            max_bytes: None,
        };
        m.set_access_point_storage(&[ap("a", 6144), ap("b", 12288)]);
        m.set_access_point_storage(&[ap("b", 18432)]);
        m.set_throughput(0.0, None, 0.0, 0);
        let text = m.encode().unwrap();
        assert!(text.contains("openefs_nfsd_permitted_throughput_bytes_per_second 0.0"));
        assert!(text.contains(r#"openefs_nfsd_storage_bytes{access_point="b"} 18432"#));
        assert!(!text.contains(r#"access_point="a""#), "{text}");
        assert!(text.contains("openefs_nfsd_storage_bytes 0\n"), "{text}");
    }
}
