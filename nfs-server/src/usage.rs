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
use std::path::Path;

use openefs_vfs::{Usage, Vfs};
use serde::{Deserialize, Serialize};

use crate::stable::{Record, RecordError, load_record, save_record};

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

impl Record for UsageRecord {
    const FILE: &'static str = USAGE_FILE;
    const WHAT: &'static str = "the usage record";
    const VERSION: u32 = USAGE_VERSION;
    fn version(&self) -> u32 {
        self.version
    }
}

/// The record in `dir`; `None` when there is none (a new file system, or
/// one from before usage was recorded).
pub fn load(dir: &Path) -> Result<Option<UsageRecord>, RecordError> {
    load_record(dir)
}

pub fn save(dir: &Path, record: &UsageRecord) -> Result<(), RecordError> {
    save_record(dir, record)
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
            Err(RecordError::Parse { .. } | RecordError::Version { .. })
        ));
    }
}
