//! `openefs-csi tls-proxy` against a TLS echo server on loopback: tunnels
//! from the state directory, verified TLS, a refused untrusted server,
//! metrics, a restart on the same ports, tunnel removal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openefs_csi::tls_proxy::metrics::Metrics;
use openefs_csi::tls_proxy::spec::{ClientCertificate, TunnelSpec, write as write_tunnel};
use openefs_csi::tls_proxy::tunnel::trust_roots;
use openefs_csi::tls_proxy::{ProxyConfig, run};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

#[path = "../../nfs-server/tests/common/pki.rs"]
mod pki;
use pki::{Ca, Leaf, write};

/// A TLS server on loopback echoing every byte back, requiring a client
/// certificate signed by `clients` when given; serves until dropped.
async fn echo_server(
    leaf: &Leaf,
    clients: Option<&Ca>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap();
    let builder = match clients {
        Some(ca) => {
            let roots = trust_roots(ca.pem.as_bytes()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let (mut rd, mut wr) = tokio::io::split(tls);
                    let _ = tokio::io::copy(&mut rd, &mut wr).await;
                }
            });
        }
    });
    (addr, task)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connects to the tunnel's port, waiting for the proxy to listen.
async fn connect(port: u16) -> TcpStream {
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}

/// Sends `n` bytes of a pattern through the tunnel and checks the echo.
async fn round_trip(port: u16, n: usize) {
    let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
    let (mut rd, mut wr) = connect(port).await.into_split();
    let sent = data.clone();
    // Write and read at once: the echo holds at most the proxy's buffers.
    let writer = tokio::spawn(async move { wr.write_all(&sent).await.map(|_| wr) });
    let mut back = vec![0; n];
    tokio::time::timeout(Duration::from_secs(30), rd.read_exact(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    writer.await.unwrap().unwrap();
    assert!(back == data, "echo differs from what was sent");
}

fn metric(metrics: &Metrics, series: &str) -> Option<f64> {
    metrics
        .encode()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn wait_metric(metrics: &Metrics, series: &str, want: f64) {
    for _ in 0..100 {
        if metric(metrics, series) == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{series} is {:?}, want {want}:\n{}",
        metric(metrics, series),
        metrics.encode().unwrap()
    );
}

struct Proxy {
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start_proxy(state: &std::path::Path) -> Proxy {
    let metrics = Arc::new(Metrics::default());
    let stop = CancellationToken::new();
    let config = ProxyConfig {
        state_dir: state.to_owned(),
        poll: Duration::from_millis(100),
    };
    let task = tokio::spawn(run(config, metrics.clone(), stop.clone()));
    Proxy {
        metrics,
        stop,
        task,
    }
}

impl Proxy {
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("proxy stops in time")
            .unwrap();
    }
}

/// Writes to the tunnel and expects the connection closed with nothing
/// echoed.
async fn assert_nothing_comes_back(port: u16) {
    let mut s = connect(port).await;
    s.write_all(b"hello").await.unwrap();
    let mut buf = [0; 5];
    let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "bytes came back through a refused tunnel");
}

#[tokio::test]
async fn presents_the_client_certificate_a_server_requires() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tunnels");
    std::fs::create_dir(&state).unwrap();
    let ca = Ca::new("fs CA");
    let clients = Ca::new("node CA");
    let node = clients.client("node-a");
    let (server, _echo) = echo_server(&ca.server(&["fs-1.openefs.svc"]), Some(&clients)).await;
    let with_cert = TunnelSpec {
        local_port: free_port(),
        server: server.to_string(),
        server_name: "fs-1.openefs.svc".into(),
        ca: write(dir.path(), "ca.crt", &ca.pem),
        client_certificate: Some(ClientCertificate {
            cert: write(dir.path(), "node.crt", &node.cert),
            key: write(dir.path(), "node.key", &node.key),
        }),
    };
    let without = TunnelSpec {
        local_port: free_port(),
        client_certificate: None,
        ..with_cert.clone()
    };
    let unreadable = TunnelSpec {
        local_port: free_port(),
        client_certificate: Some(ClientCertificate {
            cert: dir.path().join("missing.crt"),
            key: dir.path().join("node.key"),
        }),
        ..with_cert.clone()
    };
    write_tunnel(&state, "with-cert", &with_cert).unwrap();
    write_tunnel(&state, "without", &without).unwrap();
    write_tunnel(&state, "unreadable", &unreadable).unwrap();

    let proxy = start_proxy(&state);
    round_trip(with_cert.local_port, 1 << 20).await;
    assert_nothing_comes_back(without.local_port).await;
    wait_metric(
        &proxy.metrics,
        "openefs_tls_proxy_handshake_failures_total{tunnel=\"without\"}",
        1.0,
    )
    .await;
    assert_nothing_comes_back(unreadable.local_port).await;
    wait_metric(
        &proxy.metrics,
        "openefs_tls_proxy_handshake_failures_total{tunnel=\"unreadable\"}",
        1.0,
    )
    .await;
    proxy.stop().await;
}

#[tokio::test]
async fn forwards_verifies_restarts_and_follows_the_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tunnels");
    std::fs::create_dir(&state).unwrap();
    let ca = Ca::new("fs CA");
    let ca_path = write(dir.path(), "ca.crt", &ca.pem);
    let (server, _echo) = echo_server(&ca.server(&["fs-1.openefs.svc"]), None).await;
    let good = TunnelSpec {
        local_port: free_port(),
        server: server.to_string(),
        server_name: "fs-1.openefs.svc".into(),
        ca: ca_path.clone(),
        client_certificate: None,
    };
    // The same server, but the tunnel expects another name: refused.
    let wrong_name = TunnelSpec {
        local_port: free_port(),
        server_name: "fs-2.openefs.svc".into(),
        ..good.clone()
    };
    write_tunnel(&state, "good", &good).unwrap();
    write_tunnel(&state, "wrong-name", &wrong_name).unwrap();
    std::fs::write(state.join("broken.json"), "{").unwrap();

    let proxy = start_proxy(&state);
    round_trip(good.local_port, 4 << 20).await;
    let sent = (4u64 << 20) as f64;
    wait_metric(
        &proxy.metrics,
        "openefs_tls_proxy_bytes_total{tunnel=\"good\",direction=\"to_server\"}",
        sent,
    )
    .await;
    wait_metric(
        &proxy.metrics,
        "openefs_tls_proxy_bytes_total{tunnel=\"good\",direction=\"to_client\"}",
        sent,
    )
    .await;
    round_trip(good.local_port, 10).await;
    wait_metric(
        &proxy.metrics,
        "openefs_tls_proxy_reconnects_total{tunnel=\"good\"}",
        1.0,
    )
    .await;
    // The untrusted name: the local connection is closed, nothing echoed.
    assert_nothing_comes_back(wrong_name.local_port).await;
    wait_metric(
        &proxy.metrics,
        "openefs_tls_proxy_handshake_failures_total{tunnel=\"wrong-name\"}",
        1.0,
    )
    .await;
    wait_metric(&proxy.metrics, "openefs_tls_proxy_tunnels", 2.0).await;

    // A restarted proxy listens on the same port again, from the files.
    proxy.stop().await;
    assert!(
        TcpStream::connect(("127.0.0.1", good.local_port))
            .await
            .is_err()
    );
    let proxy = start_proxy(&state);
    round_trip(good.local_port, 1 << 20).await;

    // A removed tunnel stops listening.
    std::fs::remove_file(state.join("good.json")).unwrap();
    wait_metric(&proxy.metrics, "openefs_tls_proxy_tunnels", 1.0).await;
    assert!(
        TcpStream::connect(("127.0.0.1", good.local_port))
            .await
            .is_err()
    );
    proxy.stop().await;
}
