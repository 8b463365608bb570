//! The stored-bytes ledger across restarts: the vfs keeps the figures
//! current (`openefs_vfs::usage`); this records them in the state directory
//! and says which must be measured again after a start.
//!
//! The record says whether the server that wrote it stopped cleanly. A
//! starting server trusts the figures of a clean record and at once rewrites
//! it as unclean, so that a crash from then on is seen. Figures missing
//! from a trusted record (an access point new since), and every figure after
//! an unclean stop, are unknown to the vfs and get measured by a
//! reconciliation walk (see `server::throughput_upkeep`).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use openefs_vfs::{Usage, Vfs};
use serde::{Deserialize, Serialize};

/// The record's name in the state directory.
pub const USAGE_FILE: &str = "usage.json";
const USAGE_VERSION: u32 = 1;

#[derive(Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    version: u32,
    /// Written at a clean shutdown: the figures were current.
    pub clean: bool,
    /// The file system's metered bytes, if known when written.
    pub stored_bytes: Option<u64>,
    /// By access point id, those known when written.
    pub access_points: BTreeMap<String, u64>,
}

impl UsageRecord {
    /// The known figures of `usage`.
    pub fn of(usage: &Usage, clean: bool) -> Self {
        Self {
            version: USAGE_VERSION,
            clean,
            stored_bytes: usage.known.then_some(usage.stored_bytes),
            access_points: usage
                .access_points
                .iter()
                .filter(|ap| ap.known)
                .map(|ap| (ap.id.clone(), ap.stored_bytes))
                .collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UsageRecordError {
    #[error("reading the usage record {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("parsing the usage record {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("usage record {path} has version {found}, this server knows {USAGE_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("writing the usage record in {dir}: {source}")]
    Write { dir: PathBuf, source: io::Error },
}

/// The record in `dir`; `None` when there is none (a new file system, or
/// one from before usage was recorded).
pub fn load(dir: &Path) -> Result<Option<UsageRecord>, UsageRecordError> {
    let path = dir.join(USAGE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(UsageRecordError::Read { path, source }),
    };
    let record: UsageRecord =
        serde_json::from_slice(&bytes).map_err(|source| UsageRecordError::Parse {
            path: path.clone(),
            source,
        })?;
    if record.version != USAGE_VERSION {
        return Err(UsageRecordError::Version {
            path,
            found: record.version,
        });
    }
    Ok(Some(record))
}

pub fn save(dir: &Path, record: &UsageRecord) -> Result<(), UsageRecordError> {
    let write_err = |source| UsageRecordError::Write {
        dir: dir.to_owned(),
        source,
    };
    let json = serde_json::to_vec(record).map_err(|e| write_err(io::Error::other(e)))?;
    crate::stable::replace_file(dir, USAGE_FILE, &json).map_err(write_err)
}

/// At start: hands the figures of a clean record in `dir` to `vfs` and
/// marks the record unclean until the next clean shutdown. Whatever is not
/// restored stays unknown, to be measured.
pub fn restore(dir: &Path, vfs: &dyn Vfs) {
    match load(dir) {
        Ok(Some(record)) if record.clean => {
            let aps: Vec<(String, u64)> = record.access_points.into_iter().collect();
            vfs.restore_usage(record.stored_bytes, &aps);
            let usage = vfs.usage();
            let missing = usage.access_points.iter().filter(|ap| !ap.known).count();
            tracing::info!(
                stored_bytes = usage.stored_bytes,
                access_points = aps.len(),
                to_measure = missing + usize::from(!usage.known),
                "stored bytes restored from the clean shutdown's record"
            );
        }
        Ok(Some(_)) => {
            tracing::warn!("the last stop was not clean: stored bytes will be measured again")
        }
        Ok(None) => tracing::info!("no usage record: stored bytes will be measured"),
        Err(e) => {
            tracing::warn!(error = %e, "usage record unusable: stored bytes will be measured")
        }
    }
    if let Err(e) = save(dir, &UsageRecord::of(&vfs.usage(), false)) {
        tracing::warn!(error = %e, "cannot mark the usage record as in use");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openefs_vfs::ApUsage;

    #[test]
    fn only_known_figures_are_recorded_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let usage = Usage {
            stored_bytes: 8192,
            known: true,
            access_points: vec![
                ApUsage {
                    id: "a".into(),
                    stored_bytes: 6144,
                    known: true,
                    max_bytes: None,
                },
                ApUsage {
                    id: "b".into(),
                    stored_bytes: 1,
                    known: false,
                    max_bytes: Some(1),
                },
            ],
        };
        let record = UsageRecord::of(&usage, true);
        save(dir.path(), &record).unwrap();
        let back = load(dir.path()).unwrap().unwrap();
        assert_eq!(back, record);
        assert_eq!(back.stored_bytes, Some(8192));
        assert_eq!(back.access_points, BTreeMap::from([("a".to_owned(), 6144)]));
        std::fs::write(dir.path().join(USAGE_FILE), r#"{"version": 9}"#).unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(UsageRecordError::Parse { .. } | UsageRecordError::Version { .. })
        ));
    }
}
