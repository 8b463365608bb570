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
    Run {
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
        /// Address of the HTTP endpoint: /metrics (Prometheus), /healthz
        /// (liveness), /readyz (the watch caches are filled).
        #[arg(long, env = "OPENEFS_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
        http_address: std::net::SocketAddr,
        /// DNS domain of the cluster, used in each FileSystem's endpoint
        /// (`<fileSystemId>.<namespace>.svc.<domain>`).
        #[arg(long, env = "OPENEFS_CLUSTER_DOMAIN", default_value = "cluster.local", value_parser = dns_name)]
        cluster_domain: String,
    },
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
        Command::Run {
            kubeconfig,
            only_custom_resources,
            nfsd_image,
            namespace,
            http_address,
            cluster_domain,
        } => {
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
                openefs_operator::run(
                    client,
                    openefs_operator::Config {
                        cluster_domain,
                        namespace,
                        core_objects,
                    },
                    metrics,
                )
                .await;
                let _ = stop_http.send(());
                http.await
                    .context("the HTTP endpoint task")?
                    .context("serving the HTTP endpoint")?;
                Ok(())
            })
        }
    }
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
