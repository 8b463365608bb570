//! `openefs-nfsd`: serves a local directory over NFSv4.1, NFSv4.0 and NFSv3.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use openefs_admin_api::KEY_ERROR_PREFIX;
use openefs_nfsd::config::LogFormat;
use openefs_nfsd::encryption::{DataKeys, TERMINATION_LOG, write_termination_message};
use openefs_nfsd::{Config, ServeArgs};
use openefs_vfs::{LocalVfs, LocalVfsOptions};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

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

/// The data key, when the file system is encrypted. `Err` carries the one
/// line that says why nfsd does not start (the error is already logged and
/// written as the termination message).
async fn open_data_key(config: &Config) -> Result<Option<Arc<DataKeys>>, String> {
    let Some(settings) = &config.encryption else {
        return Ok(None);
    };
    // Config validation requires it; never fall back to serving unencrypted.
    let opened = match &config.state_dir {
        Some(state_dir) => DataKeys::open(settings, state_dir, &config.export)
            .await
            .map_err(|e| e.to_string()),
        None => Err("it needs --state-dir, where the wrapped data key is kept".to_owned()),
    };
    match opened {
        Ok(keys) => Ok(Some(Arc::new(keys))),
        Err(e) => {
            let message = format!("{KEY_ERROR_PREFIX} {e}");
            error!("not serving: {message}");
            write_termination_message(Path::new(TERMINATION_LOG), &message);
            Err(message)
        }
    }
}

/// glibc gives each thread that allocates its own malloc arena, up to 8
/// per core, and each arena keeps freed memory for reuse: with 16 worker
/// threads passing 1 MiB READ and WRITE buffers around, that was ~5 MiB of
/// resident memory doing nothing (peak RSS 19.7 -> 14.4 MiB with one
/// arena per core, same IOPS: docs/benchmarks.md). A `MALLOC_ARENA_MAX`
/// set by the operator of the machine wins.
fn limit_malloc_arenas(cores: usize) {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets an allocator parameter; it is called
        // before the runtime starts any other thread.
        if unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) } != 1 {
            tracing::warn!(arenas, "could not limit the malloc arenas");
        }
    }
    #[cfg(not(target_env = "gnu"))]
    let _ = cores;
}

fn main() -> anyhow::Result<ExitCode> {
    let Command::Serve(args) = Cli::parse().command;
    let config = args.into_config()?;
    init_tracing(config.log_format);
    raise_open_file_limit();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    limit_malloc_arenas(cores);
    let workers = config.performance_mode.worker_threads(cores);
    info!(
        mode = config.performance_mode.api_name(),
        cores, workers, "starting the runtime"
    );
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("nfsd-worker")
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let Ok(keys) = open_data_key(&config).await else {
        return Ok(ExitCode::FAILURE);
    };
    let options = LocalVfsOptions {
        content_key: keys.as_ref().map(|k| k.content_key()),
        ..Default::default()
    };
    let vfs = LocalVfs::with_options(&config.export, options)
        .with_context(|| format!("opening export {}", config.export.display()))?;
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(cancel_on_signal(shutdown.clone()));
    openefs_nfsd::run_with_keys(config, Arc::new(vfs), keys, shutdown).await?;
    signals.abort();
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}
