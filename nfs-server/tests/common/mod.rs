//! The server fixture the protocol test binaries share: the real `LocalVfs`
//! on a temporary directory, served on a loopback port (needs root, as the
//! server does).
// Each test binary compiles this module on its own and uses a subset of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openefs_nfs_wire::rpc::{AcceptedBody, ReplyStat};
use openefs_nfs_wire::xdr::{self, XdrDecode, XdrEncode};
use openefs_nfsd::client::Client;
use openefs_nfsd::performance::PerformanceMode;
use openefs_nfsd::stable::StableStore;
use openefs_nfsd::state::{Clock, SystemClock};
use openefs_nfsd::tls::Tls;
use openefs_nfsd::{Config, Server, serve_on};
use openefs_vfs::LocalVfs;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub struct TestServer {
    pub addr: SocketAddr,
    pub server: Arc<Server>,
    pub dir: Arc<tempfile::TempDir>,
    pub shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with_clock(Arc::new(SystemClock::default())).await
    }

    pub async fn start_with_clock(clock: Arc<dyn Clock>) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        Self::serve(dir, clock, None, None, PerformanceMode::default()).await
    }

    /// A server in performance mode `mode` (which only differs from the
    /// default on a multi-thread runtime).
    pub async fn start_with_mode(mode: PerformanceMode) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        Self::serve(dir, Arc::new(SystemClock::default()), None, None, mode).await
    }

    /// A server that also serves TLS and STARTTLS on its port.
    pub async fn start_with_tls(tls: Tls) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        Self::serve(
            dir,
            Arc::new(SystemClock::default()),
            None,
            Some(tls),
            PerformanceMode::default(),
        )
        .await
    }

    /// A server over `dir` with stable client records in `state`: started
    /// again over the same two, it is the same server after a restart.
    pub async fn start_with_store(
        dir: Arc<tempfile::TempDir>,
        state: &std::path::Path,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::serve(
            dir,
            clock,
            Some(StableStore::open(state).expect("state dir")),
            None,
            PerformanceMode::default(),
        )
        .await
    }

    async fn serve(
        dir: Arc<tempfile::TempDir>,
        clock: Arc<dyn Clock>,
        store: Option<StableStore>,
        tls: Option<Tls>,
        mode: PerformanceMode,
    ) -> Self {
        let vfs = Arc::new(LocalVfs::new(dir.path()).expect("LocalVfs (run as root)"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = Config {
            performance_mode: mode,
            ..Config::new(dir.path().to_owned(), addr)
        };
        let server = match store {
            Some(store) => Server::with_store(config, vfs, clock, store),
            None => Server::new(config, vfs, clock),
        };
        let server = Arc::new(match tls {
            Some(tls) => server.with_tls(tls),
            None => server,
        });
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve_on(listener, server.clone(), shutdown.clone()));
        Self {
            addr,
            server,
            dir,
            shutdown,
            task,
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await.expect("connect")
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("graceful shutdown in time")
            .expect("server task");
    }
}

pub fn accepted(stat: &ReplyStat) -> &AcceptedBody {
    match stat {
        ReplyStat::Accepted(a) => &a.body,
        ReplyStat::Denied(d) => panic!("call denied: {d:?}"),
    }
}

/// One call of `prog` version `vers`, which must be accepted; its results.
pub async fn rpc<A: XdrEncode, R: XdrDecode>(
    c: &mut Client,
    prog: u32,
    vers: u32,
    proc_: u32,
    args: &A,
) -> R {
    let (h, body) = c
        .call(prog, vers, proc_, &xdr::to_bytes(args))
        .await
        .expect("call");
    assert_eq!(accepted(&h.stat), &AcceptedBody::Success, "proc {proc_}");
    xdr::from_bytes(body).expect("results decode")
}
