//! `openefs-operator`: reconciles openefs `FileSystem` and `AccessPoint`
//! resources into running NFS servers.

use std::{io::Write, path::PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use kube::{Client, Config, config::KubeConfigOptions};

/// The openefs operator.
///
/// `run` reconciles FileSystem and AccessPoint resources: each FileSystem
/// gets a backing PVC, an openefs-nfsd StatefulSet, a headless and a
/// ClusterIP Service and a PodDisruptionBudget (server-side apply, field
/// manager `openefs`), and a status with phase, conditions and Events.
/// See docs/operator.md.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    /// Log filter, in tracing-subscriber's EnvFilter syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the openefs CustomResourceDefinitions as YAML
    /// (`openefs-operator crds | kubectl apply -f -`).
    Crds,
    /// Run the FileSystem and AccessPoint controllers until SIGTERM/SIGINT.
    Run(Box<RunArgs>),
}

/// Flags of `run`.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Kubeconfig file; in-cluster configuration or $KUBECONFIG when absent.
    #[arg(long, env = "OPENEFS_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Reconcile only the custom resources themselves and never read or
    /// write core kinds (PVCs, StatefulSets, Services, Events...): for
    /// an API server that serves only CRDs. Nothing serves the file
    /// systems in this mode.
    #[arg(long, env = "OPENEFS_ONLY_CUSTOM_RESOURCES")]
    only_custom_resources: bool,
    /// Container image of openefs-nfsd for FileSystems that do not name
    /// one in spec.server.image (the chart sets it).
    #[arg(
        long,
        env = "OPENEFS_NFSD_IMAGE",
        required_unless_present = "only_custom_resources"
    )]
    nfsd_image: Option<String>,
    /// Watch only this namespace; all namespaces when absent.
    #[arg(long, env = "OPENEFS_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Reconcile only while holding a Lease, so that several replicas
    /// can run with one active (the others stand by).
    #[arg(long, env = "OPENEFS_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", required_if_eq("leader_election", "true"))]
    leader_election_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "OPENEFS_LEADER_ELECTION_LEASE",
        default_value = "openefs-operator"
    )]
    leader_election_lease: String,
    /// This replica's identity in the Lease; the host name and process
    /// id when absent.
    #[arg(long, env = "POD_NAME")]
    leader_election_identity: Option<String>,
    /// Address of the HTTP endpoint: /metrics (Prometheus), /healthz
    /// (liveness), /readyz (the watch caches are filled).
    #[arg(long, env = "OPENEFS_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    http_address: std::net::SocketAddr,
    /// DNS domain of the cluster, used in each FileSystem's endpoint
    /// (`<fileSystemId>.<namespace>.svc.<domain>`).
    #[arg(long, env = "OPENEFS_CLUSTER_DOMAIN", default_value = "cluster.local", value_parser = dns_name)]
    cluster_domain: String,
}

/// A DNS name: dot-separated RFC 1123 labels.
fn dns_name(s: &str) -> Result<String, String> {
    if openefs_crds::volume_handle::is_dns_subdomain(s) {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a lowercase DNS name"))
    }
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

fn main() -> Result<()> {
    main_with(Cli::parse())
}

fn main_with(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Crds => print_crds(),
        Command::Run(args) => {
            let RunArgs {
                kubeconfig,
                only_custom_resources,
                nfsd_image,
                namespace,
                leader_election,
                leader_election_namespace,
                leader_election_lease,
                leader_election_identity,
                http_address,
                cluster_domain,
            } = *args;
            let leader_election = match (leader_election, leader_election_namespace) {
                (false, _) => None,
                (true, None) => bail!("--leader-election needs --leader-election-namespace"),
                (true, Some(namespace)) => Some(openefs_operator::leader::Config {
                    namespace,
                    name: leader_election_lease,
                    identity: leader_election_identity.unwrap_or_else(default_identity),
                    lease_duration: std::time::Duration::from_secs(15),
                    renew_every: std::time::Duration::from_secs(5),
                }),
            };
            let core_objects = match (only_custom_resources, nfsd_image) {
                (true, _) => None,
                (false, Some(image)) if !image.trim().is_empty() => {
                    Some(openefs_operator::desired::OperatorSettings::new(image))
                }
                (false, _) => bail!("--nfsd-image must name a container image"),
            };
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).context("--log")?)
                .init();
            let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            runtime.block_on(async {
                let client = client(kubeconfig)
                    .await
                    .context("Kubernetes client configuration")?;
                let listener = tokio::net::TcpListener::bind(http_address)
                    .await
                    .with_context(|| format!("binding --http-address {http_address}"))?;
                tracing::info!(address = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
                let metrics = std::sync::Arc::new(openefs_operator::metrics::Metrics::default());
                let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
                let http = tokio::spawn(openefs_operator::metrics::serve(
                    listener,
                    metrics.clone(),
                    async {
                        let _ = stopped.await;
                    },
                ));
                let stopped = openefs_operator::run(
                    client,
                    openefs_operator::Config {
                        cluster_domain,
                        namespace,
                        core_objects,
                        leader_election,
                    },
                    metrics,
                )
                .await;
                let _ = stop_http.send(());
                http.await
                    .context("the HTTP endpoint task")?
                    .context("serving the HTTP endpoint")?;
                match stopped {
                    openefs_operator::Stopped::Signal => Ok(()),
                    // A non-zero exit: the pod restarts and campaigns again.
                    openefs_operator::Stopped::LostLeadership(why) => bail!(why),
                }
            })
        }
    }
}

/// `<host name>-<pid>`: unique enough outside Kubernetes, where POD_NAME
/// is not set.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

fn print_crds() -> Result<()> {
    let mut out = std::io::stdout().lock();
    for crd in openefs_crds::crds() {
        writeln!(out, "---\n{}", openefs_crds::render_yaml(&crd))
            .context("writing CRDs to stdout")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_domain_must_be_a_dns_name() {
        assert!(dns_name("cluster.local").is_ok());
        assert!(dns_name("k8s-1.example").is_ok());
        for bad in ["", "Cluster.local", "a..b", "-a.b", "a_b", ".local"] {
            assert!(dns_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn run_needs_an_nfsd_image_unless_only_custom_resources() {
        let err = Cli::try_parse_from(["openefs-operator", "run"]).unwrap_err();
        assert!(err.to_string().contains("--nfsd-image"), "{err}");
        assert!(
            Cli::try_parse_from(["openefs-operator", "run", "--only-custom-resources"]).is_ok()
        );
        let blank = Cli::try_parse_from(["openefs-operator", "run", "--nfsd-image", " "]).unwrap();
        let err = main_with(blank).unwrap_err().to_string();
        assert!(err.contains("--nfsd-image"), "{err}");
    }
}
