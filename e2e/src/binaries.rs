//! The workspace's own binaries, as the e2e tests run them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Result, anyhow};

use crate::apiserver::repo_root;

/// Path of binary `bin` of workspace package `package`, built (debug) once per
/// test process so a test never runs a stale binary.
///
/// `OPENEFS_<BIN>` (the binary's name upper-cased, `-` → `_`, without the
/// `openefs-` prefix; e.g. `OPENEFS_NFSD`) names a prebuilt binary instead.
pub fn workspace_binary(package: &str, bin: &str) -> Result<PathBuf> {
    let var = format!(
        "OPENEFS_{}",
        bin.trim_start_matches("openefs-")
            .to_uppercase()
            .replace('-', "_")
    );
    if let Some(path) = std::env::var_os(&var) {
        return Ok(PathBuf::from(path));
    }
    static BUILT: Mutex<Option<HashMap<String, Result<PathBuf, String>>>> = Mutex::new(None);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    built
        .get_or_insert_with(HashMap::new)
        .entry(bin.to_string())
        .or_insert_with(|| build(package, bin))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn build(package: &str, bin: &str) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-q", "-p", package, "--bin", bin])
        .current_dir(repo_root())
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build -p {package} --bin {bin}: {status}"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    Ok(target.join("debug").join(bin))
}
