//! TLS on the NFS port: direct TLS, the RFC 9289 STARTTLS upgrade, mTLS,
//! `--require-tls` and certificate reloading, over real loopback sockets
//! against the server with the real `LocalVfs` (needs root).

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use openefs_nfs_wire::nfs4::ops::{Create4Args, CreateType4, Read4Args};
use openefs_nfs_wire::nfs4::types::{Stateid4, Utf8Str};
use openefs_nfs_wire::nfs4::*;
use openefs_nfs_wire::rpc::{
    AUTH_NONE, AUTH_TLS, AcceptedBody, CallHeader, OpaqueAuth, ReplyHeader, ReplyStat,
    STARTTLS_VERIFIER, fragment_header,
};
use openefs_nfs_wire::xdr::{Decoder, Encoder, Opaque, XdrDecode, XdrEncode};
use openefs_nfsd::client::{Client, ClientError};
use openefs_nfsd::settings::{ClientRule, ClientRules};
use openefs_nfsd::tls::{ALPN_SUNRPC, Tls, TlsSettings, read_roots};
use openefs_nfsd::transport::RecordCodec;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::codec::Framed;

mod common;
#[path = "common/pki.rs"]
mod pki;
use common::{TestServer, accepted};
use pki::{Ca, write};

/// Certificates on disk: the server's, signed by `ca`, and the settings
/// naming them; `require`: the policy requires TLS.
struct Files {
    dir: tempfile::TempDir,
    ca: Ca,
    settings: TlsSettings,
    require: bool,
}

impl Files {
    fn new(client_ca: Option<&Ca>, require: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("openefs test CA");
        let leaf = ca.server(&["nfs.example.test", "127.0.0.1"]);
        let settings = TlsSettings {
            cert: write(dir.path(), "tls.crt", &leaf.cert),
            key: write(dir.path(), "tls.key", &leaf.key),
            client_ca: client_ca.map(|c| write(dir.path(), "client-ca.crt", &c.pem)),
        };
        Self {
            dir,
            ca,
            settings,
            require,
        }
    }

    async fn serve(&self) -> TestServer {
        let s = TestServer::start_with_tls(Tls::load(self.settings.clone()).unwrap()).await;
        require_tls(&s, self.require);
        s
    }
}

fn require_tls(s: &TestServer, require: bool) {
    let mut settings = (*s.server.settings()).clone();
    settings.policy.require_tls = require;
    s.server.apply_settings(settings).unwrap();
}

fn connector(trusted: &Ca, client: Option<&pki::Leaf>) -> TlsConnector {
    let dir = tempfile::tempdir().unwrap();
    let roots = read_roots(&write(dir.path(), "ca.crt", &trusted.pem)).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_SUNRPC.to_vec()];
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    addr: SocketAddr,
    connector: &TlsConnector,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("nfs.example.test").unwrap();
    connector.connect(name, tcp).await
}

/// NULL, then EXCHANGE_ID + CREATE_SESSION + RECLAIM_COMPLETE: RPC and
/// COMPOUND work over `client`'s transport.
async fn exercise(client: &mut Client) {
    let (h, _) = client
        .call(NFS4_PROGRAM, NFS_V4, NFSPROC4_NULL, &[])
        .await
        .unwrap();
    assert_eq!(accepted(&h.stat), &AcceptedBody::Success);
    // A fresh owner each time: a second RECLAIM_COMPLETE of one client
    // would fail.
    static OWNERS: AtomicUsize = AtomicUsize::new(0);
    let owner = format!("tls-client-{}", OWNERS.fetch_add(1, Ordering::Relaxed));
    client.establish(owner.as_bytes()).await.unwrap();
}

fn metric(server: &TestServer, name: &str) -> String {
    let text = server.server.metrics().encode().unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} not in {text}"))
        .to_owned()
}

/// The server closes a refused or failed connection: a call on it gets no
/// reply.
async fn assert_closed(client: &mut Client) {
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        client.call(NFS4_PROGRAM, NFS_V4, NFSPROC4_NULL, &[]),
    )
    .await
    .expect("server closes the connection in time");
    assert!(r.is_err(), "call answered on a refused connection: {r:?}");
}

#[tokio::test]
async fn serves_tls_and_plaintext_on_one_port() {
    let files = Files::new(None, false);
    let s = files.serve().await;
    let tls = tls_connect(s.addr, &connector(&files.ca, None))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(ALPN_SUNRPC));
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    exercise(&mut Client::over(tls)).await;
    // Without --require-tls plain RPC still works, also when the first
    // record is too long to be a STARTTLS probe (not read whole before
    // deciding) or comes in two fragments.
    exercise(&mut s.client().await).await;
    let mut long_first = s.client().await;
    let (h, _) = long_first
        .call(NFS4_PROGRAM, NFS_V4, NFSPROC4_NULL, &[0; 4000])
        .await
        .unwrap();
    assert_eq!(accepted(&h.stat), &AcceptedBody::Success);
    let mut fragmented = s.client().await;
    let (xid, call) = fragmented.encode_call(NFS4_PROGRAM, NFS_V4, NFSPROC4_NULL, &[]);
    let mut raw = fragment_header(8, false).to_vec();
    raw.extend_from_slice(&call[..8]);
    raw.extend_from_slice(&fragment_header(call.len() - 8, true));
    raw.extend_from_slice(&call[8..]);
    fragmented.send_raw(&raw).await.unwrap();
    let reply = fragmented.recv_record().await.unwrap().expect("a reply");
    assert_eq!(
        ReplyHeader::decode(&mut Decoder::new(reply)).unwrap().xid,
        xid
    );
    assert_eq!(
        metric(&s, "openefs_nfsd_plaintext_refused_total"),
        "openefs_nfsd_plaintext_refused_total 0"
    );
    s.stop().await;
}

/// The RFC 9289 §4.1 probe: NULL with AUTH_TLS credentials.
fn probe(xid: u32) -> Bytes {
    let mut enc = Encoder::new();
    CallHeader {
        xid,
        prog: NFS4_PROGRAM,
        vers: NFS_V4,
        proc_: NFSPROC4_NULL,
        cred: OpaqueAuth {
            flavor: AUTH_TLS,
            body: Opaque::default(),
        },
        verf: OpaqueAuth::none(),
    }
    .encode(&mut enc);
    enc.into_bytes()
}

/// Sends the probe, checks the STARTTLS reply, and hands back the TCP
/// stream for the handshake.
async fn starttls(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut framed = Framed::new(tcp, RecordCodec::new(1024));
    framed.send(probe(0x5157)).await.unwrap();
    let reply = framed.next().await.expect("a reply").unwrap();
    let header = ReplyHeader::decode(&mut Decoder::new(reply)).unwrap();
    assert_eq!(header.xid, 0x5157);
    let ReplyStat::Accepted(a) = header.stat else {
        panic!("probe denied: {:?}", header.stat)
    };
    assert_eq!(a.body, AcceptedBody::Success);
    assert_eq!(a.verf.flavor, AUTH_NONE);
    assert_eq!(&a.verf.body.0[..], STARTTLS_VERIFIER);
    let parts = framed.into_parts();
    assert!(parts.read_buf.is_empty(), "bytes after the STARTTLS reply");
    parts.io
}

#[tokio::test]
async fn starttls_probe_upgrades_the_connection() {
    let files = Files::new(None, true);
    let s = files.serve().await;
    let tcp = starttls(s.addr).await;
    let name = ServerName::try_from("nfs.example.test").unwrap();
    let tls = connector(&files.ca, None).connect(name, tcp).await.unwrap();
    exercise(&mut Client::over(tls)).await;
    s.stop().await;
}

#[tokio::test]
async fn require_tls_refuses_plaintext() {
    let files = Files::new(None, true);
    let s = files.serve().await;
    assert_closed(&mut s.client().await).await;
    assert_eq!(
        metric(&s, "openefs_nfsd_plaintext_refused_total"),
        "openefs_nfsd_plaintext_refused_total 1"
    );
    // TLS clients are served.
    let tls = tls_connect(s.addr, &connector(&files.ca, None))
        .await
        .unwrap();
    exercise(&mut Client::over(tls)).await;
    s.stop().await;
}

/// requireTls switched on at runtime closes an open plaintext connection at
/// its next call and refuses new ones; switched off, plaintext is served
/// again. A server without TLS material refuses the policy.
#[tokio::test]
async fn require_tls_switched_at_runtime() {
    let files = Files::new(None, false);
    let s = files.serve().await;
    let mut plain = s.client().await;
    exercise(&mut plain).await;
    require_tls(&s, true);
    assert_closed(&mut plain).await;
    assert_closed(&mut s.client().await).await;
    let tls = tls_connect(s.addr, &connector(&files.ca, None))
        .await
        .unwrap();
    exercise(&mut Client::over(tls)).await;
    require_tls(&s, false);
    exercise(&mut s.client().await).await;
    s.stop().await;

    let without_tls = TestServer::start().await;
    let mut settings = (*without_tls.server.settings()).clone();
    settings.policy.require_tls = true;
    let err = without_tls.server.apply_settings(settings).unwrap_err();
    assert!(err.contains("TLS certificate"), "{err}");
    assert!(!without_tls.server.settings().policy.require_tls);
    exercise(&mut without_tls.client().await).await;
    without_tls.stop().await;
}

/// A client would see the same failure with a server certificate it does
/// not trust, and the server counts the aborted handshake.
#[tokio::test]
async fn wrong_ca_fails_the_handshake() {
    let files = Files::new(None, false);
    let s = files.serve().await;
    let other = Ca::new("some other CA");
    let err = tls_connect(s.addr, &connector(&other, None))
        .await
        .expect_err("handshake against an untrusted server certificate");
    assert!(
        err.to_string().contains("UnknownIssuer"),
        "unexpected error: {err}"
    );
    wait_for(&s, "openefs_nfsd_tls_handshake_failures_total 1").await;
    s.stop().await;
}

async fn wait_for(s: &TestServer, line: &str) {
    let name = line.split(' ').next().unwrap();
    for _ in 0..100 {
        if metric(s, name) == line {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} is not {line}", metric(s, name));
}

#[tokio::test]
async fn mtls_verifies_client_certificates() {
    let clients = Ca::new("openefs client CA");
    let files = Files::new(Some(&clients), true);
    let s = files.serve().await;
    // No client certificate, then one from a CA the server does not trust.
    let mut failures = 0;
    for leaf in [None, Some(Ca::new("rogue CA").client("mallory"))] {
        // TLS 1.3 finishes the client's side of the handshake before the
        // server checked the client certificate: the refusal shows on the
        // first call.
        if let Ok(tls) = tls_connect(s.addr, &connector(&files.ca, leaf.as_ref())).await {
            assert_closed(&mut Client::over(tls)).await;
        }
        failures += 1;
        wait_for(
            &s,
            &format!("openefs_nfsd_tls_handshake_failures_total {failures}"),
        )
        .await;
    }
    let alice = clients.client("alice");
    let tls = tls_connect(s.addr, &connector(&files.ca, Some(&alice)))
        .await
        .unwrap();
    exercise(&mut Client::over(tls)).await;
    s.stop().await;
}

/// Creates the directory `name` in the export root as `client`.
async fn mkdir(client: &mut Client, name: &str) -> Result<Vec<ResOp>, ClientError> {
    let create = ArgOp::Create(Create4Args {
        objtype: CreateType4::Dir,
        objname: Utf8Str::from(name),
        createattrs: Fattr4::default(),
    });
    client.compound(vec![ArgOp::Putrootfh, create]).await
}

/// The policy's client rules follow the verified client certificate: a
/// read-only, root-squashing file system lets one client write and another
/// write as root, and a rule removed at runtime stops applying to a
/// connection already open.
#[tokio::test]
async fn client_rules_apply_to_the_verified_client() {
    let clients = Ca::new("openefs client CA");
    let files = Files::new(Some(&clients), true);
    let s = files.serve().await;
    // Squashed root creates as nobody: let it.
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let rule = |client: &str, read_only, root_squash| ClientRule {
        client: client.into(),
        read_only,
        root_squash,
    };
    let mut settings = (*s.server.settings()).clone();
    settings.policy.read_only = true;
    settings.policy.root_squash = true;
    settings.policy.client_rules = ClientRules::new(vec![
        rule("writer", Some(false), None),
        rule("admin", Some(false), Some(false)),
    ])
    .unwrap();
    s.server.apply_settings(settings.clone()).unwrap();

    let connect = |cn: &str| {
        let leaf = clients.client(cn);
        let connector = connector(&files.ca, Some(&leaf));
        async move {
            let mut c = Client::over(tls_connect(s.addr, &connector).await.unwrap());
            exercise(&mut c).await;
            c
        }
    };
    let rofs = |r: Result<Vec<ResOp>, ClientError>| {
        matches!(
            r,
            Err(ClientError::Op {
                op: OP_CREATE,
                status: Nfs4Error::Rofs
            })
        )
    };
    let owner = |name: &str| std::fs::metadata(s.dir.path().join(name)).unwrap().uid();

    let mut reader = connect("reader").await;
    assert!(rofs(mkdir(&mut reader, "r").await));
    let mut writer = connect("writer").await;
    mkdir(&mut writer, "w").await.unwrap();
    assert_eq!(owner("w"), 65534, "root stays squashed for writer");
    let mut admin = connect("admin").await;
    mkdir(&mut admin, "a").await.unwrap();
    assert_eq!(owner("a"), 0, "admin keeps root");

    settings.policy.client_rules =
        ClientRules::new(vec![rule("admin", Some(false), Some(false))]).unwrap();
    s.server.apply_settings(settings).unwrap();
    assert!(rofs(mkdir(&mut writer, "w2").await));
    mkdir(&mut admin, "a2").await.unwrap();
    s.stop().await;
}

fn replace(path: &Path, pem: &str) {
    // Write aside and rename, as a Secret volume update does: never a
    // half-written file in place.
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, pem).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn certificates_reload_when_their_files_change() {
    let files = Files::new(None, false);
    let s = files.serve().await;
    let rotated = Ca::new("rotated CA");
    let leaf = rotated.server(&["nfs.example.test"]);
    // mtime granularity: make sure the new files look newer.
    tokio::time::sleep(Duration::from_millis(20)).await;
    replace(&files.settings.cert, &leaf.cert);
    replace(&files.settings.key, &leaf.key);
    let tls = tls_connect(s.addr, &connector(&rotated, None))
        .await
        .expect("the rotated certificate is served without a restart");
    exercise(&mut Client::over(tls)).await;
    // A broken update keeps the last good certificate.
    tokio::time::sleep(Duration::from_millis(20)).await;
    replace(&files.settings.cert, "not a certificate");
    let tls = tls_connect(s.addr, &connector(&rotated, None))
        .await
        .expect("the last good certificate is kept");
    exercise(&mut Client::over(tls)).await;
    assert!(
        tls_connect(s.addr, &connector(&files.ca, None))
            .await
            .is_err()
    );
    drop(files.dir);
    s.stop().await;
}

/// A TCP stream whose reads take at most 2 KiB per millisecond: with a tiny
/// receive buffer the server's socket stays full while it writes.
struct SlowReader {
    tcp: TcpStream,
    pause: Pin<Box<tokio::time::Sleep>>,
}

impl AsyncRead for SlowReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        ready!(self.pause.as_mut().poll(cx));
        let mut bytes = [0u8; 2048];
        let want = buf.remaining().min(bytes.len());
        let mut small = ReadBuf::new(&mut bytes[..want]);
        ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut small))?;
        buf.put_slice(small.filled());
        let next = tokio::time::Instant::now() + Duration::from_millis(1);
        self.pause.as_mut().reset(next);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SlowReader {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// 1 MiB replies reach a client that reads slowly over TLS, whole. This is
/// what the flush after each reply write protects (a TLS write that finds
/// the socket full may keep its last records buffered); on the machine it
/// was written on the server's send buffer took the whole reply, so the
/// test passed without that flush too: it guards the behaviour, it does
/// not reproduce the race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_replies_reach_a_slow_reader_whole() {
    let files = Files::new(None, false);
    let s = files.serve().await;
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(s.dir.path().join("big.bin"), &data).unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(s.addr).await.unwrap();
    let slow = SlowReader {
        tcp,
        pause: Box::pin(tokio::time::sleep(Duration::ZERO)),
    };
    let name = ServerName::try_from("nfs.example.test").unwrap();
    let tls = connector(&files.ca, None)
        .connect(name, slow)
        .await
        .unwrap();
    let mut c = Client::over(tls);
    exercise(&mut c).await;
    for round in 0..2 {
        let read = c.compound(vec![
            ArgOp::Putrootfh,
            ArgOp::Lookup(Utf8Str::from("big.bin")),
            ArgOp::Read(Read4Args {
                stateid: Stateid4::ANONYMOUS,
                offset: 0,
                count: 1 << 20,
            }),
        ]);
        let r = tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .unwrap_or_else(|_| panic!("round {round}: the 1 MiB reply did not arrive whole"))
            .unwrap();
        let ResOp::Read(Ok(rd)) = &r[2] else {
            panic!("{r:?}")
        };
        assert_eq!(rd.data.as_bytes(), &data[..], "round {round}");
    }
    s.stop().await;
}
