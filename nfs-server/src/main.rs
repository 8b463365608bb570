//! `openefs-nfsd`: serves a local directory over NFSv4.1, NFSv4.0 and NFSv3.

use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use openefs_nfsd::ServeArgs;
use openefs_nfsd::config::LogFormat;
use openefs_vfs::LocalVfs;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// The openefs NFS server.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a local directory over NFSv4.1, NFSv4.0 and NFSv3 (with MOUNT v3), on one port.
    Serve(ServeArgs),
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Cancels `token` on the first SIGTERM or SIGINT.
async fn cancel_on_signal(token: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = int.recv() => info!("SIGINT: shutting down"),
    }
    token.cancel();
    Ok(())
}

/// Raises the open-file soft limit to the hard limit: the vfs keeps one
/// descriptor per cached file handle and sizes its cache from this limit.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            ..limit
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!("could not raise the open-file limit: {e}");
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Command::Serve(args) = Cli::parse().command;
    let config = args.into_config()?;
    init_tracing(config.log_format);
    raise_open_file_limit();
    let vfs = LocalVfs::new(&config.export)
        .with_context(|| format!("opening export {}", config.export.display()))?;
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(cancel_on_signal(shutdown.clone()));
    openefs_nfsd::run(config, Arc::new(vfs), shutdown).await?;
    signals.abort();
    info!("stopped");
    Ok(())
}
