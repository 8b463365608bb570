//! One tunnel: a loopback listener, and per accepted connection a TLS
//! connection to the server with bytes copied both ways through fixed
//! buffers.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::metrics::{Direction, Metrics};
use super::spec::TunnelSpec;

/// Copy buffer per direction per connection: with the rustls buffers this
/// bounds a connection's memory; a slow side stops the reads of the other
/// (back-pressure), nothing queues without limit. 256 KiB carries a 1 MiB
/// NFS WRITE in four rounds at loopback speed.
pub const BUFFER: usize = 256 * 1024;
/// Limit for the TCP connect and for the TLS handshake each: the kernel
/// retries a failed connection, so failing fast beats hanging.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// RFC 9289 §5.2: the ALPN protocol id of RPC-with-TLS.
const ALPN_SUNRPC: &[u8] = b"sunrpc";

/// Why a connection to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The CA bundle could not be read or has no usable certificate.
    #[error("CA bundle {path:?}: {reason}")]
    Ca {
        /// The bundle.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `serverName` is neither a DNS name nor an IP address.
    #[error("invalid server name {0:?}")]
    ServerName(String),
    /// The TCP connection to the server failed or timed out.
    #[error("connecting to {server}: {source}")]
    Connect {
        /// The server address.
        server: String,
        /// The failure.
        source: io::Error,
    },
    /// The TLS handshake failed (e.g. an untrusted certificate) or timed out.
    #[error("TLS handshake with {server}: {source}")]
    Handshake {
        /// The server address.
        server: String,
        /// The failure.
        source: io::Error,
    },
}

/// Binds the tunnel's loopback port.
pub async fn bind(spec: &TunnelSpec) -> io::Result<TcpListener> {
    // tokio sets SO_REUSEADDR on listeners: a restarted proxy binds the
    // port again at once, while the old connections are in TIME_WAIT.
    TcpListener::bind(("127.0.0.1", spec.local_port)).await
}

/// Accepts and forwards connections until `stop`; then closes the ones
/// open and returns when they are gone.
pub async fn run(
    name: String,
    spec: TunnelSpec,
    listener: TcpListener,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let connections = TaskTracker::new();
    let mut accepted = 0u64;
    loop {
        let (local, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    warn!(tunnel = %name, error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        metrics.connection_opened(&name, accepted > 0);
        accepted += 1;
        let span = info_span!("connection", tunnel = %name, %peer);
        let (name, spec, metrics, stop) =
            (name.clone(), spec.clone(), metrics.clone(), stop.clone());
        connections.spawn(
            async move {
                if let Err(e) = forward(local, &name, &spec, &metrics, stop).await {
                    warn!(error = %e, "connection to the server failed; the client will retry");
                    metrics.handshake_failed(&name);
                }
                metrics.connection_closed(&name);
            }
            .instrument(span),
        );
    }
    connections.close();
    connections.wait().await;
}

async fn forward(
    local: TcpStream,
    name: &str,
    spec: &TunnelSpec,
    metrics: &Metrics,
    stop: CancellationToken,
) -> Result<(), ForwardError> {
    let connector = connector(&spec.ca)?;
    let server_name = ServerName::try_from(spec.server_name.clone())
        .map_err(|_| ForwardError::ServerName(spec.server_name.clone()))?;
    let connect_err = |source| ForwardError::Connect {
        server: spec.server.clone(),
        source,
    };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&spec.server))
        .await
        .map_err(|_| connect_err(io::ErrorKind::TimedOut.into()))?
        .map_err(connect_err)?;
    let handshake_err = |source| ForwardError::Handshake {
        server: spec.server.clone(),
        source,
    };
    for s in [&local, &tcp] {
        if let Err(e) = s.set_nodelay(true) {
            debug!(error = %e, "TCP_NODELAY not set");
        }
    }
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(server_name, tcp))
        .await
        .map_err(|_| handshake_err(io::ErrorKind::TimedOut.into()))?
        .map_err(handshake_err)?;
    debug!(server = %spec.server, "TLS connection established");
    let mut local = Counted::new(local, metrics.bytes(name, Direction::ToServer));
    let mut remote = Counted::new(tls, metrics.bytes(name, Direction::ToClient));
    tokio::select! {
        _ = stop.cancelled() => debug!("tunnel closed: dropping the connection"),
        r = tokio::io::copy_bidirectional_with_sizes(&mut local, &mut remote, BUFFER, BUFFER) => match r {
            Ok((up, down)) => debug!(up, down, "connection closed"),
            Err(e) => info!(error = %e, "connection ended"),
        },
    }
    Ok(())
}

/// The certificates of a PEM CA bundle as trust anchors; at least one.
pub fn trust_roots(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(roots)
}

/// A client config trusting `ca` only, TLS 1.3, ALPN "sunrpc". Built per
/// connection: reading a small PEM file is cheap next to a handshake, and
/// a rotated CA takes effect without a restart.
fn connector(ca: &Path) -> Result<TlsConnector, ForwardError> {
    let ca_err = |reason: String| ForwardError::Ca {
        path: ca.to_owned(),
        reason,
    };
    let pem = std::fs::read(ca).map_err(|e| ca_err(e.to_string()))?;
    let roots = trust_roots(&pem).map_err(ca_err)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ca_err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_SUNRPC.to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// A stream counting the bytes read from it into a metric as they pass.
struct Counted<S> {
    inner: S,
    read: Counter,
}

impl<S> Counted<S> {
    fn new(inner: S, read: Counter) -> Self {
        Self { inner, read }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read.inc_by(n as u64);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
