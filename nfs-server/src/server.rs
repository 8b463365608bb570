//! The server object every connection shares, and `run`, which wires the
//! listeners, the lease reaper and graceful shutdown together.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openefs_nfs_wire::nfs4::Nfs4Error;
use openefs_vfs::{FileHandle, Identity, OpenAccess, OpenFile, Vfs, VfsResult};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::metrics::{Metrics, serve_metrics};
use crate::mount::Mounts;
use crate::settings::{Settings, SettingsCell};
use crate::stable::{StableError, StableStore};
use crate::state::{ClientId, Clock, State, SystemClock};
use crate::tls::{Tls, TlsError};

pub struct Server {
    config: Config,
    vfs: Arc<dyn Vfs>,
    state: State,
    metrics: Arc<Metrics>,
    /// WRITE/COMMIT verifier: random per server instance, so a client learns
    /// from a change that unstable writes may be lost and must be resent.
    write_verifier: [u8; 8],
    /// EXCHANGE_ID `server_owner` major id and `server_scope`: from the
    /// stable records, so clients know the restarted server for the same
    /// one and reclaim; random per instance without them.
    server_id: Vec<u8>,
    store: Option<Arc<StableStore>>,
    special_opens: SpecialOpens,
    /// Who mounted the export through MOUNT v3 (for DUMP).
    mounts: Mounts,
    /// TLS on the NFS port (`--tls-cert`); `None`: plaintext only.
    tls: Option<Arc<Tls>>,
    settings: SettingsCell,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server whose state lives in memory only: a restart loses it, and
    /// clients see a new server (no grace period, no reclaims).
    pub fn new(config: Config, vfs: Arc<dyn Vfs>, clock: Arc<dyn Clock>) -> Self {
        Self::build(config, vfs, clock, None)
    }

    /// A server with stable client records: the previous instance's clients
    /// get a grace period to reclaim their opens and locks.
    pub fn with_store(
        config: Config,
        vfs: Arc<dyn Vfs>,
        clock: Arc<dyn Clock>,
        store: StableStore,
    ) -> Self {
        Self::build(config, vfs, clock, Some(store))
    }

    fn build(
        config: Config,
        vfs: Arc<dyn Vfs>,
        clock: Arc<dyn Clock>,
        store: Option<StableStore>,
    ) -> Self {
        // Both change on every start: a client learns from the verifier that
        // unstable writes may be lost, and from the boot epoch in client ids
        // and stateids that they are from an earlier instance.
        let write_verifier: [u8; 8] = rand::random();
        let boot: u32 = rand::random();
        let state = State::new(clock, config.lease, boot);
        let metrics = Arc::new(Metrics::default());
        let server_id = match &store {
            Some(store) => {
                let previous = store.previous_clients();
                state.start_grace(previous, config.grace);
                if state.in_grace() {
                    info!(
                        clients = previous.len(),
                        grace = ?config.grace,
                        "grace period: waiting for the previous clients to reclaim"
                    );
                    metrics.set_grace(true);
                }
                store.server_id()
            }
            None => rand::random::<[u8; 16]>().to_vec(),
        };
        vfs.set_access_points(config.settings.access_points.as_slice());
        Self {
            settings: SettingsCell::new(config.settings.clone()),
            config,
            vfs,
            state,
            metrics,
            write_verifier,
            server_id,
            store: store.map(Arc::new),
            special_opens: SpecialOpens::default(),
            mounts: Mounts::default(),
            tls: None,
        }
    }

    /// Serves TLS (and RFC 9289 STARTTLS) on the NFS port too.
    pub fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = Some(Arc::new(tls));
        self
    }

    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_deref()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The runtime settings in force now; an RPC takes them once and uses
    /// them throughout.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.current()
    }

    /// Installs new runtime settings for every RPC that starts from now on.
    pub fn apply_settings(&self, settings: Settings) {
        // Not the whole value: thousands of access points make no log line.
        info!(
            policy = ?settings.policy,
            access_points = settings.access_points.as_slice().len(),
            "applying settings"
        );
        // The vfs enforces access points (scopes, identities); it takes them
        // first, so that no RPC sees them listed before they work.
        self.vfs
            .set_access_points(settings.access_points.as_slice());
        self.settings.replace(settings);
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

    pub fn server_id(&self) -> &[u8] {
        &self.server_id
    }

    /// Puts `client` into the stable records unless it is there: before a
    /// client gets its first state, so that it can reclaim after a crash.
    pub async fn record_client(&self, client: ClientId) -> Result<(), Nfs4Error> {
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        let Some(owner) = self.state.owner_to_record(client)? else {
            return Ok(());
        };
        match tokio::task::spawn_blocking(move || store.add(&owner)).await {
            Ok(Ok(())) => {
                self.state.mark_recorded(client);
                Ok(())
            }
            Ok(Err(e)) => {
                error!(error = %e, "cannot record a client: refusing it state");
                Err(Nfs4Error::Serverfault)
            }
            Err(e) => {
                error!(error = %e, "client record task failed");
                Err(Nfs4Error::Serverfault)
            }
        }
    }

    /// Drops clients from the stable records. A failure only costs a later
    /// restart a longer grace period, so it is logged, not returned.
    pub async fn forget_clients(&self, owners: Vec<Vec<u8>>) {
        let Some(store) = self.store.clone() else {
            return;
        };
        if owners.is_empty() {
            return;
        }
        match tokio::task::spawn_blocking(move || store.remove(&owners)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "cannot forget client records"),
            Err(e) => warn!(error = %e, "client record task failed"),
        }
    }

    /// Ends the grace period once it is over, and forgets the clients that
    /// did not come back in it.
    pub async fn end_grace_if_over(&self) {
        if let Some(ended) = self.state.end_grace_if_over() {
            info!(
                early = ended.early,
                not_reclaimed = ended.forget.len(),
                "grace period over"
            );
            self.metrics.set_grace(false);
            self.forget_clients(ended.forget).await;
        }
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
    #[error(transparent)]
    StateDir(#[from] StableError),
    #[error("loading the TLS certificate: {0}")]
    Tls(#[from] TlsError),
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
    let clock = Arc::new(SystemClock::default());
    let tls = config.tls.clone().map(Tls::load).transpose()?;
    let server = match &config.state_dir {
        Some(dir) => {
            let store = StableStore::open(dir)?;
            Server::with_store(config, vfs, clock, store)
        }
        None => {
            warn!(
                "no --state-dir: client state is in memory only, a restart loses opens and locks"
            );
            Server::new(config, vfs, clock)
        }
    };
    let server = match tls {
        Some(tls) => {
            info!(
                require = tls.settings().require,
                mtls = tls.settings().client_ca.is_some(),
                "TLS and STARTTLS served on the NFS port"
            );
            server.with_tls(tls)
        }
        None => server,
    };
    let server = Arc::new(server);
    info!(listen = %server.config.listen, export = %server.config.export.display(), "serving NFSv4.1, NFSv4.0 and NFSv3");
    let metrics_task = metrics_listener.map(|l| {
        if let Ok(addr) = l.local_addr() {
            info!(listen = %addr, "serving /metrics");
        }
        tokio::spawn(serve_metrics(l, server.metrics.clone(), shutdown.clone()))
    });
    let reload_task = tokio::spawn(reload_on_sighup(server.clone(), shutdown.clone()));
    serve_on(listener, server, shutdown).await;
    reload_task.abort();
    if let Some(task) = metrics_task {
        match task.await {
            Ok(r) => r.map_err(RunError::Metrics)?,
            Err(e) => debug!(error = %e, "metrics task ended abnormally"),
        }
    }
    Ok(())
}

/// Re-reads the runtime settings from the config file on every SIGHUP. A
/// file that does not parse or validate leaves the settings as they were.
async fn reload_on_sighup(server: Arc<Server>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot install the SIGHUP handler: settings reload by signal is off");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(()) = hangup.recv() => match server.config.reload_settings() {
                Ok(settings) => server.apply_settings(settings),
                Err(e) => error!(error = %e, "SIGHUP: settings not reloaded, the old ones stay"),
            },
        }
    }
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

/// Expires leases and notices the end of the grace period. A second's
/// tick (the shortest lease is 10 s) keeps the `grace_active` gauge and the
/// log close to the truth; the state itself goes by its clock, not by this
/// task.
async fn reap_leases(server: Arc<Server>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let reaped = server.state.reap_expired();
                if reaped.clients > 0 {
                    info!(clients = reaped.clients, "expired clients whose lease ran out");
                }
                server.forget_clients(reaped.forget).await;
                server.end_grace_if_over().await;
            }
        }
    }
}
