//! `openefs-operator`: reconciles openefs `FileSystem` and `AccessPoint`
//! resources into running NFS servers.
//!
//! The reconcilers are not written yet (see the operator issue); today the
//! binary only prints the CRDs it serves, so `kubectl apply` can install them.

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// The openefs operator.
///
/// It will watch FileSystem and AccessPoint resources and run an
/// openefs-nfsd server for each FileSystem. The reconcile loop is not
/// implemented yet; this build can only print the CRDs.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the openefs CustomResourceDefinitions as YAML
    /// (`openefs-operator crds | kubectl apply -f -`).
    Crds,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds => print_crds(),
    }
}

fn print_crds() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for crd in openefs_crds::crds() {
        writeln!(out, "---\n{}", openefs_crds::render_yaml(&crd)).context("writing CRDs to stdout")?;
    }
    Ok(())
}
