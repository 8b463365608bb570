//! `openefs-csi`: the openefs CSI plugin.

use std::{ops::RangeInclusive, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use kube::{Api, Client, Config, api::ListParams, config::KubeConfigOptions};
use openefs_crds::AccessPoint;
use openefs_csi::{
    controller::{ControllerConfig, ControllerService},
    identity::{IdentityService, ReadinessCheck},
    node::{
        NodeConfig, NodeService,
        mounter::{KernelMounter, Mounter},
        tunnel::TlsConfig,
    },
    server, tls_proxy,
    tls_proxy::spec::ClientCertificate,
};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// The openefs CSI plugin.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// CSI endpoint the plugin serves (kubelet and the sidecars connect here).
    #[arg(
        long,
        env = "CSI_ENDPOINT",
        default_value = "unix:///csi/csi.sock",
        global = true
    )]
    endpoint: String,
    /// Log filter, in tracing-subscriber's EnvFilter syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the identity and controller services (provisioning through the
    /// Kubernetes API).
    Controller {
        /// Kubeconfig file; in-cluster configuration or $KUBECONFIG when absent.
        #[arg(long, env = "OPENEFS_KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        /// How long CreateVolume waits for an AccessPoint or FileSystem to
        /// become ready before it deletes it again and answers DEADLINE_EXCEEDED.
        #[arg(long, env = "OPENEFS_PROVISION_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
        provision_timeout: Duration,
    },
    /// Serve the identity and node services (mounting on this node; needs
    /// root, or CAP_SYS_ADMIN, in the host's mount namespace).
    Node {
        /// This node's id as reported to the CO.
        #[arg(long, env = "CSI_NODE_ID")]
        node_id: String,
        /// Limit for resolving the server and mounting; a mount still
        /// running then is answered DEADLINE_EXCEEDED and its path stays
        /// busy (ABORTED) until the kernel returns.
        #[arg(long, env = "OPENEFS_MOUNT_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
        mount_timeout: Duration,
        /// Limit for one unmount; then the mount is detached lazily (and the
        /// staging mount's pending NFS requests are aborted).
        #[arg(long, env = "OPENEFS_UNMOUNT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
        unmount_timeout: Duration,
        /// Limit for a statvfs (health checks, NodeGetVolumeStats); beyond it
        /// the volume is reported abnormal.
        #[arg(long, env = "OPENEFS_STAT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
        stat_timeout: Duration,
        /// The tls-proxy sidecar's state directory: TLS volumes
        /// (encryptInTransit) get a tunnel file there and are mounted through
        /// the proxy's loopback port. Without it TLS volumes are refused.
        #[arg(long, env = "OPENEFS_TLS_PROXY_DIR")]
        tls_proxy_dir: Option<PathBuf>,
        /// CA bundle (PEM) for TLS volumes whose volume context carries no
        /// `caBundle` (static PersistentVolumes), at a path the tls-proxy
        /// container can read.
        #[arg(long, env = "OPENEFS_TLS_CA", requires = "tls_proxy_dir")]
        tls_ca: Option<PathBuf>,
        /// The node's client certificate (PEM chain), which tunnels present
        /// to file system servers that verify their clients (mTLS); the
        /// server's policy may grant by its name. A path the tls-proxy
        /// container can read; re-read for each connection.
        #[arg(
            long,
            env = "OPENEFS_TLS_CLIENT_CERT",
            requires_all = ["tls_proxy_dir", "tls_client_key"]
        )]
        tls_client_cert: Option<PathBuf>,
        /// The private key of `--tls-client-cert` (PEM).
        #[arg(long, env = "OPENEFS_TLS_CLIENT_KEY", requires = "tls_client_cert")]
        tls_client_key: Option<PathBuf>,
        /// Loopback ports tunnels may use, `FIRST-LAST` (one per TLS volume
        /// staged on the node).
        #[arg(long, env = "OPENEFS_TLS_PORT_RANGE", default_value = "20049-20448", value_parser = parse_port_range)]
        tls_port_range: RangeInclusive<u16>,
    },
    /// Forward loopback ports to file system servers inside TLS, one tunnel
    /// per file in the state directory (a sidecar of the node plugin).
    TlsProxy {
        /// Directory of tunnel files (`<name>.json`), on the host so that a
        /// restarted proxy opens the same ports again.
        #[arg(
            long,
            env = "OPENEFS_TLS_STATE_DIR",
            default_value = "/var/lib/openefs/tls-tunnels"
        )]
        state_dir: PathBuf,
        /// Address and port for the Prometheus `/metrics` endpoint.
        #[arg(long, env = "OPENEFS_METRICS_ADDRESS")]
        metrics_address: Option<std::net::SocketAddr>,
        /// How often the state directory is re-read.
        #[arg(long, env = "OPENEFS_TLS_POLL_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
        poll_interval: Duration,
    },
}

fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    let bad = || format!("{s:?} is not a port range FIRST-LAST (1-65535, FIRST <= LAST)");
    let (first, last) = s.split_once('-').ok_or_else(bad)?;
    let (first, last): (u16, u16) = (
        first.trim().parse().map_err(|_| bad())?,
        last.trim().parse().map_err(|_| bad())?,
    );
    if first == 0 || first > last {
        return Err(bad());
    }
    Ok(first..=last)
}

async fn client(kubeconfig: Option<PathBuf>) -> Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(&path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

async fn tls_proxy(
    state_dir: PathBuf,
    metrics_address: Option<std::net::SocketAddr>,
    poll: Duration,
) -> Result<()> {
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
    let metrics = Arc::new(tls_proxy::metrics::Metrics::default());
    let shutdown = CancellationToken::new();
    let metrics_task = match metrics_address {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics address {addr}"))?;
            tracing::info!(listen = %addr, "serving /metrics");
            let stop = shutdown.clone();
            Some(tokio::spawn(tls_proxy::metrics::serve(
                listener,
                metrics.clone(),
                async move { stop.cancelled().await },
            )))
        }
        None => None,
    };
    let stop = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stop.cancel();
    });
    tracing::info!(state_dir = %state_dir.display(), "tls-proxy running");
    tls_proxy::run(
        tls_proxy::ProxyConfig { state_dir, poll },
        metrics,
        shutdown,
    )
    .await;
    if let Some(task) = metrics_task {
        task.await
            .context("metrics task")?
            .context("serving /metrics")?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).context("--log")?)
        .init();
    let socket = server::socket_path(&cli.endpoint)?;
    match cli.command {
        Command::Controller {
            kubeconfig,
            provision_timeout,
        } => {
            let client = client(kubeconfig)
                .await
                .context("Kubernetes client configuration")?;
            let probe_client = client.clone();
            // Ready once the API answers for the kind the controller works on.
            let check: ReadinessCheck = Arc::new(move || {
                let api: Api<AccessPoint> = Api::all(probe_client.clone());
                Box::pin(async move {
                    api.list_metadata(&ListParams::default().limit(1))
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
            });
            let identity = IdentityService::new(true, check);
            let controller = ControllerService::new(client, ControllerConfig { provision_timeout });
            let listener = server::bind(&socket)?;
            tracing::info!(endpoint = %cli.endpoint, "serving identity and controller");
            server::serve(
                listener,
                identity,
                Some(controller),
                None,
                shutdown_signal(),
            )
            .await?;
        }
        Command::Node {
            node_id,
            mount_timeout,
            unmount_timeout,
            stat_timeout,
            tls_proxy_dir,
            tls_ca,
            tls_client_cert,
            tls_client_key,
            tls_port_range,
        } => {
            if node_id.is_empty() {
                bail!("--node-id must not be empty");
            }
            // Ready once the mount table can be read: every RPC starts there.
            let check: ReadinessCheck = Arc::new(|| {
                Box::pin(async {
                    KernelMounter
                        .mount_table()
                        .map(drop)
                        .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))
                })
            });
            let identity = IdentityService::new(false, check);
            let node = NodeService::new(
                NodeConfig {
                    node_id,
                    mount_timeout,
                    unmount_timeout,
                    stat_timeout,
                    tls: tls_proxy_dir.map(|proxy_dir| TlsConfig {
                        proxy_dir,
                        ca: tls_ca,
                        ports: tls_port_range,
                        client_certificate: tls_client_cert
                            .zip(tls_client_key)
                            .map(|(cert, key)| ClientCertificate { cert, key }),
                    }),
                },
                Arc::new(KernelMounter),
            );
            let listener = server::bind(&socket)?;
            tracing::info!(endpoint = %cli.endpoint, "serving identity and node");
            server::serve(listener, identity, None, Some(node), shutdown_signal()).await?;
        }
        Command::TlsProxy {
            state_dir,
            metrics_address,
            poll_interval,
        } => tls_proxy(state_dir, metrics_address, poll_interval).await?,
    }
    tracing::info!("stopped");
    Ok(())
}
