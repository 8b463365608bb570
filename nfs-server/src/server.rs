//! The server object every connection shares, and `run`, which wires the
//! listeners, the lease reaper and graceful shutdown together.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openefs_nfs_wire::nfs4::Nfs4Error;
use openefs_vfs::{FileHandle, Identity, OpenAccess, OpenFile, Usage, UsageTarget, Vfs, VfsResult};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::admin::{AdminError, load_applied, read_token, serve_admin};
use crate::config::Config;
use crate::encryption::DataKeys;
use crate::metrics::{Metrics, serve_metrics};
use crate::mount::Mounts;
use crate::settings::{Settings, SettingsCell};
use crate::stable::{StableError, StableStore};
use crate::state::{ClientId, Clock, State, SystemClock};
use crate::throughput::{self, INITIAL_CREDITS, IoKind, MIN_METERED, Throttle};
use crate::tls::{Tls, TlsError};
use crate::usage::{self, UsageRecord};

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
    /// Meters I/O and delays replies to keep to the throughput mode.
    throttle: Throttle,
    /// Encryption at rest: the data key and its wrapping; `None`: off.
    encryption: Option<Arc<DataKeys>>,
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
        let credits = match store.as_ref().map(|s| throughput::load_credits(s.dir())) {
            Some(Ok(Some(credits))) => credits,
            Some(Ok(None)) => {
                info!("no burst credit record: a new file system, starting with 2.1 TiB");
                INITIAL_CREDITS
            }
            Some(Err(e)) => {
                warn!(error = %e, "burst credits unreadable: starting with a new file system's 2.1 TiB");
                INITIAL_CREDITS
            }
            None => INITIAL_CREDITS,
        };
        vfs.set_access_points(config.settings.access_points.as_slice());
        // Before any request: figures counted from zero would be replaced.
        if let Some(store) = &store {
            usage::restore(store.dir(), &*vfs);
        }
        Self {
            // Unless restored, the stored bytes are known once the first
            // reconciliation walk of the export ends.
            throttle: Throttle::new(
                credits,
                vfs.usage().stored_bytes,
                config.settings.throughput,
            ),
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
            encryption: None,
        }
    }

    /// Reports and rotates the wrapping of `keys` (the data key the vfs
    /// encrypts with) through the admin API.
    pub fn with_encryption(mut self, keys: Arc<DataKeys>) -> Self {
        self.encryption = Some(keys);
        self
    }

    pub fn encryption(&self) -> Option<&Arc<DataKeys>> {
        self.encryption.as_ref()
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
    /// Replaces the runtime settings; refused (the old ones stay) when this
    /// server cannot apply them ([`Settings::check`]).
    pub fn apply_settings(&self, settings: Settings) -> Result<(), String> {
        settings.check(self.tls.as_deref().map(Tls::settings))?;
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
        Ok(())
    }

    /// Meters a successful READ (`DataRead`) or WRITE (`DataWrite`) of
    /// `bytes` and waits until the throughput mode lets its reply go.
    pub async fn data_io(&self, kind: IoKind, bytes: usize) {
        match kind {
            IoKind::DataRead => self.metrics.read(bytes),
            IoKind::DataWrite => self.metrics.written(bytes),
            IoKind::MetadataRead | IoKind::MetadataWrite => {}
        }
        let mode = self.settings().throughput;
        let metered = self.throttle.data(kind, bytes as u64, mode).await;
        self.metrics.io(kind, bytes as u64, metered);
    }

    /// Meters operation `op` if it is metadata I/O
    /// ([`throughput::metadata_kind`]); it takes its share of the rate but
    /// is not delayed.
    pub fn metadata_io(&self, op: &str) {
        if let Some(kind) = throughput::metadata_kind(op) {
            let (metered, _) = self
                .throttle
                .charge(kind, MIN_METERED, self.settings().throughput);
            self.metrics.io(kind, MIN_METERED, metered);
        }
    }

    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// Records the burst credit balance in the state directory (if any).
    /// A failure costs only the credits earned since the last record after
    /// a restart, so it is logged, not returned.
    async fn save_credits(&self, credits: f64) {
        let Some(dir) = self.store.as_ref().map(|s| s.dir().to_owned()) else {
            return;
        };
        match tokio::task::spawn_blocking(move || throughput::save_credits(&dir, credits)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "cannot record the burst credits"),
            Err(e) => warn!(error = %e, "burst credit record task failed"),
        }
    }

    /// Records the stored-bytes ledger in the state directory (if any);
    /// `clean` at shutdown, when no change is in flight. A failure only
    /// costs a reconciliation walk after the next start.
    async fn save_usage(&self, clean: bool) {
        let Some(dir) = self.store.as_ref().map(|s| s.dir().to_owned()) else {
            return;
        };
        let record = UsageRecord::of(&self.vfs.usage(), clean);
        match tokio::task::spawn_blocking(move || usage::save(&dir, &record)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "cannot record the stored bytes"),
            Err(e) => warn!(error = %e, "usage record task failed"),
        }
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

    /// Runs a blocking vfs call (which switches the thread's fsuid) as `id`,
    /// where the performance mode puts blocking work
    /// ([`crate::performance::PerformanceMode::run_blocking`]). `None` when
    /// the call panicked, which protocols answer with their SERVERFAULT.
    pub async fn vfs_call<T, F>(&self, id: &Identity, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Vfs, &Identity) -> T + Send + 'static,
    {
        let vfs = self.vfs.clone();
        let id = id.clone();
        self.config
            .performance_mode
            .run_blocking(move || f(&*vfs, &id))
            .await
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
    #[error(transparent)]
    Admin(#[from] AdminError),
}

/// Binds the configured listeners and serves until `shutdown` fires.
pub async fn run(
    config: Config,
    vfs: Arc<dyn Vfs>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    run_with_keys(config, vfs, None, shutdown).await
}

/// As [`run`], for a file system encrypted at rest: `encryption` is the
/// data key `vfs` encrypts with, reported and re-wrapped by the admin API.
pub async fn run_with_keys(
    config: Config,
    vfs: Arc<dyn Vfs>,
    encryption: Option<Arc<DataKeys>>,
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
    let admin_listener = match &config.admin {
        Some(admin) => {
            // Checked before serving anything: a missing token is a
            // deployment error to see at once, not on the first call.
            read_token(&admin.token_file)?;
            Some(
                TcpListener::bind(admin.listen)
                    .await
                    .map_err(|source| RunError::Bind {
                        addr: admin.listen,
                        source,
                    })?,
            )
        }
        None => None,
    };
    let mut config = config;
    if let (Some(_), Some(dir)) = (&config.admin, &config.state_dir)
        && let Some(applied) = load_applied(dir)?
    {
        match applied.check(config.tls.as_ref()) {
            Ok(()) => {
                info!("starting with the settings last applied through the admin API");
                config.settings = applied;
            }
            Err(e) => warn!(error = %e, "settings last applied through the admin API ignored"),
        }
    }
    let config_require_tls = config.settings.policy.require_tls;
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
    let server = match encryption {
        Some(keys) => server.with_encryption(keys),
        None => server,
    };
    let server = match tls {
        Some(tls) => {
            info!(
                require = config_require_tls,
                mtls = tls.settings().client_ca.is_some(),
                "TLS and STARTTLS served on the NFS port"
            );
            server.with_tls(tls)
        }
        None => server,
    };
    let server = Arc::new(server);
    info!(
        listen = %server.config.listen,
        export = %server.config.export.display(),
        performance_mode = server.config.performance_mode.api_name(),
        "serving NFSv4.1, NFSv4.0 and NFSv3"
    );
    let metrics_task = metrics_listener.map(|l| {
        if let Ok(addr) = l.local_addr() {
            info!(listen = %addr, "serving /metrics");
        }
        tokio::spawn(serve_metrics(l, server.metrics.clone(), shutdown.clone()))
    });
    let reload_task = tokio::spawn(reload_on_sighup(server.clone(), shutdown.clone()));
    let admin_task = admin_listener
        .zip(server.config.admin.clone())
        .map(|(l, admin)| {
            info!(listen = %admin.listen, "serving the admin API");
            let served = serve_admin(l, server.clone(), admin.token_file, shutdown.clone());
            tokio::spawn(async move {
                let result = served.await;
                if let Err(e) = &result {
                    error!(error = %e, "the admin API stopped; NFS goes on");
                }
                result
            })
        });
    serve_on(listener, server, shutdown).await;
    reload_task.abort();
    if let Some(task) = admin_task {
        match task.await {
            Ok(r) => r?,
            Err(e) => debug!(error = %e, "admin API task ended abnormally"),
        }
    }
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
                Ok(settings) => {
                    if let Err(e) = server.apply_settings(settings) {
                        error!(error = %e, "SIGHUP: settings not reloaded, the old ones stay");
                    }
                }
                Err(e) => error!(error = %e, "SIGHUP: settings not reloaded, the old ones stay"),
            },
        }
    }
}

/// Serves NFS on an already bound listener (tests bind port 0), with the
/// lease reaper, until `shutdown` fires and in-flight calls finished.
pub async fn serve_on(listener: TcpListener, server: Arc<Server>, shutdown: CancellationToken) {
    let reaper = tokio::spawn(reap_leases(server.clone(), shutdown.clone()));
    let upkeep = tokio::spawn(throughput_upkeep(server.clone(), shutdown.clone()));
    crate::transport::serve(listener, server.clone(), shutdown).await;
    if let Err(e) = reaper.await {
        debug!(error = %e, "lease reaper ended abnormally");
    }
    if let Err(e) = upkeep.await {
        debug!(error = %e, "throughput upkeep ended abnormally");
    }
    // Every call has ended: the figures are exact.
    server.save_usage(true).await;
}

/// How often the burst credit balance and the stored bytes are recorded
/// while running.
const SAVE_CREDITS_EVERY: u64 = 60;
/// Seconds between reconciliation walks of everything (catching changes
/// made outside the server and data written into an access point's
/// directory through the export or another access point), and the least
/// multiple of the last round's duration, so that walking takes at most a
/// tenth of one thread.
const RECONCILE_EVERY: u64 = 24 * 3600;
const RECONCILE_IDLE_FACTOR: u64 = 10;
/// Seconds before a failed walk of a target is tried again.
const RECONCILE_RETRY: u64 = 300;

/// What needs measuring first: figures the ledger does not know (no clean
/// record after a start, access points new since), skipping those whose
/// walk failed until their retry time.
fn unknown_target(
    usage: &Usage,
    retry: &HashMap<UsageTarget, u64>,
    now: u64,
) -> Option<UsageTarget> {
    let due = |t: &UsageTarget| retry.get(t).is_none_or(|&at| at <= now);
    std::iter::once((!usage.known).then_some(UsageTarget::FileSystem))
        .chain(
            usage
                .access_points
                .iter()
                .map(|ap| (!ap.known).then(|| UsageTarget::AccessPoint(ap.id.clone()))),
        )
        .flatten()
        .find(due)
}

/// Every figure of `usage`, for a reconciliation round.
fn all_targets(usage: &Usage) -> VecDeque<UsageTarget> {
    std::iter::once(UsageTarget::FileSystem)
        .chain(
            usage
                .access_points
                .iter()
                .map(|ap| UsageTarget::AccessPoint(ap.id.clone())),
        )
        .collect()
}

/// Keeps the throughput and storage metrics current (every second), feeds
/// the stored bytes the bursting rates depend on from the vfs's ledger,
/// measures figures the ledger does not know and, every day or so, all of
/// them (reconciliation walks, one at a time), and records the burst
/// credits and the ledger (every minute; at shutdown, see `serve_on`).
async fn throughput_upkeep(server: Arc<Server>, shutdown: CancellationToken) {
    let stop = Arc::new(AtomicBool::new(false));
    let walk = |target: UsageTarget| {
        let vfs = server.vfs.clone();
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let began = Instant::now();
            let result = vfs.reconcile(&target, &stop);
            (target, result, began.elapsed())
        })
    };
    let mut walking = None;
    let mut round = VecDeque::new();
    let mut round_began = Instant::now();
    let mut next_round = RECONCILE_EVERY;
    let mut retry = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = server.throttle.snapshot(server.settings().throughput);
    let mut last_at = tokio::time::Instant::now();
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        ticks += 1;
        if let Some(done) = walking.take_if(|w: &mut tokio::task::JoinHandle<_>| w.is_finished()) {
            match done.await {
                Ok((target, Ok((before, measured)), took)) => {
                    retry.remove(&target);
                    info!(
                        ?target,
                        before,
                        measured,
                        drift = measured as i128 - before as i128,
                        took = ?took,
                        "stored bytes measured"
                    );
                }
                Ok((target, Err(e), _)) => {
                    warn!(?target, error = %e, "cannot measure the stored bytes");
                    retry.insert(target, ticks + RECONCILE_RETRY);
                }
                Err(e) => warn!(error = %e, "stored bytes walk failed"),
            }
        }
        let usage = server.vfs.usage();
        if ticks >= next_round && round.is_empty() {
            round = all_targets(&usage);
            round_began = Instant::now();
        }
        if walking.is_none() {
            let target = unknown_target(&usage, &retry, ticks).or_else(|| {
                let target = round.pop_front();
                if target.is_some() && round.is_empty() {
                    next_round = ticks
                        + RECONCILE_EVERY
                            .max(round_began.elapsed().as_secs() * RECONCILE_IDLE_FACTOR);
                }
                target
            });
            walking = target.map(&walk);
        }
        server.throttle.set_stored(usage.stored_bytes);
        server
            .metrics
            .set_access_point_storage(&usage.access_points);
        let now = server.throttle.snapshot(server.settings().throughput);
        let elapsed = last_at.elapsed().as_secs_f64();
        let percent = match now.permitted {
            Some(rate) if elapsed > 0.0 => {
                (now.metered_total - last.metered_total) / (rate * elapsed) * 100.0
            }
            _ => 0.0,
        };
        server
            .metrics
            .set_throughput(now.credits, now.permitted, percent, now.stored);
        (last, last_at) = (now, tokio::time::Instant::now());
        if ticks.is_multiple_of(SAVE_CREDITS_EVERY) {
            server.save_credits(now.credits).await;
            server.save_usage(false).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(walking) = walking {
        // An interrupted walk leaves its figure unknown; waiting for it
        // keeps it from racing the clean record.
        let _ = walking.await;
    }
    server
        .save_credits(
            server
                .throttle
                .snapshot(server.settings().throughput)
                .credits,
        )
        .await;
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
