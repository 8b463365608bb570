//! Writes the openefs CRDs as YAML, one per file, into `crds/` and the Helm
//! chart's `crds/` folder; with `--check`, compares instead and fails when a
//! file differs, so CI catches a CRD that was not regenerated.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::Parser;

/// Generate (or check) the openefs CustomResourceDefinition YAML files.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Compare the files on disk with the generated CRDs instead of writing
    /// them; exit with status 1 when any differs or is missing.
    #[arg(long)]
    check: bool,

    /// Repository root holding `crds/` and `charts/openefs/crds/`.
    #[arg(long, env = "OPENEFS_REPO_ROOT", default_value_os_t = default_root())]
    root: PathBuf,
}

fn default_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    if args.check {
        let stale = openefs_crds::stale_crd_files(&args.root);
        if stale.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        for path in &stale {
            eprintln!("stale or missing: {}", path.display());
        }
        eprintln!("the CRD YAML is out of date; run `cargo run -p openefs-crds --bin crdgen`");
        return Ok(ExitCode::FAILURE);
    }
    for dir in openefs_crds::crd_dirs(&args.root) {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for crd in openefs_crds::crds() {
            let path = dir.join(openefs_crds::file_name(&crd));
            std::fs::write(&path, openefs_crds::render_yaml(&crd))
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
