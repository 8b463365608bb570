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
use rustls::{AlertDescription, ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::metrics::{Direction, Metrics};
use super::spec::{ClientCertificate, TunnelSpec};

/// Copy buffer from the server to the client, per connection: with the
/// rustls buffers this bounds a connection's memory; a slow side stops the
/// reads of the other (back-pressure), nothing queues without limit.
/// 256 KiB hands a 1 MiB READ reply to the kernel in four writes.
pub const BUFFER: usize = 256 * 1024;
/// Copy buffer from the client to the server, so the plaintext of one TLS
/// write: 48 KiB is three records (49,218 bytes), one GSO packet at any
/// common MTU, as nfsd's replies (`TLS_WRITE_LIMIT` there, which says why).
/// Measured on a shaped 14 Gbit/s link: 1 MiB writes 1.18 → 1.53 GB/s
/// against 256 KiB, with the cliff exactly where a write's ciphertext
/// passes one packet (65,000 bytes of plaintext fast, 65,536 slow);
/// loopback unchanged. It stays under rustls' default outgoing limit
/// (64 KiB), so a copy-buffer-full leaves in one `writev`.
const TO_SERVER_BUFFER: usize = 48 * 1024;
/// Read buffer under the TLS session: rustls reads ciphertext at most 4 KiB
/// at a time (its deframer's fixed read size); this turns those into one
/// `read` syscall per 64 KiB.
const TLS_READ_BUFFER: usize = 64 * 1024;
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
    /// The client certificate or its key could not be read or used.
    #[error("client certificate {cert:?} / key {key:?}: {reason}")]
    ClientCertificate {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What is wrong with them.
        reason: String,
    },
    /// The server refused the client certificate presented, or asked for
    /// one and got none.
    #[error(
        "{server} refused this node's TLS client certificate ({alert:?}): does the tunnel present one \
         (node plugin --tls-client-cert) signed by a CA of the file system's \
         policy.clientCertificates.caBundle?"
    )]
    ClientRefused {
        /// The server address.
        server: String,
        /// The alert it sent.
        alert: AlertDescription,
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
    let connector = connector(&spec.ca, spec.client_certificate.as_ref())?;
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
    let tcp = BufReader::with_capacity(TLS_READ_BUFFER, tcp);
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(server_name, tcp))
        .await
        .map_err(|_| handshake_err(io::ErrorKind::TimedOut.into()))?
        .map_err(handshake_err)?;
    debug!(server = %spec.server, "TLS connection established");
    let mut local = Counted::new(local, metrics.bytes(name, Direction::ToServer));
    let mut remote = Counted::new(tls, metrics.bytes(name, Direction::ToClient));
    tokio::select! {
        _ = stop.cancelled() => debug!("tunnel closed: dropping the connection"),
        r = tokio::io::copy_bidirectional_with_sizes(&mut local, &mut remote, TO_SERVER_BUFFER, BUFFER) => match r {
            Ok((up, down)) => debug!(up, down, "connection closed"),
            Err(e) => match refusal(&e) {
                Some(alert) => {
                    return Err(ForwardError::ClientRefused {
                        server: spec.server.clone(),
                        alert,
                    })
                }
                None => info!(error = %e, "connection ended"),
            },
        },
    }
    Ok(())
}

/// The alert with which a server refused this client's certificate (or its
/// lack of one). TLS 1.3 finishes the client's side of the handshake before
/// the server has checked the client certificate, so the refusal arrives as
/// the answer to the first bytes sent, not as a failed handshake.
fn refusal(e: &io::Error) -> Option<AlertDescription> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied),
        ) => Some(*alert),
        _ => None,
    }
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

/// A client config trusting `ca` only, presenting `client` when set, TLS
/// 1.3, ALPN "sunrpc". Built per connection: reading small PEM files is
/// cheap next to a handshake, and a rotated CA or renewed client
/// certificate takes effect without a restart.
fn connector(ca: &Path, client: Option<&ClientCertificate>) -> Result<TlsConnector, ForwardError> {
    let ca_err = |reason: String| ForwardError::Ca {
        path: ca.to_owned(),
        reason,
    };
    let pem = std::fs::read(ca).map_err(|e| ca_err(e.to_string()))?;
    let roots = trust_roots(&pem).map_err(ca_err)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ca_err(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(client) => {
            let client_err = |reason: String| ForwardError::ClientCertificate {
                cert: client.cert.clone(),
                key: client.key.clone(),
                reason,
            };
            let (chain, key) = read_client_certificate(client).map_err(client_err)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| client_err(e.to_string()))?
        }
    };
    config.alpn_protocols = vec![ALPN_SUNRPC.to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

fn read_client_certificate(
    client: &ClientCertificate,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("reading {path:?}: {e}"));
    let chain = CertificateDer::pem_slice_iter(&read(&client.cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in the certificate file".into());
    }
    let key =
        PrivateKeyDer::from_pem_slice(&read(&client.key)?).map_err(|e| format!("key: {e}"))?;
    Ok((chain, key))
}

/// A stream counting the bytes read from it into a metric as they pass,
/// and whose reads return everything ready, not one piece: a TLS stream
/// yields one record (at most 16 KiB) per read, and writing each to the
/// other side on its own costs a syscall and a wake-up of its reader per
/// record; gathered, a 1 MiB READ reply leaves in a few writes of the copy
/// buffer. (On a TCP stream gathering costs nothing: after a short read
/// tokio knows the socket is drained and answers the next poll without a
/// syscall.)
struct Counted<S> {
    inner: S,
    read: Counter,
    /// An error met after data was gathered: returned by the next read, so
    /// the data before it still reaches the other side.
    deferred: Option<io::Error>,
}

impl<S> Counted<S> {
    fn new(inner: S, read: Counter) -> Self {
        Self {
            inner,
            read,
            deferred: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.deferred.take() {
            return Poll::Ready(Err(e));
        }
        let start = buf.filled().len();
        let result = loop {
            let before = buf.filled().len();
            let gathered = before > start;
            match Pin::new(&mut self.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) if buf.filled().len() > before && buf.remaining() > 0 => {}
                // End of stream, or the buffer is full.
                Poll::Ready(Ok(())) => break Poll::Ready(Ok(())),
                Poll::Ready(Err(e)) if gathered => {
                    self.deferred = Some(e);
                    break Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                // The waker is registered; a wake-up after data was returned
                // only costs an empty poll.
                Poll::Pending if gathered => break Poll::Ready(Ok(())),
                Poll::Pending => break Poll::Pending,
            }
        };
        let n = buf.filled().len() - start;
        if n > 0 {
            self.read.inc_by(n as u64);
        }
        result
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use tokio::io::AsyncReadExt;

    use super::*;

    /// Yields its pieces one per read, like a TLS stream yields records;
    /// `None` is a moment with nothing ready.
    struct Pieces(VecDeque<Option<io::Result<&'static [u8]>>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.0.pop_front() {
                Some(Some(Ok(piece))) => {
                    let n = piece.len().min(buf.remaining());
                    buf.put_slice(&piece[..n]);
                    if n < piece.len() {
                        self.0.push_front(Some(Ok(&piece[n..])));
                    }
                    Poll::Ready(Ok(()))
                }
                Some(Some(Err(e))) => Poll::Ready(Err(e)),
                Some(None) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                None => Poll::Ready(Ok(())),
            }
        }
    }

    fn counted(pieces: Vec<Option<io::Result<&'static [u8]>>>) -> (Counted<Pieces>, Counter) {
        let counter = Counter::default();
        (
            Counted::new(Pieces(pieces.into()), counter.clone()),
            counter,
        )
    }

    #[tokio::test]
    async fn a_read_gathers_every_ready_piece_and_counts_them() {
        let (mut stream, counter) = counted(vec![
            Some(Ok(b"abc")),
            Some(Ok(b"def")),
            None,
            Some(Ok(b"gh")),
        ]);
        let mut buf = [0u8; 64];
        assert_eq!(stream.read(&mut buf).await.unwrap(), 6);
        assert_eq!(&buf[..6], b"abcdef");
        assert_eq!(stream.read(&mut buf).await.unwrap(), 2);
        assert_eq!(stream.read(&mut buf).await.unwrap(), 0, "end of stream");
        assert_eq!(counter.get(), 8);
    }

    #[tokio::test]
    async fn a_full_buffer_ends_the_read_and_keeps_the_rest() {
        let (mut stream, _) = counted(vec![Some(Ok(b"abcd")), Some(Ok(b"efgh"))]);
        let mut buf = [0u8; 6];
        assert_eq!(stream.read(&mut buf).await.unwrap(), 6);
        assert_eq!(&buf, b"abcdef");
        assert_eq!(stream.read(&mut buf).await.unwrap(), 2);
        assert_eq!(&buf[..2], b"gh");
    }

    #[tokio::test]
    async fn an_error_after_data_comes_with_the_next_read() {
        let (mut stream, counter) = counted(vec![
            Some(Ok(b"abc")),
            Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad record",
            ))),
            Some(Ok(b"never")),
        ]);
        let mut buf = [0u8; 64];
        assert_eq!(stream.read(&mut buf).await.unwrap(), 3, "the data first");
        let err = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(counter.get(), 3);
    }
}
