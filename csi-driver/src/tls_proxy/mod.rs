//! `openefs-csi tls-proxy`: encryption in transit for kernel NFS mounts.
//!
//! Per tunnel a listener on `127.0.0.1:<localPort>` whose connections are
//! forwarded inside TLS 1.3 to the file system's server, which is verified
//! against the tunnel's CA and server name. Tunnels are files in a state
//! directory on the host ([`spec`]); the proxy re-reads it on start and
//! polls it, so a restarted or upgraded proxy listens on the same ports
//! again and the kernel's hard mounts reconnect to it: the kernel retries
//! its RPCs, nothing is lost.

pub mod metrics;
pub mod spec;
pub mod tunnel;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use metrics::Metrics;
use spec::TunnelSpec;

/// Settings of `openefs-csi tls-proxy`.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Directory of tunnel files.
    pub state_dir: PathBuf,
    /// How often the directory is re-read.
    pub poll: Duration,
}

struct Running {
    spec: TunnelSpec,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Runs every tunnel of the state directory, following its changes, until
/// `shutdown` fires; then closes them all.
pub async fn run(config: ProxyConfig, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    // What was last logged per tunnel (or for the directory), so a lasting
    // problem is logged once, not at every poll.
    let mut reported: BTreeMap<String, String> = BTreeMap::new();
    let mut tick = tokio::time::interval(config.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let wanted = match spec::read_dir(&config.state_dir) {
            Ok(w) => {
                reported.remove("");
                w
            }
            Err(e) => {
                report(&mut reported, "", e.to_string());
                continue;
            }
        };
        // Stop removed and changed tunnels first, so a changed one can bind
        // its (maybe same) port again.
        let gone: Vec<String> = running
            .iter()
            .filter(|(name, r)| !matches!(wanted.get(*name), Some(Ok(s)) if *s == r.spec))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(r) = running.remove(&name) {
                info!(tunnel = %name, port = r.spec.local_port, "tunnel removed or changed: closing it");
                r.stop.cancel();
                if let Err(e) = r.task.await {
                    error!(tunnel = %name, error = %e, "tunnel task failed");
                }
            }
        }
        reported.retain(|name, _| name.is_empty() || wanted.contains_key(name));
        for (name, spec) in wanted {
            if running.contains_key(&name) {
                continue;
            }
            let spec = match spec {
                Ok(s) => s,
                Err(e) => {
                    report(&mut reported, &name, e.to_string());
                    continue;
                }
            };
            match tunnel::bind(&spec).await {
                Ok(listener) => {
                    reported.remove(&name);
                    info!(tunnel = %name, port = spec.local_port, server = %spec.server, server_name = %spec.server_name, "tunnel listening");
                    let stop = shutdown.child_token();
                    let task = tokio::spawn(tunnel::run(
                        name.clone(),
                        spec.clone(),
                        listener,
                        metrics.clone(),
                        stop.clone(),
                    ));
                    running.insert(name, Running { spec, stop, task });
                }
                Err(e) => report(
                    &mut reported,
                    &name,
                    format!("binding 127.0.0.1:{}: {e}", spec.local_port),
                ),
            }
        }
        metrics.set_tunnels(running.len());
    }
    for (name, r) in running {
        r.stop.cancel();
        if let Err(e) = r.task.await {
            error!(tunnel = %name, error = %e, "tunnel task failed");
        }
    }
}

fn report(reported: &mut BTreeMap<String, String>, tunnel: &str, problem: String) {
    if reported.get(tunnel) != Some(&problem) {
        warn!(tunnel, "{problem}; retrying at every poll");
        reported.insert(tunnel.to_owned(), problem);
    }
}
