//! Stable client records (RFC 8881 §8.4.2.1, §8.4.3): what a restarted
//! server needs to let clients reclaim their opens and locks, kept in a
//! state directory on the same volume as the export, so a server pod
//! rescheduled onto another node with that volume knows them too.
//!
//! One small JSON file, `clients.json`: the server's identity (the
//! `server_owner` major id and `server_scope` of EXCHANGE_ID, which must not
//! change across restarts or the Linux client does not reclaim) and the
//! owners of clients that may hold state. Each change rewrites the file
//! crash-safely ([`replace_file`]). A client is recorded before its first OPEN
//! succeeds, and forgotten on DESTROY_CLIENTID, on lease expiry, and when a
//! grace period ends without it coming back.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// The record file's name inside the state directory.
pub const RECORDS_FILE: &str = "clients.json";
/// Bumped when the file's meaning changes; an unknown version is refused
/// rather than misread.
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StableError {
    #[error("creating state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading client records {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing client records {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("client records {path} have version {found}, this server knows {VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("writing client records {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Records {
    version: u32,
    /// `server_owner.so_major_id` and `server_scope`.
    server_id: Vec<u8>,
    /// `client_owner4.co_ownerid` of every client that may hold state.
    clients: BTreeSet<Vec<u8>>,
}

/// The records on disk and their copy in memory; every change is durable
/// before the call returns.
#[derive(Debug)]
pub struct StableStore {
    dir: PathBuf,
    /// The owners recorded when the store was opened: the previous server
    /// instance's clients, which may reclaim.
    previous: Vec<Vec<u8>>,
    records: Mutex<Records>,
}

impl StableStore {
    /// Opens the records in `dir` (created if missing); a first start
    /// creates them with a new random server identity.
    pub fn open(dir: &Path) -> Result<Self, StableError> {
        std::fs::create_dir_all(dir).map_err(|source| StableError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(RECORDS_FILE);
        let existing = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(StableError::Read { path, source }),
        };
        let store = match existing {
            Some(bytes) => {
                let records: Records =
                    serde_json::from_slice(&bytes).map_err(|source| StableError::Parse {
                        path: path.clone(),
                        source,
                    })?;
                if records.version != VERSION {
                    return Err(StableError::Version {
                        path,
                        found: records.version,
                    });
                }
                Self {
                    dir: dir.to_owned(),
                    previous: records.clients.iter().cloned().collect(),
                    records: Mutex::new(records),
                }
            }
            None => {
                let records = Records {
                    version: VERSION,
                    server_id: rand::random::<[u8; 16]>().to_vec(),
                    clients: BTreeSet::new(),
                };
                let store = Self {
                    dir: dir.to_owned(),
                    previous: Vec::new(),
                    records: Mutex::new(records.clone()),
                };
                store.persist(&records)?;
                store
            }
        };
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Records> {
        // Each change is applied in memory only after it is on disk, so a
        // panic while holding the lock leaves nothing inconsistent.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn server_id(&self) -> Vec<u8> {
        self.lock().server_id.clone()
    }

    /// The clients the previous server instance had recorded.
    pub fn previous_clients(&self) -> &[Vec<u8>] {
        &self.previous
    }

    /// The clients recorded now.
    pub fn clients(&self) -> Vec<Vec<u8>> {
        self.lock().clients.iter().cloned().collect()
    }

    /// Records `owner` (no write when it already is).
    pub fn add(&self, owner: &[u8]) -> Result<(), StableError> {
        let mut records = self.lock();
        if records.clients.contains(owner) {
            return Ok(());
        }
        let mut next = records.clone();
        next.clients.insert(owner.to_vec());
        self.persist(&next)?;
        *records = next;
        Ok(())
    }

    /// Forgets `owners` (no write when none is recorded).
    pub fn remove(&self, owners: &[Vec<u8>]) -> Result<(), StableError> {
        let mut records = self.lock();
        if !owners.iter().any(|o| records.clients.contains(o)) {
            return Ok(());
        }
        let mut next = records.clone();
        for o in owners {
            next.clients.remove(o);
        }
        self.persist(&next)?;
        *records = next;
        Ok(())
    }

    /// The state directory, where other records (burst credits) live too.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn persist(&self, records: &Records) -> Result<(), StableError> {
        let write_err = |source| StableError::Write {
            path: self.dir.join(RECORDS_FILE),
            source,
        };
        // Serialising owned plain data cannot fail.
        let json =
            serde_json::to_vec_pretty(records).map_err(|e| write_err(std::io::Error::other(e)))?;
        replace_file(&self.dir, RECORDS_FILE, &json).map_err(write_err)
    }
}

/// A small versioned JSON record of its own in the state directory (burst
/// credits, the usage ledger), read with [`load_record`] and written with
/// [`save_record`].
pub trait Record: Serialize + serde::de::DeserializeOwned {
    /// File name in the state directory.
    const FILE: &'static str;
    /// What it is, for messages.
    const WHAT: &'static str;
    /// The version this server writes and reads.
    const VERSION: u32;
    fn version(&self) -> u32;
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("reading {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {what} {path}: {source}")]
    Parse {
        what: &'static str,
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{what} {path} has version {found}, this server knows {known}")]
    Version {
        what: &'static str,
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error("writing {what} in {dir}: {source}")]
    Write {
        what: &'static str,
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The record in `dir`; `None` when there is none.
pub fn load_record<T: Record>(dir: &Path) -> Result<Option<T>, RecordError> {
    let path = dir.join(T::FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RecordError::Read {
                what: T::WHAT,
                path,
                source,
            });
        }
    };
    let record: T = serde_json::from_slice(&bytes).map_err(|source| RecordError::Parse {
        what: T::WHAT,
        path: path.clone(),
        source,
    })?;
    if record.version() != T::VERSION {
        return Err(RecordError::Version {
            what: T::WHAT,
            path,
            found: record.version(),
            known: T::VERSION,
        });
    }
    Ok(Some(record))
}

/// Replaces the record in `dir` ([`replace_file`]).
pub fn save_record<T: Record>(dir: &Path, record: &T) -> Result<(), RecordError> {
    let write_err = |source| RecordError::Write {
        what: T::WHAT,
        dir: dir.to_owned(),
        source,
    };
    let json = serde_json::to_vec(record).map_err(|e| write_err(std::io::Error::other(e)))?;
    replace_file(dir, T::FILE, &json).map_err(write_err)
}

/// Replaces `dir/name` with `bytes` atomically and durably: after a crash
/// at any point it holds either the old content or the new one. (Write a
/// temporary file, fsync it, rename it over the old one, fsync the
/// directory.)
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopening_and_keep_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = StableStore::open(&state).unwrap();
        assert!(first.previous_clients().is_empty());
        let id = first.server_id();
        assert_eq!(id.len(), 16);
        first.add(b"client-a").unwrap();
        first.add(b"client-b").unwrap();
        first.add(b"client-a").unwrap();
        first
            .remove(&[b"client-b".to_vec(), b"unknown".to_vec()])
            .unwrap();
        drop(first);

        let second = StableStore::open(&state).unwrap();
        assert_eq!(second.server_id(), id);
        assert_eq!(second.previous_clients(), &[b"client-a".to_vec()]);
        second.remove(&[b"client-a".to_vec()]).unwrap();
        // `previous` is what was on disk at open, whatever happens later.
        assert_eq!(second.previous_clients(), &[b"client-a".to_vec()]);
        assert!(second.clients().is_empty());
        assert!(!state.join(format!("{RECORDS_FILE}.tmp")).exists());

        let other = StableStore::open(&dir.path().join("other")).unwrap();
        assert_ne!(other.server_id(), id);
    }

    #[test]
    fn refuses_damaged_or_unknown_records() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RECORDS_FILE), b"{ not json").unwrap();
        assert!(matches!(
            StableStore::open(dir.path()),
            Err(StableError::Parse { .. })
        ));
        std::fs::write(
            dir.path().join(RECORDS_FILE),
            br#"{"version": 99, "server_id": [], "clients": []}"#,
        )
        .unwrap();
        assert!(matches!(
            StableStore::open(dir.path()),
            Err(StableError::Version { found: 99, .. })
        ));
    }
}
