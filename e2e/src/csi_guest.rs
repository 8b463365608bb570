//! The CSI node plugin in the qemu guest, as a node DaemonSet runs it:
//! `openefs-csi node` and its `tls-proxy` sidecar run in the guest
//! (`e2e/guest/csi_start.sh`, put before the run's workload), socat bridges
//! a TCP port to the plugin's unix socket, and qemu forwards host loopback
//! ports to it and to the proxy's `/metrics`. The host drives
//! NodeStage/NodePublish over gRPC while the guest's kernel mounts.
//! Shared by the CSI node test and the demo.

use std::collections::HashMap;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use openefs_csi::csi::{
    self, VolumeCapability,
    identity_client::IdentityClient,
    volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode},
};
use tokio::runtime::Runtime;
use tonic::transport::{Channel, Endpoint};

use crate::binaries::workspace_binary;
use crate::nfsd::scrape_metrics;
use crate::qemu::{RunOptions, free_loopback_port};

/// The node id the guest's plugin reports.
pub const NODE_ID: &str = "guest-node";
/// The tls-proxy's state directory in the guest.
pub const TLS_DIR: &str = "/var/lib/openefs/tls-tunnels";
/// The guest port socat listens on.
const GUEST_CSI_PORT: u16 = 10000;
/// The guest port of the tls-proxy's `/metrics`.
const GUEST_PROXY_METRICS_PORT: u16 = 9840;
const START: &str = include_str!("../guest/csi_start.sh");

/// A volume context from key/value pairs.
pub fn context(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A mount capability with `mount_flags`, as kubelet sends it.
pub fn cap(mode: Mode, mount_flags: &[&str]) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "nfs4".into(),
            mount_flags: mount_flags.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })),
        access_mode: Some(AccessMode { mode: mode.into() }),
    }
}

/// A volume as kubelet knows it: id, staging path, context, mount flags;
/// builds the node requests for it.
pub struct Volume {
    pub id: &'static str,
    pub staging: &'static str,
    pub context: HashMap<String, String>,
    pub flags: &'static [&'static str],
}

impl Volume {
    pub fn stage(&self) -> csi::NodeStageVolumeRequest {
        csi::NodeStageVolumeRequest {
            volume_id: self.id.into(),
            staging_target_path: self.staging.into(),
            volume_capability: Some(cap(Mode::MultiNodeMultiWriter, self.flags)),
            volume_context: self.context.clone(),
            ..Default::default()
        }
    }

    pub fn publish(&self, target: &str, readonly: bool) -> csi::NodePublishVolumeRequest {
        csi::NodePublishVolumeRequest {
            volume_id: self.id.into(),
            staging_target_path: self.staging.into(),
            target_path: target.into(),
            volume_capability: Some(cap(Mode::MultiNodeMultiWriter, self.flags)),
            readonly,
            volume_context: self.context.clone(),
            ..Default::default()
        }
    }

    pub fn unpublish(&self, target: &str) -> csi::NodeUnpublishVolumeRequest {
        csi::NodeUnpublishVolumeRequest {
            volume_id: self.id.into(),
            target_path: target.into(),
        }
    }

    pub fn unstage(&self) -> csi::NodeUnstageVolumeRequest {
        csi::NodeUnstageVolumeRequest {
            volume_id: self.id.into(),
            staging_target_path: self.staging.into(),
        }
    }

    pub fn stats(&self, path: &str) -> csi::NodeGetVolumeStatsRequest {
        csi::NodeGetVolumeStatsRequest {
            volume_id: self.id.into(),
            volume_path: path.into(),
            staging_target_path: self.staging.into(),
        }
    }
}

/// The plugin and proxy of one guest run, as the host reaches them.
pub struct GuestPlugin {
    /// `127.0.0.1:<csi_port>` on the host reaches the plugin's gRPC.
    pub csi_port: u16,
    /// `127.0.0.1:<proxy_metrics_port>` reaches the tls-proxy's `/metrics`.
    pub proxy_metrics_port: u16,
    /// The plugin's `--mount-timeout`.
    pub mount_timeout: Duration,
    /// The plugin's `--unmount-timeout`.
    pub unmount_timeout: Duration,
}

impl GuestPlugin {
    /// Free host ports, and the plugin's default timeouts.
    pub fn new() -> Result<Self> {
        Ok(Self {
            csi_port: free_loopback_port()?,
            proxy_metrics_port: free_loopback_port()?,
            mount_timeout: Duration::from_secs(60),
            unmount_timeout: Duration::from_secs(30),
        })
    }

    /// `script` with the start of the plugin, its sidecar and the mount
    /// table helpers before it.
    pub fn workload(script: &str) -> String {
        format!("{START}\n{script}")
    }

    /// Adds what the plugin needs to a run: its binary and socat, the port
    /// forwards, its settings in the environment; the guest mounts nothing
    /// itself.
    pub fn configure(&self, opts: &mut RunOptions<'_>) -> Result<()> {
        opts.skip_mount = true;
        opts.binaries
            .push(workspace_binary("openefs-csi", "openefs-csi")?);
        opts.binaries.push(PathBuf::from("socat"));
        opts.host_forwards.push((self.csi_port, GUEST_CSI_PORT));
        opts.host_forwards
            .push((self.proxy_metrics_port, GUEST_PROXY_METRICS_PORT));
        for (key, value) in [
            ("NODE_ID", NODE_ID.to_owned()),
            ("CSI_PORT", GUEST_CSI_PORT.to_string()),
            ("PROXY_METRICS_PORT", GUEST_PROXY_METRICS_PORT.to_string()),
            ("TLS_DIR", TLS_DIR.to_owned()),
            (
                "MOUNT_TIMEOUT",
                format!("{}ms", self.mount_timeout.as_millis()),
            ),
            (
                "UNMOUNT_TIMEOUT",
                format!("{}ms", self.unmount_timeout.as_millis()),
            ),
        ] {
            ensure!(
                opts.env.insert(key.into(), value).is_none(),
                "the run's environment already sets {key}"
            );
        }
        Ok(())
    }

    /// A gRPC channel to the guest's plugin, once its Probe answers ready
    /// (the guest may still be booting): at most 30 s.
    pub fn connect(&self, rt: &Runtime) -> Result<Channel> {
        let endpoint = Endpoint::from_shared(format!("http://127.0.0.1:{}", self.csi_port))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rt.block_on(endpoint.connect()) {
                Ok(channel) => {
                    let probe = rt
                        .block_on(IdentityClient::new(channel.clone()).probe(csi::ProbeRequest {}));
                    if probe.is_ok_and(|r| r.into_inner().ready == Some(true)) {
                        return Ok(channel);
                    }
                }
                Err(e) if Instant::now() > deadline => {
                    bail!("connecting to the guest's plugin: {e}")
                }
                Err(_) => {}
            }
            ensure!(
                Instant::now() < deadline,
                "the guest's plugin never became ready"
            );
            thread::sleep(Duration::from_millis(300));
        }
    }

    /// The tls-proxy's Prometheus text.
    pub fn proxy_metrics(&self) -> Result<String> {
        scrape_metrics(self.proxy_metrics_port).context("scraping the guest's tls-proxy")
    }
}
