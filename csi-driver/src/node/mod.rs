//! The CSI Node service: one kernel NFS mount per volume and node at the
//! staging path (NodeStageVolume), bind-mounted into each pod's target path
//! (NodePublishVolume, read-only when asked).
//!
//! Every system call that can wait for an NFS server runs on a blocking
//! thread with a deadline: a hung server costs an RPC its answer
//! (DEADLINE_EXCEEDED), never the plugin. A mount that timed out keeps its
//! path claimed until the kernel returns, so a retry cannot stack a second
//! mount on it; an unmount that timed out is replaced by a lazy (and, for
//! the staging mount, forced) one.

pub mod error;
pub mod mounter;
pub mod mountinfo;
pub mod options;
pub mod tunnel;
pub mod volume;

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    path::Path,
    sync::Arc,
    time::Duration,
};

use nix::{errno::Errno, mount::MsFlags};
use tonic::{Request, Response, Status};

use self::{
    mounter::{Mounter, Unmount, Usage},
    mountinfo::{MountEntry, top_at},
    tunnel::TlsConfig,
    volume::{Endpoint, NFS_PORT, VolumeMount},
};
use crate::{
    controller::check_capabilities,
    csi::{
        self, NodeServiceCapability, VolumeCapability,
        node_server::Node,
        node_service_capability::{Rpc, rpc::Type as RpcType},
        volume_capability::{AccessType, access_mode::Mode},
    },
    inflight::{Guard, InFlight},
};
pub use error::NodeError;

/// Settings of the node service.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id, reported by NodeGetInfo.
    pub node_id: String,
    /// Limit for resolving the server and mounting (NFS mount or bind).
    pub mount_timeout: Duration,
    /// Limit for one unmount before the lazy/forced fallback.
    pub unmount_timeout: Duration,
    /// Limit for a statvfs (health checks and NodeGetVolumeStats).
    pub stat_timeout: Duration,
    /// The tls-proxy sidecar that carries TLS volumes; `None`: TLS volumes
    /// are refused.
    pub tls: Option<TlsConfig>,
}

/// The Node service.
#[derive(Clone)]
pub struct NodeService {
    config: Arc<NodeConfig>,
    mounter: Arc<dyn Mounter>,
    /// Mount points with a stage/publish/unpublish/unstage running.
    in_flight: InFlight,
    /// Volume paths with a statvfs running: a statvfs stuck on a hung
    /// server is not joined by another one each time stats are polled.
    stats_in_flight: InFlight,
}

/// What a blocking call did within its deadline.
enum Outcome<T> {
    Done(T),
    TimedOut,
}

/// The state of a mount, as far as a statvfs through it tells.
enum Health {
    Ok(Usage),
    Broken(String),
}

/// Errors of statvfs or stat that mean "a mount is here, but dead"
/// (k8s mount-utils' list of corrupted-mount errors).
fn is_corrupted(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::ESTALE | Errno::ENOTCONN | Errno::EIO | Errno::EHOSTDOWN | Errno::EACCES)
    )
}

/// NFS sources compare without trailing slashes (`h:/` and `h:` alike).
fn same_source(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

fn describe(e: &MountEntry) -> String {
    format!("{} ({})", e.source, e.fs_type)
}

fn require(value: &str, field: &'static str) -> Result<(), NodeError> {
    if value.is_empty() {
        Err(NodeError::MissingField(field))
    } else {
        Ok(())
    }
}

fn capability(cap: Option<&VolumeCapability>) -> Result<&VolumeCapability, NodeError> {
    let cap = cap.ok_or(NodeError::MissingField("volume_capability"))?;
    check_capabilities(std::slice::from_ref(cap)).map_err(NodeError::Capability)?;
    Ok(cap)
}

fn mount_flags(cap: &VolumeCapability) -> &[String] {
    match &cap.access_type {
        Some(AccessType::Mount(m)) => &m.mount_flags,
        _ => &[],
    }
}

fn reader_only(cap: &VolumeCapability) -> bool {
    cap.access_mode.as_ref().is_some_and(|m| {
        matches!(
            Mode::try_from(m.mode),
            Ok(Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly)
        )
    })
}

/// Resolve the server (the kernel takes only addresses) and find the local
/// address it can reach us at, as mount.nfs does: connecting a UDP socket
/// sends nothing but makes the kernel pick the route and source address.
async fn addresses(endpoint: &Endpoint, timeout: Duration) -> Result<(IpAddr, IpAddr), NodeError> {
    let port = endpoint.port.unwrap_or(NFS_PORT);
    let err = |source| NodeError::Resolve {
        host: endpoint.host.clone(),
        source,
    };
    let lookup = tokio::net::lookup_host((endpoint.host.as_str(), port));
    let found: Vec<SocketAddr> = tokio::time::timeout(timeout, lookup)
        .await
        .map_err(|_| {
            err(io::Error::new(
                io::ErrorKind::TimedOut,
                "name lookup timed out",
            ))
        })?
        .map_err(err)?
        .collect();
    let server = found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| err(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
    let unspecified: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let local = UdpSocket::bind(unspecified)
        .and_then(|s| s.connect(server).and_then(|()| s.local_addr()))
        .map_err(err)?;
    Ok((server.ip(), local.ip()))
}

/// The directory a mount goes on, made if missing. A path that answers with
/// a corrupted-mount error is a dead mount the table did not show us (e.g.
/// lazily detached below us): it is detached again and the check repeated.
fn prepare_dir(mounter: &dyn Mounter, path: &Path) -> io::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::from_raw_os_error(Errno::ENOTDIR as i32)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir_all(path),
        Err(e) if is_corrupted(&e) => {
            let _ = mounter.unmount(path, Unmount::Detach);
            std::fs::metadata(path).map(drop)
        }
        Err(e) => Err(e),
    }
}

impl NodeService {
    /// A node service mounting through `mounter`.
    pub fn new(config: NodeConfig, mounter: Arc<dyn Mounter>) -> Self {
        Self {
            config: Arc::new(config),
            mounter,
            in_flight: InFlight::default(),
            stats_in_flight: InFlight::default(),
        }
    }

    fn claim(&self, path: &Path) -> Result<Arc<Guard>, NodeError> {
        self.in_flight
            .try_start(&path.to_string_lossy())
            .map(Arc::new)
            .ok_or_else(|| NodeError::Busy(path.to_owned()))
    }

    /// Run `f` on a blocking thread for at most `timeout`. `hold` stays
    /// claimed until `f` returns, even after the caller gave up on it.
    async fn bounded<T: Send + 'static>(
        &self,
        what: &'static str,
        path: &Path,
        timeout: Duration,
        hold: Option<Arc<Guard>>,
        f: impl FnOnce(&dyn Mounter) -> T + Send + 'static,
    ) -> Result<Outcome<T>, NodeError> {
        let mounter = Arc::clone(&self.mounter);
        let mut task = tokio::task::spawn_blocking(move || {
            let _hold = hold;
            f(mounter.as_ref())
        });
        match tokio::time::timeout(timeout, &mut task).await {
            Ok(Ok(value)) => Ok(Outcome::Done(value)),
            Ok(Err(join)) => Err(NodeError::Internal(format!("{what}: {join}"))),
            Err(_) => {
                let path = path.to_owned();
                tokio::spawn(async move {
                    let _ = task.await;
                    tracing::info!(?path, what, "a timed-out call returned from the kernel");
                });
                Ok(Outcome::TimedOut)
            }
        }
    }

    async fn table(&self, path: &Path) -> Result<Vec<MountEntry>, NodeError> {
        match self
            .bounded(
                "reading mountinfo",
                path,
                self.config.stat_timeout,
                None,
                |m| m.mount_table(),
            )
            .await?
        {
            Outcome::Done(table) => {
                table.map_err(NodeError::io("reading the mount table for", path))
            }
            Outcome::TimedOut => Err(NodeError::Timeout {
                action: "reading the mount table for",
                path: path.to_owned(),
                timeout: self.config.stat_timeout,
            }),
        }
    }

    async fn health(&self, path: &Path, hold: Option<Arc<Guard>>) -> Result<Health, NodeError> {
        let owned = path.to_owned();
        let timeout = self.config.stat_timeout;
        Ok(
            match self
                .bounded("statvfs", path, timeout, hold, move |m| m.usage(&owned))
                .await?
            {
                Outcome::Done(Ok(usage)) => Health::Ok(usage),
                Outcome::Done(Err(e)) => Health::Broken(format!("statvfs: {e}")),
                Outcome::TimedOut => {
                    Health::Broken(format!("statvfs did not answer within {timeout:?}"))
                }
            },
        )
    }

    async fn prepare_dir(&self, path: &Path) -> Result<(), NodeError> {
        let owned = path.to_owned();
        match self
            .bounded(
                "preparing",
                path,
                self.config.stat_timeout,
                None,
                move |m| prepare_dir(m, &owned),
            )
            .await?
        {
            Outcome::Done(r) => r.map_err(NodeError::io("preparing the mount point", path)),
            Outcome::TimedOut => Err(NodeError::Timeout {
                action: "preparing the mount point",
                path: path.to_owned(),
                timeout: self.config.stat_timeout,
            }),
        }
    }

    /// Unmount everything stacked on `path`. An unmount that does not
    /// return in time, or finds the mount busy, is replaced by `fallback`
    /// (lazy, or forced and lazy); the answer says whether that happened.
    async fn unmount_all(&self, path: &Path, fallback: Unmount) -> Result<bool, NodeError> {
        const MAX_STACKED: usize = 16;
        let timeout = self.config.unmount_timeout;
        let mut forced = false;
        for _ in 0..MAX_STACKED {
            let table = self.table(path).await?;
            if top_at(&table, path).is_none() {
                return Ok(forced);
            }
            let owned = path.to_owned();
            // No hold: once the fallback detached the mount the path is free,
            // whatever the stuck call does later.
            let normal = self
                .bounded("unmount", path, timeout, None, move |m| {
                    m.unmount(&owned, Unmount::Normal)
                })
                .await?;
            match normal {
                Outcome::Done(Ok(())) => continue,
                // Not a mount point (any more): someone else unmounted it.
                Outcome::Done(Err(e)) if e.raw_os_error() == Some(Errno::EINVAL as i32) => continue,
                // The pod is gone by now, so what keeps the mount busy is a
                // call stuck on the server (a statvfs, say): detach it all
                // the same, it is released when that call returns.
                Outcome::Done(Err(e)) if e.raw_os_error() == Some(Errno::EBUSY as i32) => {
                    tracing::warn!(?path, ?fallback, "mount busy; detaching instead");
                }
                Outcome::Done(Err(e)) => return Err(NodeError::io("unmounting", path)(e)),
                Outcome::TimedOut => tracing::warn!(
                    ?path,
                    ?timeout,
                    ?fallback,
                    "unmount did not finish in time (server hung?); detaching instead"
                ),
            }
            let owned = path.to_owned();
            match self
                .bounded("forced unmount", path, timeout, None, move |m| {
                    m.unmount(&owned, fallback)
                })
                .await?
            {
                Outcome::Done(Ok(())) => forced = true,
                Outcome::Done(Err(e)) if e.raw_os_error() == Some(Errno::EINVAL as i32) => {
                    forced = true;
                }
                Outcome::Done(Err(e)) => return Err(NodeError::io("detaching", path)(e)),
                Outcome::TimedOut => {
                    return Err(NodeError::Timeout {
                        action: "detaching",
                        path: path.to_owned(),
                        timeout,
                    });
                }
            }
        }
        Err(NodeError::Internal(format!(
            "more than {MAX_STACKED} mounts stacked on {path:?}"
        )))
    }

    /// Make `staging` hold a healthy NFS mount of the volume; returns what
    /// had to be done.
    async fn ensure_staged(
        &self,
        volume_id: &str,
        staging: &Path,
        cap: &VolumeCapability,
        volume_context: &HashMap<String, String>,
    ) -> Result<&'static str, NodeError> {
        let volume = VolumeMount::parse(volume_id, volume_context)?;
        let tls = match (&self.config.tls, volume.encrypt_in_transit) {
            (Some(tls), true) => Some(tls),
            (None, true) => return Err(NodeError::TlsUnavailable(volume_id.to_owned())),
            (_, false) => None,
        };
        let options = options::parse(mount_flags(cap))?;
        let guard = self.claim(staging)?;
        let source = volume.source();
        let table = self.table(staging).await?;
        let mut outcome = "mounted";
        if let Some(top) = top_at(&table, staging) {
            if !(top.is_nfs() && same_source(&top.source, &source)) {
                return Err(NodeError::Occupied {
                    path: staging.to_owned(),
                    what: describe(top),
                });
            }
            match self.health(staging, None).await? {
                Health::Ok(_) => return Ok("already staged"),
                Health::Broken(reason) => {
                    tracing::warn!(?staging, %reason, "staged mount is broken; mounting it again");
                    self.unmount_all(staging, Unmount::ForceDetach).await?;
                    outcome = "repaired a broken mount";
                }
            }
        }
        self.prepare_dir(staging).await?;
        let timeout = self.config.mount_timeout;
        let data = match tls {
            // The kernel talks to the proxy's loopback port; the mount's
            // source still names the real server, for whoever reads the
            // mount table.
            Some(tls) => {
                let port =
                    tls.ensure_tunnel(volume_id, &volume.endpoint, volume.ca_bundle.as_deref())?;
                tls.wait_listening(volume_id, port, timeout).await?;
                let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
                options.data(local, local, Some(port))
            }
            None => {
                let (addr, clientaddr) = addresses(&volume.endpoint, timeout).await?;
                options.data(addr, clientaddr, volume.endpoint.port)
            }
        };
        let flags = options.flags;
        let target = staging.to_owned();
        tracing::debug!(%source, %data, "mounting");
        match self
            .bounded("mount", staging, timeout, Some(guard), move |m| {
                m.mount_nfs(&source, &target, flags, &data)
            })
            .await?
        {
            Outcome::Done(r) => r.map_err(NodeError::io("mounting the volume at", staging))?,
            Outcome::TimedOut => {
                return Err(NodeError::Timeout {
                    action: "mounting the volume at",
                    path: staging.to_owned(),
                    timeout,
                });
            }
        }
        Ok(outcome)
    }

    async fn stage(&self, req: csi::NodeStageVolumeRequest) -> Result<&'static str, NodeError> {
        require(&req.volume_id, "volume_id")?;
        require(&req.staging_target_path, "staging_target_path")?;
        let cap = capability(req.volume_capability.as_ref())?;
        self.ensure_staged(
            &req.volume_id,
            Path::new(&req.staging_target_path),
            cap,
            &req.volume_context,
        )
        .await
    }

    async fn unstage(&self, req: csi::NodeUnstageVolumeRequest) -> Result<bool, NodeError> {
        require(&req.volume_id, "volume_id")?;
        require(&req.staging_target_path, "staging_target_path")?;
        let staging = Path::new(&req.staging_target_path);
        let _guard = self.claim(staging)?;
        // Every pod's bind is gone by now (the CO unpublishes first), so
        // forcing only fails requests of a server that does not answer.
        let unmounted = self.unmount_all(staging, Unmount::ForceDetach).await?;
        // Only now that nothing is mounted through it.
        if let Some(tls) = &self.config.tls
            && tls.remove_tunnel(&req.volume_id)?
        {
            tracing::info!(volume_id = %req.volume_id, "tls-proxy tunnel removed");
        }
        Ok(unmounted)
    }

    async fn publish(&self, req: csi::NodePublishVolumeRequest) -> Result<&'static str, NodeError> {
        require(&req.volume_id, "volume_id")?;
        require(&req.staging_target_path, "staging_target_path")?;
        require(&req.target_path, "target_path")?;
        let cap = capability(req.volume_capability.as_ref())?;
        let mut flags = options::vfs_flags(mount_flags(cap))?;
        if req.readonly || reader_only(cap) {
            flags |= MsFlags::MS_RDONLY;
        }
        let staging = Path::new(&req.staging_target_path);
        let target = Path::new(&req.target_path);
        let guard = self.claim(target)?;

        let table = self.table(staging).await?;
        top_at(&table, staging)
            .filter(|e| e.is_nfs())
            .ok_or_else(|| NodeError::NotStaged(staging.to_owned()))?;
        // The CO stages once per node, so a staging mount that went stale
        // (say, the server's directory was replaced) is repaired here.
        if let Health::Broken(reason) = self.health(staging, None).await? {
            tracing::warn!(?staging, %reason, "staged mount is broken; repairing before publishing");
            self.ensure_staged(&req.volume_id, staging, cap, &req.volume_context)
                .await?;
        }
        let table = self.table(target).await?;
        let staged = top_at(&table, staging)
            .cloned()
            .ok_or_else(|| NodeError::NotStaged(staging.to_owned()))?;
        let mut outcome = "published";
        if let Some(top) = top_at(&table, target) {
            if !(top.is_nfs() && same_source(&top.source, &staged.source)) {
                return Err(NodeError::Occupied {
                    path: target.to_owned(),
                    what: describe(top),
                });
            }
            let current = top.same_tree(&staged);
            if current && top.read_only() != flags.contains(MsFlags::MS_RDONLY) {
                return Err(NodeError::ReadOnlyMismatch(target.to_owned()));
            }
            match self.health(target, None).await? {
                Health::Ok(_) if current => return Ok("already published"),
                Health::Ok(_) => tracing::warn!(
                    ?target,
                    "bind of an earlier mount of the volume; replacing it"
                ),
                Health::Broken(reason) => {
                    tracing::warn!(?target, %reason, "published bind is broken; replacing it");
                }
            }
            self.unmount_all(target, Unmount::Detach).await?;
            outcome = "repaired a broken bind";
        }
        self.prepare_dir(target).await?;
        let (from, to) = (staging.to_owned(), target.to_owned());
        let timeout = self.config.mount_timeout;
        match self
            .bounded("bind", target, timeout, Some(guard), move |m| {
                m.bind(&from, &to, flags)
            })
            .await?
        {
            Outcome::Done(r) => r.map_err(NodeError::io("bind-mounting the volume at", target))?,
            Outcome::TimedOut => {
                return Err(NodeError::Timeout {
                    action: "bind-mounting the volume at",
                    path: target.to_owned(),
                    timeout,
                });
            }
        }
        Ok(outcome)
    }

    async fn unpublish(&self, req: csi::NodeUnpublishVolumeRequest) -> Result<bool, NodeError> {
        require(&req.volume_id, "volume_id")?;
        require(&req.target_path, "target_path")?;
        let target = Path::new(&req.target_path);
        let _guard = self.claim(target)?;
        // Lazy only: forcing would fail the requests of every other pod on
        // the shared superblock.
        let detached = self.unmount_all(target, Unmount::Detach).await?;
        let owned = target.to_owned();
        let removed = self
            .bounded(
                "removing",
                target,
                self.config.stat_timeout,
                None,
                move |_| match std::fs::remove_dir(&owned) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    r => r,
                },
            )
            .await?;
        match removed {
            Outcome::Done(r) => r.map_err(NodeError::io("removing the target path", target))?,
            Outcome::TimedOut => {
                return Err(NodeError::Timeout {
                    action: "removing the target path",
                    path: target.to_owned(),
                    timeout: self.config.stat_timeout,
                });
            }
        }
        Ok(detached)
    }

    async fn stats(
        &self,
        req: csi::NodeGetVolumeStatsRequest,
    ) -> Result<csi::NodeGetVolumeStatsResponse, NodeError> {
        require(&req.volume_id, "volume_id")?;
        require(&req.volume_path, "volume_path")?;
        let path = Path::new(&req.volume_path);
        let table = self.table(path).await?;
        if !top_at(&table, path).is_some_and(MountEntry::is_nfs) {
            return Err(NodeError::NoVolumeAt(path.to_owned()));
        }
        let condition =
            |abnormal, message: String| Some(csi::VolumeCondition { abnormal, message });
        let Some(guard) = self.stats_in_flight.try_start(&path.to_string_lossy()) else {
            return Ok(csi::NodeGetVolumeStatsResponse {
                usage: Vec::new(),
                volume_condition: condition(
                    true,
                    "an earlier statvfs of this volume has not returned yet (server hung?)".into(),
                ),
            });
        };
        let reply = match self.health(path, Some(Arc::new(guard))).await? {
            Health::Ok(u) => {
                let usage =
                    |unit: csi::volume_usage::Unit, total: u64, available: u64, used: u64| {
                        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                        csi::VolumeUsage {
                            total: n(total),
                            available: n(available),
                            used: n(used),
                            unit: unit.into(),
                        }
                    };
                csi::NodeGetVolumeStatsResponse {
                    usage: vec![
                        usage(
                            csi::volume_usage::Unit::Bytes,
                            u.total_bytes,
                            u.available_bytes,
                            u.used_bytes,
                        ),
                        usage(
                            csi::volume_usage::Unit::Inodes,
                            u.total_inodes,
                            u.free_inodes,
                            u.used_inodes,
                        ),
                    ],
                    volume_condition: condition(false, "volume is healthy".into()),
                }
            }
            Health::Broken(reason) => csi::NodeGetVolumeStatsResponse {
                usage: Vec::new(),
                volume_condition: condition(true, reason),
            },
        };
        Ok(reply)
    }
}

fn node_capability(t: RpcType) -> NodeServiceCapability {
    NodeServiceCapability {
        r#type: Some(csi::node_service_capability::Type::Rpc(Rpc {
            r#type: t.into(),
        })),
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Node for NodeService {
    #[tracing::instrument(skip_all, fields(method = "NodeStageVolume", volume = %request.get_ref().volume_id))]
    async fn node_stage_volume(
        &self,
        request: Request<csi::NodeStageVolumeRequest>,
    ) -> Reply<csi::NodeStageVolumeResponse> {
        let outcome = self
            .stage(request.into_inner())
            .await
            .inspect_err(|e| tracing::warn!(error = %e))?;
        tracing::info!(outcome);
        Ok(Response::new(csi::NodeStageVolumeResponse {}))
    }

    #[tracing::instrument(skip_all, fields(method = "NodeUnstageVolume", volume = %request.get_ref().volume_id))]
    async fn node_unstage_volume(
        &self,
        request: Request<csi::NodeUnstageVolumeRequest>,
    ) -> Reply<csi::NodeUnstageVolumeResponse> {
        let forced = self
            .unstage(request.into_inner())
            .await
            .inspect_err(|e| tracing::warn!(error = %e))?;
        if forced {
            tracing::warn!("unstaged by a forced lazy unmount after the timeout");
        } else {
            tracing::info!("unstaged");
        }
        Ok(Response::new(csi::NodeUnstageVolumeResponse {}))
    }

    #[tracing::instrument(skip_all, fields(method = "NodePublishVolume", volume = %request.get_ref().volume_id))]
    async fn node_publish_volume(
        &self,
        request: Request<csi::NodePublishVolumeRequest>,
    ) -> Reply<csi::NodePublishVolumeResponse> {
        let outcome = self
            .publish(request.into_inner())
            .await
            .inspect_err(|e| tracing::warn!(error = %e))?;
        tracing::info!(outcome);
        Ok(Response::new(csi::NodePublishVolumeResponse {}))
    }

    #[tracing::instrument(skip_all, fields(method = "NodeUnpublishVolume", volume = %request.get_ref().volume_id))]
    async fn node_unpublish_volume(
        &self,
        request: Request<csi::NodeUnpublishVolumeRequest>,
    ) -> Reply<csi::NodeUnpublishVolumeResponse> {
        let detached = self
            .unpublish(request.into_inner())
            .await
            .inspect_err(|e| tracing::warn!(error = %e))?;
        if detached {
            tracing::warn!("unpublished by a lazy unmount after the timeout");
        } else {
            tracing::info!("unpublished");
        }
        Ok(Response::new(csi::NodeUnpublishVolumeResponse {}))
    }

    #[tracing::instrument(skip_all, fields(method = "NodeGetVolumeStats", volume = %request.get_ref().volume_id))]
    async fn node_get_volume_stats(
        &self,
        request: Request<csi::NodeGetVolumeStatsRequest>,
    ) -> Reply<csi::NodeGetVolumeStatsResponse> {
        let reply = self
            .stats(request.into_inner())
            .await
            .inspect_err(|e| tracing::warn!(error = %e))?;
        if let Some(c) = reply.volume_condition.as_ref().filter(|c| c.abnormal) {
            tracing::warn!(condition = %c.message, "volume abnormal");
        }
        Ok(Response::new(reply))
    }

    async fn node_expand_volume(
        &self,
        _: Request<csi::NodeExpandVolumeRequest>,
    ) -> Reply<csi::NodeExpandVolumeResponse> {
        Err(Status::unimplemented(
            "NodeExpandVolume: NFS volumes grow on the server, nothing to do on the node",
        ))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<csi::NodeGetCapabilitiesRequest>,
    ) -> Reply<csi::NodeGetCapabilitiesResponse> {
        Ok(Response::new(csi::NodeGetCapabilitiesResponse {
            capabilities: vec![
                node_capability(RpcType::StageUnstageVolume),
                node_capability(RpcType::GetVolumeStats),
                node_capability(RpcType::VolumeCondition),
                node_capability(RpcType::SingleNodeMultiWriter),
            ],
        }))
    }

    async fn node_get_info(
        &self,
        _: Request<csi::NodeGetInfoRequest>,
    ) -> Reply<csi::NodeGetInfoResponse> {
        Ok(Response::new(csi::NodeGetInfoResponse {
            node_id: self.config.node_id.clone(),
            // No attach limit: NFS volumes use no device slots.
            max_volumes_per_node: 0,
            accessible_topology: None,
        }))
    }
}

#[cfg(test)]
mod tests;
