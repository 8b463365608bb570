//! Encryption in transit: TLS 1.3 on the NFS port itself.
//!
//! A connection starts in one of three ways, told apart before any RPC is
//! served:
//! - a TLS ClientHello (first byte 0x16, the TLS handshake record type; a
//!   record-marking header would mean a non-final fragment of ~370 MB, which
//!   no RPC client sends): the handshake starts at once (`openefs-csi
//!   tls-proxy`, stunnel and other TLS-wrapping clients);
//! - an RFC 9289 probe, a NULL call with AUTH_TLS credentials: answered with
//!   the STARTTLS verifier, then the handshake runs on the same connection
//!   (Linux `xprtsec=tls`/`mtls` with tlshd);
//! - anything else is plain RPC: served, or refused under `--require-tls`.
//!
//! Certificates are re-read when their files change (checked on each new
//! handshake), so a rotated Kubernetes Secret needs no restart.

use std::io::Cursor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use openefs_nfs_wire::rpc::{
    AUTH_NONE, AUTH_TLS, AcceptedBody, CallHeader, OpaqueAuth, ReplyHeader, STARTTLS_VERIFIER,
    fragment_header, parse_fragment_header,
};
use openefs_nfs_wire::xdr::{Decoder, Encoder, Opaque, XdrEncode};
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use crate::metrics::Metrics;

/// The TLS handshake record type, the first byte of a ClientHello.
const TLS_HANDSHAKE: u8 = 0x16;
/// RFC 9289 §5.2: the ALPN protocol id of RPC-with-TLS.
pub const ALPN_SUNRPC: &[u8] = b"sunrpc";
/// Largest record taken for a STARTTLS probe: a call header with the
/// largest credential and verifier (400 bytes each). A longer first record
/// is an ordinary call and never read in full here.
const MAX_PROBE: usize = 40 + 2 * (8 + 400);
/// Handshakes (and probes) that take longer are abandoned, so a silent peer
/// cannot hold a connection slot forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Read buffer under each TLS session: rustls reads ciphertext at most
/// 4 KiB at a time (its deframer's fixed read size), so without it a 1 MiB
/// WRITE costs ~260 `read` syscalls; with it, one per 64 KiB.
const TLS_READ_BUFFER: usize = 64 * 1024;
/// Plaintext rustls takes per write before its records go out, so the
/// most one `writev` sends. 48 KiB is three records (49,218 bytes), which
/// TCP sends as one GSO packet at any common MTU (up to 62.6 KB at 9000,
/// 65.1 KB at 1500): a larger write ends in a straggler packet and a
/// wake-up of the reader for it, a smaller one costs more syscalls. And a
/// reply's first records leave sooner, so the client decrypts while the
/// rest is encrypted. Measured through the tls-proxy on a shaped 14 Gbit/s
/// link: 1 MiB reads 1.40 → 1.52 GB/s against 256 KiB, 64 KiB (65,624
/// bytes a write) as slow as 256 KiB, loopback unchanged. The tls-proxy
/// sends in the same pieces. Bounded either way: the writer waits for the
/// socket.
const TLS_WRITE_LIMIT: usize = 48 * 1024;

/// The files and policy of `--tls-cert`, `--tls-key`, `--tls-client-ca` and
/// `--require-tls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA bundle: when set, clients must present a certificate it signed.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing PEM in {path}: {source}")]
    Pem {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("client CA {path}: {source}")]
    ClientCa {
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("client CA {path}: {source}")]
    CaCertificate {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("certificate {cert} with key {key}: {source}")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// The live TLS configuration: rebuilt from the files when one of them
/// changed, keeping the previous one when the new files do not load.
pub struct Tls {
    settings: TlsSettings,
    current: Mutex<Loaded>,
}

struct Loaded {
    config: Arc<ServerConfig>,
    /// Modification times of the files this config (or the last failed
    /// attempt) was read from: a failed reload is not retried, and not
    /// logged again, until a file changes again.
    stamps: Vec<Option<SystemTime>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the files; an error here stops the server from starting.
    pub fn load(settings: TlsSettings) -> Result<Self, TlsError> {
        let stamps = stamps(&settings);
        let config = Arc::new(build_config(&settings)?);
        Ok(Self {
            settings,
            current: Mutex::new(Loaded { config, stamps }),
        })
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// The config for a new handshake, reloaded first if a file changed.
    pub fn config(&self) -> Arc<ServerConfig> {
        let now = stamps(&self.settings);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.stamps != now {
            current.stamps = now;
            match build_config(&self.settings) {
                Ok(config) => {
                    info!(cert = %self.settings.cert.display(), "TLS certificate files changed: reloaded");
                    current.config = Arc::new(config);
                }
                Err(e) => {
                    error!(error = %e, "TLS certificate files changed but do not load: keeping the previous ones");
                }
            }
        }
        current.config.clone()
    }
}

fn stamps(s: &TlsSettings) -> Vec<Option<SystemTime>> {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut v = vec![mtime(&s.cert), mtime(&s.key)];
    if let Some(ca) = &s.client_ca {
        v.push(mtime(ca));
    }
    v
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in a PEM file; an empty file is an error, since it can
/// only be a mistake (or a file caught half-written).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// A root store of every certificate in a PEM CA bundle.
pub fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(path)? {
        roots.add(cert).map_err(|source| TlsError::CaCertificate {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

fn build_config(s: &TlsSettings) -> Result<ServerConfig, TlsError> {
    let certs = read_certificates(&s.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&s.key)?).map_err(|source| TlsError::Pem {
        path: s.key.clone(),
        source,
    })?;
    let config_error = |source| TlsError::Config {
        cert: s.cert.clone(),
        key: s.key.clone(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?;
    let builder = match &s.client_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(read_roots(ca)?), provider)
                    .build()
                    .map_err(|source| TlsError::ClientCa {
                        path: ca.clone(),
                        source,
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(config_error)?;
    config.alpn_protocols = vec![ALPN_SUNRPC.to_vec()];
    Ok(config)
}

/// Anything a connection's records can be read from or written to.
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// A connection ready for RPC records, with what TLS established about it.
pub struct Connection {
    pub reader: ReadHalf,
    pub writer: WriteHalf,
    /// Whether the records travel inside TLS.
    pub encrypted: bool,
    /// The client certificate verified against `--tls-client-ca` (mTLS).
    pub client: Option<ClientCertificate>,
}

/// What a verified client certificate says about its holder: the subject
/// for the log, the names for the policy's client rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The subject DN, e.g. `CN=node-a, O=openefs`.
    pub subject: String,
    /// The subject's common names, then its DNS subject alternative names.
    pub names: Vec<String>,
}

impl ClientCertificate {
    /// Reads a certificate rustls already verified; never fails, as the
    /// log line needs some subject (an unparsable one has no names, so no
    /// client rule applies to it).
    pub fn of(cert: &CertificateDer<'_>) -> Self {
        use x509_parser::extensions::GeneralName;
        let parsed = match x509_parser::parse_x509_certificate(cert) {
            Ok((_, parsed)) => parsed,
            Err(e) => {
                return Self {
                    subject: format!("<unparsable subject: {e}>"),
                    names: Vec::new(),
                };
            }
        };
        let common_names = parsed
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_owned));
        let dns_names = parsed
            .subject_alternative_name()
            .ok()
            .flatten()
            .into_iter()
            .flat_map(|san| san.value.general_names.iter())
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                _ => None,
            });
        Self {
            subject: parsed.subject().to_string(),
            names: common_names.chain(dns_names).collect(),
        }
    }
}

impl Connection {
    /// A plaintext connection, first replaying `prefix` (bytes already read
    /// while looking for a STARTTLS probe).
    fn plain(stream: TcpStream, prefix: Bytes) -> Self {
        let (rd, wr) = stream.into_split();
        let reader: ReadHalf = if prefix.is_empty() {
            Box::new(rd)
        } else {
            Box::new(Cursor::new(prefix).chain(rd))
        };
        Self {
            reader,
            writer: Box::new(wr),
            encrypted: false,
            client: None,
        }
    }
}

/// How a connection opened: decides between TLS, STARTTLS and plain RPC, and
/// runs the handshake. `None`: the connection was refused or failed (logged
/// here, and counted).
pub async fn accept(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<&Tls>,
    require_tls: bool,
    metrics: &Metrics,
) -> Option<Connection> {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, "TCP_NODELAY not set");
    }
    let Some(tls) = tls else {
        return Some(Connection::plain(stream, Bytes::new()));
    };
    let negotiated = negotiate(stream, peer, tls, require_tls, metrics);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, negotiated).await {
        Ok(conn) => conn,
        Err(_) => {
            warn!(%peer, "no TLS handshake or RPC call in time: closing");
            metrics.tls_handshake_failed();
            None
        }
    }
}

async fn negotiate(
    mut stream: TcpStream,
    peer: SocketAddr,
    tls: &Tls,
    require_tls: bool,
    metrics: &Metrics,
) -> Option<Connection> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(0) => return None,
        Ok(_) => {}
        Err(e) => {
            debug!(error = %e, "connection failed before its first byte");
            return None;
        }
    }
    if first[0] == TLS_HANDSHAKE {
        return handshake(stream, peer, tls, metrics).await;
    }
    let (probe, prefix) = match read_probe(&mut stream).await {
        Ok(r) => r,
        Err(e) => {
            debug!(error = %e, "connection failed before its first call");
            return None;
        }
    };
    if let Some(xid) = probe {
        if !prefix.is_empty() {
            // The client must wait for our STARTTLS reply before its
            // ClientHello; bytes after the probe are a broken client.
            warn!(%peer, "data after the STARTTLS probe, before the handshake: closing");
            metrics.tls_handshake_failed();
            return None;
        }
        if let Err(e) = stream.write_all(&starttls_reply(xid)).await {
            debug!(error = %e, "sending the STARTTLS reply failed");
            return None;
        }
        debug!("STARTTLS probe answered");
        return handshake(stream, peer, tls, metrics).await;
    }
    if require_tls {
        warn!(%peer, "plaintext RPC connection refused: the policy requires TLS");
        metrics.plaintext_refused();
        return None;
    }
    Some(Connection::plain(stream, prefix))
}

/// Reads the first record if it may be an RFC 9289 probe (short enough).
/// Returns the probe's xid when it is one, and the bytes read and not
/// consumed by it: the whole prefix when it is not a probe.
async fn read_probe(stream: &mut TcpStream) -> std::io::Result<(Option<u32>, Bytes)> {
    let mut buf = BytesMut::with_capacity(4 + MAX_PROBE);
    while buf.len() < 4 {
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok((None, buf.freeze()));
        }
    }
    let (len, last) = parse_fragment_header([buf[0], buf[1], buf[2], buf[3]]);
    if !last || len > MAX_PROBE {
        return Ok((None, buf.freeze()));
    }
    while buf.len() < 4 + len {
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok((None, buf.freeze()));
        }
    }
    let record = Bytes::copy_from_slice(&buf[4..4 + len]);
    match parse_probe(record) {
        Some(xid) => Ok((Some(xid), buf.split_off(4 + len).freeze())),
        None => Ok((None, buf.freeze())),
    }
}

/// The xid of an RFC 9289 §4.1 probe: a NULL call (procedure 0 of any
/// program) with AUTH_TLS credentials.
fn parse_probe(record: Bytes) -> Option<u32> {
    let header = CallHeader::decode(&mut Decoder::new(record)).ok()?;
    (header.proc_ == 0 && header.cred.flavor == AUTH_TLS).then_some(header.xid)
}

/// The probe's reply, record-marked: SUCCESS with an AUTH_NONE verifier
/// whose body is "STARTTLS".
pub fn starttls_reply(xid: u32) -> Bytes {
    let verf = OpaqueAuth {
        flavor: AUTH_NONE,
        body: Opaque(Bytes::from_static(STARTTLS_VERIFIER)),
    };
    let mut enc = Encoder::new();
    ReplyHeader::accepted(xid, verf, AcceptedBody::Success).encode(&mut enc);
    let body = enc.into_bytes();
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.extend_from_slice(&fragment_header(body.len(), true));
    out.extend_from_slice(&body);
    out.freeze()
}

async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    tls: &Tls,
    metrics: &Metrics,
) -> Option<Connection> {
    let acceptor = TlsAcceptor::from(tls.config());
    let buffered = tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, stream);
    let mut stream = match acceptor.accept(buffered).await {
        Ok(s) => s,
        Err(e) => {
            warn!(%peer, error = %e, "TLS handshake failed");
            metrics.tls_handshake_failed();
            return None;
        }
    };
    stream.get_mut().1.set_buffer_limit(Some(TLS_WRITE_LIMIT));
    let client = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(ClientCertificate::of);
    match &client {
        Some(c) => {
            info!(%peer, client = %c.subject, names = ?c.names, "TLS connection, client certificate verified")
        }
        None => debug!("TLS connection"),
    }
    let (rd, wr) = tokio::io::split(stream);
    Some(Connection {
        reader: Box::new(rd),
        writer: Box::new(wr),
        encrypted: true,
        client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openefs_nfs_wire::rpc::{ReplyStat, parse_fragment_header};
    use openefs_nfs_wire::xdr::XdrDecode;

    #[test]
    fn a_client_certificate_is_named_by_its_common_name_and_dns_names() {
        let mut params =
            rcgen::CertificateParams::new(vec!["node-a.example".into(), "10.0.0.1".into()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "node-a");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "openefs");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let client = ClientCertificate::of(cert.der());
        assert_eq!(client.names, ["node-a", "node-a.example"]);
        assert!(client.subject.contains("CN=node-a"), "{}", client.subject);

        let garbage = ClientCertificate::of(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]));
        assert!(garbage.names.is_empty());
        assert!(garbage.subject.starts_with("<unparsable"));
    }

    fn call(flavor: u32, proc_: u32) -> Bytes {
        let mut enc = Encoder::new();
        CallHeader {
            xid: 7,
            prog: 100003,
            vers: 4,
            proc_,
            cred: OpaqueAuth {
                flavor,
                body: Opaque::default(),
            },
            verf: OpaqueAuth::none(),
        }
        .encode(&mut enc);
        enc.into_bytes()
    }

    #[test]
    fn only_a_null_call_with_auth_tls_is_a_probe() {
        assert_eq!(parse_probe(call(AUTH_TLS, 0)), Some(7));
        assert_eq!(parse_probe(call(AUTH_NONE, 0)), None);
        assert_eq!(parse_probe(call(AUTH_TLS, 1)), None);
        assert_eq!(parse_probe(Bytes::from_static(b"\x00\x00")), None);
    }

    #[test]
    fn starttls_reply_carries_the_verifier() {
        let reply = starttls_reply(9);
        let (len, last) = parse_fragment_header([reply[0], reply[1], reply[2], reply[3]]);
        assert!(last);
        assert_eq!(len, reply.len() - 4);
        let header = ReplyHeader::decode(&mut Decoder::new(reply.slice(4..))).unwrap();
        assert_eq!(header.xid, 9);
        let ReplyStat::Accepted(a) = header.stat else {
            panic!("denied: {:?}", header.stat)
        };
        assert_eq!(a.body, AcceptedBody::Success);
        assert_eq!(a.verf.flavor, AUTH_NONE);
        assert_eq!(&a.verf.body.0[..], STARTTLS_VERIFIER);
    }
}
