//! The server object every connection shares, and `run`, which wires the
//! listeners, the lease reaper and graceful shutdown together.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openefs_vfs::{FileHandle, Identity, OpenAccess, OpenFile, Vfs, VfsResult};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::config::Config;
use crate::metrics::{Metrics, serve_metrics};
use crate::mount::Mounts;
use crate::state::{Clock, State, SystemClock};

pub struct Server {
    config: Config,
    vfs: Arc<dyn Vfs>,
    state: State,
    metrics: Arc<Metrics>,
    /// WRITE/COMMIT verifier: random per server instance, so a client learns
    /// from a change that unstable writes may be lost and must be resent.
    write_verifier: [u8; 8],
    /// EXCHANGE_ID server scope/owner: random per instance since no state
    /// survives a restart yet.
    instance: [u8; 8],
    special_opens: SpecialOpens,
    /// Who mounted the export through MOUNT v3 (for DUMP).
    mounts: Mounts,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Server {
    pub fn new(config: Config, vfs: Arc<dyn Vfs>, clock: Arc<dyn Clock>) -> Self {
        let write_verifier: [u8; 8] = rand::random();
        let instance: [u8; 8] = rand::random();
        let boot = u32::from_be_bytes([instance[0], instance[1], instance[2], instance[3]]);
        let state = State::new(clock, config.lease, boot);
        Self {
            config,
            vfs,
            state,
            metrics: Arc::new(Metrics::default()),
            write_verifier,
            instance,
            special_opens: SpecialOpens::default(),
            mounts: Mounts::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn vfs(&self) -> &Arc<dyn Vfs> {
        &self.vfs
    }

    pub fn write_verifier(&self) -> [u8; 8] {
        self.write_verifier
    }

    pub fn instance(&self) -> [u8; 8] {
        self.instance
    }

    pub fn special_opens(&self) -> &SpecialOpens {
        &self.special_opens
    }

    pub fn mounts(&self) -> &Mounts {
        &self.mounts
    }

    /// Runs a blocking vfs call (which switches the thread's fsuid) as `id`
    /// on tokio's blocking pool. `None` when the task died (a panic), which
    /// protocols answer with their SERVERFAULT.
    pub async fn vfs_call<T, F>(&self, id: &Identity, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Vfs, &Identity) -> T + Send + 'static,
    {
        let vfs = self.vfs.clone();
        let id = id.clone();
        match tokio::task::spawn_blocking(move || f(&*vfs, &id)).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(error = %e, "vfs task failed");
                None
            }
        }
    }

    /// A file to do I/O through without open state (NFSv4's special
    /// stateids, every NFSv3 READ/WRITE): a recent open from
    /// [`SpecialOpens`], or a new open as `id`, which checks permission.
    /// `None` as for [`Server::vfs_call`].
    pub async fn stateless_open(
        &self,
        id: &Identity,
        fh: &FileHandle,
        need: OpenAccess,
    ) -> Option<VfsResult<Arc<OpenFile>>> {
        if let Some(f) = self.special_opens.get(id, fh, need) {
            return Some(Ok(f));
        }
        let f = fh.clone();
        let opened = self.vfs_call(id, move |v, id| v.open(id, &f, need)).await?;
        if let Ok(file) = &opened {
            self.special_opens.put(id.clone(), need, file.clone());
        }
        Some(opened)
    }
}

/// Files opened for I/O with the special (anonymous / READ-bypass) stateids,
/// which carry no open state: kept briefly so a run of such calls does not
/// open and close per RPC. Keyed by identity, since the permission check
/// happened when the file was opened as that identity.
#[derive(Debug, Default)]
pub struct SpecialOpens {
    entries: Mutex<VecDeque<SpecialOpen>>,
}

#[derive(Debug)]
struct SpecialOpen {
    identity: Identity,
    handle: FileHandle,
    access: OpenAccess,
    file: Arc<OpenFile>,
    opened: Instant,
}

const SPECIAL_OPENS: usize = 32;
const SPECIAL_OPEN_TTL: Duration = Duration::from_secs(2);

impl SpecialOpens {
    pub fn get(
        &self,
        identity: &Identity,
        fh: &FileHandle,
        access: OpenAccess,
    ) -> Option<Arc<OpenFile>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| e.opened.elapsed() < SPECIAL_OPEN_TTL);
        entries
            .iter()
            .find(|e| e.identity == *identity && e.handle == *fh && e.access == access)
            .map(|e| e.file.clone())
    }

    pub fn put(&self, identity: Identity, access: OpenAccess, file: Arc<OpenFile>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= SPECIAL_OPENS {
            entries.pop_front();
        }
        entries.push_back(SpecialOpen {
            identity,
            handle: file.handle.clone(),
            access,
            file,
            opened: Instant::now(),
        });
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving metrics: {0}")]
    Metrics(std::io::Error),
}

/// Binds the configured listeners and serves until `shutdown` fires.
pub async fn run(
    config: Config,
    vfs: Arc<dyn Vfs>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.listen,
            source,
        })?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| RunError::Bind { addr, source })?,
        ),
        None => None,
    };
    let server = Arc::new(Server::new(config, vfs, Arc::new(SystemClock::default())));
    info!(listen = %server.config.listen, export = %server.config.export.display(), "serving NFSv4.1 and NFSv3");
    let metrics_task = metrics_listener.map(|l| {
        if let Ok(addr) = l.local_addr() {
            info!(listen = %addr, "serving /metrics");
        }
        tokio::spawn(serve_metrics(l, server.metrics.clone(), shutdown.clone()))
    });
    serve_on(listener, server, shutdown).await;
    if let Some(task) = metrics_task {
        match task.await {
            Ok(r) => r.map_err(RunError::Metrics)?,
            Err(e) => debug!(error = %e, "metrics task ended abnormally"),
        }
    }
    Ok(())
}

/// Serves NFS on an already bound listener (tests bind port 0), with the
/// lease reaper, until `shutdown` fires and in-flight calls finished.
pub async fn serve_on(listener: TcpListener, server: Arc<Server>, shutdown: CancellationToken) {
    let reaper = tokio::spawn(reap_leases(server.clone(), shutdown.clone()));
    crate::transport::serve(listener, server, shutdown).await;
    if let Err(e) = reaper.await {
        debug!(error = %e, "lease reaper ended abnormally");
    }
}

async fn reap_leases(server: Arc<Server>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(server.state.lease() / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let n = server.state.reap_expired();
                if n > 0 {
                    info!(clients = n, "expired clients whose lease ran out");
                }
            }
        }
    }
}
