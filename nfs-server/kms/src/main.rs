//! `openefs-kms-plugin`: the reference Kubernetes KMS v2 plugin of openefs.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use openefs_kms::{Plugin, bind, serve, socket_path};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// A Kubernetes KMS v2 plugin (Status, Encrypt, Decrypt over a unix socket)
/// that encrypts with AES-256-GCM under keys kept as files in a directory.
/// SIGHUP re-reads the directory: a new current key is a rotation.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Unix socket to serve on: unix:///path or /path (a stale socket file
    /// there is replaced).
    #[arg(long, env = "OPENEFS_KMS_LISTEN")]
    listen: String,
    /// Directory of key files, 32 bytes each (e.g. a mounted Secret); a
    /// key's id is its file name.
    #[arg(long, env = "OPENEFS_KMS_KEY_DIR")]
    key_dir: PathBuf,
    /// Id of the key Encrypt uses [default: the name in the key directory's
    /// `current` file].
    #[arg(long, env = "OPENEFS_KMS_CURRENT_KEY")]
    current_key: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let socket = socket_path(&args.listen)?;
    let plugin = Arc::new(Plugin::open(args.key_dir, args.current_key)?);
    let listener = bind(&socket)?;
    info!(
        listen = %socket.display(),
        key_id = %plugin.current_key_id(),
        "serving KMS v2"
    );
    let shutdown = CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let signals = {
        let plugin = plugin.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    Some(()) = hangup.recv() => match plugin.reload() {
                        Ok(key_id) => info!(%key_id, "SIGHUP: keys read again"),
                        Err(e) => error!(error = %e, "SIGHUP: keys not read again, the old ones stay"),
                    },
                }
            }
            info!("shutting down");
            shutdown.cancel();
        })
    };
    serve(listener, plugin, shutdown.cancelled_owned()).await?;
    signals.abort();
    // The socket file outlives the listener; the next start replaces it anyway.
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
