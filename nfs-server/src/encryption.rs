//! Encryption at rest, key management: the file system's data key (DEK)
//! and the key-encryption key (KEK) that wraps it (envelope encryption).
//!
//! The DEK is generated here on the first start, handed to the vfs (which
//! encrypts file contents with it) and stored only wrapped, in
//! [`KEY_RECORD_FILE`] in the state directory. The KEK comes from a file
//! (a mounted Kubernetes Secret; wrapping is AES-256-GCM) or from a
//! Kubernetes KMS v2 plugin (its Encrypt/Decrypt). Rotating the KEK
//! re-wraps the DEK ([`DataKeys::rewrap`]); file data is not touched.
//! A record that cannot be unwrapped stops the start ([`DataKeys::open`]
//! fails): nothing is served rather than garbage, and nothing is written
//! unencrypted.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use openefs_kms::{KmsClient, KmsError};
use openefs_vfs::ContentKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::stable::{Record, RecordError, load_record, save_record};

/// The wrapped data key's file in the state directory.
pub const KEY_RECORD_FILE: &str = "data-key.json";
/// How file contents are encrypted (the vfs's construction).
pub const ALGORITHM: &str = "AES-256-XTS";
/// Where Kubernetes takes a container's termination message from (its
/// default `terminationMessagePath`).
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// Bytes in a KEK file: one AES-256 key.
pub const KEK_LEN: usize = 32;
const RECORD_VERSION: u32 = 1;
const NONCE_LEN: usize = 12;

/// Where the KEK comes from, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// A file of exactly [`KEK_LEN`] bytes (a Secret's key mounted as a
    /// file), read again whenever it is needed: a changed file is a rotation.
    Secret { kek_file: PathBuf },
    /// A Kubernetes KMS v2 plugin listening on this unix socket.
    Kms { socket: PathBuf },
}

/// `--kek-file` or `--kms-endpoint`, and `--previous-kek-file`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionSettings {
    pub source: KeySource,
    /// A KEK the stored record may still be wrapped with (after the
    /// Secret or its key changed); the DEK is re-wrapped with the current
    /// source at start.
    pub previous_kek_file: Option<PathBuf>,
}

/// The kind of key source, as the record and the admin API name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Secret,
    Kms,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Kms => "kms",
        }
    }
}

/// [`KEY_RECORD_FILE`]: the DEK wrapped by a KEK, and which KEK. Holds no
/// key in the clear, so the operator may keep a copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub version: u32,
    pub algorithm: String,
    pub key_source: SourceKind,
    /// "sha256:<16 hex>" of a Secret KEK ([`kek_id`]), or the KMS key_id.
    pub wrapping_key_id: String,
    /// Base64: for "secret" the GCM nonce followed by the ciphertext and
    /// tag; for "kms" the plugin's ciphertext.
    pub wrapped: String,
    /// The KMS plugin's annotations (values base64), given back on Decrypt.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kms_annotations: BTreeMap<String, String>,
    /// RFC 3339.
    pub wrapped_at: String,
}

impl Record for KeyRecord {
    const FILE: &'static str = KEY_RECORD_FILE;
    const WHAT: &'static str = "data key record";
    const VERSION: u32 = RECORD_VERSION;
    fn version(&self) -> u32 {
        self.version
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("creating the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading KEK file {path}: {source}")]
    ReadKek {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("KEK file {path} holds {len} bytes, a KEK is exactly {KEK_LEN}")]
    KekLength { path: PathBuf, len: usize },
    #[error(transparent)]
    Kms(#[from] KmsError),
    #[error(
        "no data key record in {state_dir}, but the export {export} already holds data ({entry}), \
         which may be unencrypted: refusing to start encrypting over it"
    )]
    ExportHasData {
        state_dir: PathBuf,
        export: PathBuf,
        entry: PathBuf,
    },
    #[error("looking for data in the export, at {path}: {source}")]
    ScanExport {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the data key record in {state_dir} is for {found}, this server encrypts with {ALGORITHM}"
    )]
    Algorithm { state_dir: PathBuf, found: String },
    #[error(
        "cannot unwrap the data key in {state_dir}: it is wrapped by {record_source} key {record_key_id}, \
         the configured key is {configured}: {reason}"
    )]
    Unwrap {
        state_dir: PathBuf,
        record_source: &'static str,
        record_key_id: String,
        configured: String,
        reason: String,
    },
}

/// The id of a Secret KEK: a fingerprint that names it without revealing it.
pub fn kek_id(kek: &[u8; KEK_LEN]) -> String {
    let digest = Sha256::new()
        .chain_update(b"openefs kek id")
        .chain_update(kek)
        .finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

struct Kek {
    key: Zeroizing<[u8; KEK_LEN]>,
    id: String,
}

fn read_kek(path: &Path) -> Result<Kek, KeyError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::ReadKek {
        path: path.to_owned(),
        source,
    })?);
    let key: [u8; KEK_LEN] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::KekLength {
            path: path.to_owned(),
            len: bytes.len(),
        })?;
    let id = kek_id(&key);
    Ok(Kek {
        key: Zeroizing::new(key),
        id,
    })
}

/// Binds a Secret-wrapped key to the record's version and algorithm.
fn associated_data() -> String {
    format!("openefs data key record v{RECORD_VERSION} {ALGORITHM}")
}

fn seal(kek: &Kek, dek: &[u8; ContentKey::LEN]) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let aad = associated_data();
    let sealed = Aes256Gcm::new(kek.key.as_slice().into())
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: dek,
                aad: aad.as_bytes(),
            },
        )
        // GCM refuses only inputs beyond 64 GiB; this is 64 bytes.
        .expect("AES-GCM seals a data key");
    [nonce.as_slice(), &sealed].concat()
}

fn open_sealed(kek: &Kek, wrapped: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (nonce, sealed) = wrapped.split_at_checked(NONCE_LEN)?;
    let aad = associated_data();
    Aes256Gcm::new(kek.key.as_slice().into())
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: aad.as_bytes(),
            },
        )
        .ok()
        .map(Zeroizing::new)
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl KeySource {
    pub fn kind(&self) -> SourceKind {
        match self {
            Self::Secret { .. } => SourceKind::Secret,
            Self::Kms { .. } => SourceKind::Kms,
        }
    }

    /// The id of the KEK the source offers now: the fingerprint of the
    /// file's key, or the plugin's Status key_id.
    pub async fn current_key_id(&self) -> Result<String, KeyError> {
        match self {
            Self::Secret { kek_file } => {
                let path = kek_file.clone();
                blocking(move || read_kek(&path).map(|k| k.id)).await
            }
            Self::Kms { socket } => Ok(KmsClient::new(socket.clone()).current_key_id().await?),
        }
    }

    /// `dek` wrapped by the source's current KEK.
    async fn wrap(&self, dek: &[u8; ContentKey::LEN]) -> Result<KeyRecord, KeyError> {
        let (wrapping_key_id, wrapped, kms_annotations) = match self {
            Self::Secret { kek_file } => {
                let path = kek_file.clone();
                let kek = blocking(move || read_kek(&path)).await?;
                (kek.id.clone(), seal(&kek, dek), BTreeMap::new())
            }
            Self::Kms { socket } => {
                let sealed = KmsClient::new(socket.clone()).encrypt(dek).await?;
                let annotations = sealed
                    .annotations
                    .into_iter()
                    .map(|(k, v)| (k, BASE64.encode(v)))
                    .collect();
                (sealed.key_id, sealed.ciphertext, annotations)
            }
        };
        Ok(KeyRecord {
            version: RECORD_VERSION,
            algorithm: ALGORITHM.to_owned(),
            key_source: self.kind(),
            wrapping_key_id,
            wrapped: BASE64.encode(wrapped),
            kms_annotations,
            wrapped_at: now_rfc3339(),
        })
    }

    /// What the source is and offers, for an error message.
    async fn describe(&self) -> String {
        let id = match self.current_key_id().await {
            Ok(id) => id,
            Err(e) => format!("unavailable: {e}"),
        };
        match self {
            Self::Secret { kek_file } => format!("{id} (KEK file {})", kek_file.display()),
            Self::Kms { socket } => format!("{id} (KMS plugin at {})", socket.display()),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KeyError> + Send + 'static,
) -> Result<T, KeyError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// The first non-directory under `export` (outside `state_dir`), if any:
/// a file system that holds one has data that was not written encrypted.
/// Empty directories (`lost+found`, access point roots) are no data.
pub fn find_user_data(export: &Path, state_dir: &Path) -> Result<Option<PathBuf>, KeyError> {
    let state_dir = state_dir.canonicalize().ok();
    let mut pending = vec![export.to_owned()];
    while let Some(dir) = pending.pop() {
        let scan_err = |source| KeyError::ScanExport {
            path: dir.clone(),
            source,
        };
        for entry in std::fs::read_dir(&dir).map_err(scan_err)? {
            let entry = entry.map_err(scan_err)?;
            let path = entry.path();
            // Not following symlinks: a link is an entry of its own.
            if !entry.file_type().map_err(scan_err)?.is_dir() {
                return Ok(Some(path));
            }
            if state_dir.is_some() && path.canonicalize().ok() == state_dir {
                continue;
            }
            pending.push(path);
        }
    }
    Ok(None)
}

/// The data key, held in memory for the vfs, and the record that stores it
/// wrapped.
pub struct DataKeys {
    source: KeySource,
    state_dir: PathBuf,
    key: ContentKey,
    /// Also serialises re-wraps, so the file and this copy agree.
    record: tokio::sync::Mutex<KeyRecord>,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeys")
            .field("source", &self.source)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

impl DataKeys {
    /// The data key of the file system whose records are in `state_dir`:
    /// unwrapped from its record, or on the first start (no record)
    /// generated, wrapped and stored, unless `export` already holds data.
    /// A record wrapped by another KEK than the source's current one
    /// (`previous_kek_file`, or a rotation at the KMS) is re-wrapped.
    pub async fn open(
        settings: &EncryptionSettings,
        state_dir: &Path,
        export: &Path,
    ) -> Result<Self, KeyError> {
        let source = settings.source.clone();
        let dir = state_dir.to_owned();
        let stored = blocking(move || Ok(load_record::<KeyRecord>(&dir)?)).await?;
        let Some(record) = stored else {
            return Self::first_start(source, state_dir, export).await;
        };
        if record.algorithm != ALGORITHM {
            return Err(KeyError::Algorithm {
                state_dir: state_dir.to_owned(),
                found: record.algorithm,
            });
        }
        let key = unwrap_data_key(&record, settings, state_dir).await?;
        let keys = Self {
            source,
            state_dir: state_dir.to_owned(),
            key,
            record: tokio::sync::Mutex::new(record.clone()),
        };
        match keys.source.current_key_id().await {
            Ok(current)
                if current == record.wrapping_key_id && record.key_source == keys.source.kind() => {
            }
            Ok(current) => match keys.rewrap().await {
                Ok(_) => info!(
                    from = %record.wrapping_key_id,
                    to = %current,
                    "encryption at rest: data key re-wrapped with the current KEK"
                ),
                Err(e) => warn!(
                    error = %e,
                    key_id = %record.wrapping_key_id,
                    "encryption at rest: the data key stays wrapped by the KEK it was unwrapped with"
                ),
            },
            Err(e) => warn!(error = %e, "encryption at rest: the current KEK cannot be read"),
        }
        let record = keys.record().await;
        info!(
            algorithm = ALGORITHM,
            key_source = record.key_source.name(),
            key_id = %record.wrapping_key_id,
            "encryption at rest: data key unwrapped"
        );
        Ok(keys)
    }

    async fn first_start(
        source: KeySource,
        state_dir: &Path,
        export: &Path,
    ) -> Result<Self, KeyError> {
        let (dir, root) = (state_dir.to_owned(), export.to_owned());
        if let Some(entry) = blocking(move || find_user_data(&root, &dir)).await? {
            return Err(KeyError::ExportHasData {
                state_dir: state_dir.to_owned(),
                export: export.to_owned(),
                entry,
            });
        }
        let dek = Zeroizing::new(rand::random::<[u8; ContentKey::LEN]>());
        let record = source.wrap(&dek).await?;
        store(state_dir, &record).await?;
        info!(
            algorithm = ALGORITHM,
            key_source = record.key_source.name(),
            key_id = %record.wrapping_key_id,
            "encryption at rest: new data key generated and stored wrapped"
        );
        Ok(Self {
            source,
            state_dir: state_dir.to_owned(),
            key: ContentKey::from_bytes(&dek),
            record: tokio::sync::Mutex::new(record),
        })
    }

    /// The data key, for the vfs.
    pub fn content_key(&self) -> ContentKey {
        self.key.clone()
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// The stored record as it is now.
    pub async fn record(&self) -> KeyRecord {
        self.record.lock().await.clone()
    }

    /// Wraps the data key with the source's current KEK and stores it; on
    /// an error the stored record is unchanged. The new record.
    pub async fn rewrap(&self) -> Result<KeyRecord, KeyError> {
        let mut record = self.record.lock().await;
        let new = self.source.wrap(self.key.as_bytes()).await?;
        store(&self.state_dir, &new).await?;
        *record = new.clone();
        Ok(new)
    }
}

async fn store(state_dir: &Path, record: &KeyRecord) -> Result<(), KeyError> {
    let (dir, record) = (state_dir.to_owned(), record.clone());
    blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|source| KeyError::StateDir {
            path: dir.clone(),
            source,
        })?;
        Ok(save_record(&dir, &record)?)
    })
    .await
}

/// The data key in `record`, unwrapped with the configured source (or the
/// previous KEK file). Every failure is one [`KeyError::Unwrap`] that names
/// the record's key and the configured one.
pub async fn unwrap_data_key(
    record: &KeyRecord,
    settings: &EncryptionSettings,
    state_dir: &Path,
) -> Result<ContentKey, KeyError> {
    let failed = async |reason: String| {
        let mut configured = settings.source.describe().await;
        if let Some(previous) = &settings.previous_kek_file {
            let id = match read_kek(previous) {
                Ok(k) => k.id,
                Err(e) => format!("unavailable: {e}"),
            };
            configured.push_str(&format!(
                ", previous {id} (KEK file {})",
                previous.display()
            ));
        }
        KeyError::Unwrap {
            state_dir: state_dir.to_owned(),
            record_source: record.key_source.name(),
            record_key_id: record.wrapping_key_id.clone(),
            configured,
            reason,
        }
    };
    let Ok(wrapped) = BASE64.decode(&record.wrapped) else {
        return Err(failed("the wrapped key is not base64 (damaged record)".into()).await);
    };
    let plain = match (record.key_source, &settings.source) {
        (SourceKind::Secret, source) => {
            let current = match source {
                KeySource::Secret { kek_file } => Some(kek_file),
                KeySource::Kms { .. } => None,
            };
            let wanted = record.wrapping_key_id.clone();
            let paths: Vec<PathBuf> = current
                .into_iter()
                .chain(&settings.previous_kek_file)
                .cloned()
                .collect();
            let kek = blocking(move || {
                Ok(paths
                    .iter()
                    .filter_map(|path| read_kek(path).ok())
                    .find(|kek| kek.id == wanted))
            })
            .await?;
            let Some(kek) = kek else {
                return Err(failed("no configured KEK has that id".into()).await);
            };
            match open_sealed(&kek, &wrapped) {
                Some(plain) => plain,
                None => {
                    return Err(failed(
                        "the KEK does not authenticate the wrapped key (damaged record)".into(),
                    )
                    .await);
                }
            }
        }
        (SourceKind::Kms, KeySource::Kms { socket }) => {
            let mut annotations = HashMap::new();
            for (k, v) in &record.kms_annotations {
                let Ok(v) = BASE64.decode(v) else {
                    return Err(failed(format!(
                        "KMS annotation {k:?} is not base64 (damaged record)"
                    ))
                    .await);
                };
                annotations.insert(k.clone(), v);
            }
            match KmsClient::new(socket.clone())
                .decrypt(&wrapped, &record.wrapping_key_id, annotations)
                .await
            {
                Ok(plain) => plain,
                Err(e) => return Err(failed(e.to_string()).await),
            }
        }
        (SourceKind::Kms, KeySource::Secret { .. }) => {
            return Err(failed(
                "a KMS-wrapped key needs --kms-endpoint of the plugin that wrapped it".into(),
            )
            .await);
        }
    };
    let Ok(key) = <&[u8; ContentKey::LEN]>::try_from(plain.as_slice()) else {
        return Err(failed(format!(
            "the unwrapped key has {} bytes, not {}",
            plain.len(),
            ContentKey::LEN
        ))
        .await);
    };
    Ok(ContentKey::from_bytes(key))
}

/// Writes `message` as the container's termination message when `path`
/// exists and is writable (in a Kubernetes container it does), so the
/// operator can show why nfsd did not start.
pub fn write_termination_message(path: &Path, message: &str) {
    use std::io::Write;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(message.as_bytes()));
    if let Err(e) = written {
        tracing::debug!(path = %path.display(), error = %e, "no termination message written");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kek_ids_are_stable_fingerprints() {
        let id = kek_id(&[7; KEK_LEN]);
        assert_eq!(id.len(), "sha256:".len() + 16);
        assert!(id.starts_with("sha256:"));
        assert_eq!(id, kek_id(&[7; KEK_LEN]));
        assert_ne!(id, kek_id(&[8; KEK_LEN]));
        // Not the plain digest of the key, which would be a known hash of it.
        let plain: String = Sha256::digest([7; KEK_LEN])[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(id, format!("sha256:{plain}"));
    }

    #[test]
    fn sealing_binds_the_key_and_the_record_format() {
        let kek = Kek {
            key: Zeroizing::new([1; KEK_LEN]),
            id: kek_id(&[1; KEK_LEN]),
        };
        let dek = [9; ContentKey::LEN];
        let wrapped = seal(&kek, &dek);
        assert_eq!(wrapped.len(), NONCE_LEN + ContentKey::LEN + 16);
        assert!(!wrapped.windows(16).any(|w| w == [9; 16]));
        assert_eq!(open_sealed(&kek, &wrapped).as_deref(), Some(&dek.to_vec()));
        // Two wraps of one key differ (random nonce).
        assert_ne!(seal(&kek, &dek), wrapped);
        let other = Kek {
            key: Zeroizing::new([2; KEK_LEN]),
            id: kek_id(&[2; KEK_LEN]),
        };
        assert!(open_sealed(&other, &wrapped).is_none());
        let mut damaged = wrapped.clone();
        damaged[NONCE_LEN] ^= 1;
        assert!(open_sealed(&kek, &damaged).is_none());
        assert!(open_sealed(&kek, &wrapped[..5]).is_none());
    }

    #[test]
    fn the_record_reads_back_and_refuses_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let record = KeyRecord {
            version: RECORD_VERSION,
            algorithm: ALGORITHM.into(),
            key_source: SourceKind::Kms,
            wrapping_key_id: "k1".into(),
            wrapped: BASE64.encode([1, 2, 3]),
            kms_annotations: BTreeMap::from([("a.example.com".into(), BASE64.encode(b"x"))]),
            wrapped_at: now_rfc3339(),
        };
        save_record(dir.path(), &record).unwrap();
        assert!(!dir.path().join(format!("{KEY_RECORD_FILE}.tmp")).exists());
        assert_eq!(load_record(dir.path()).unwrap(), Some(record.clone()));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(KEY_RECORD_FILE)).unwrap())
                .unwrap();
        assert_eq!(json["key_source"], "kms");
        assert_eq!(json["algorithm"], "AES-256-XTS");
        assert!(humantime::parse_rfc3339(json["wrapped_at"].as_str().unwrap()).is_ok());
        std::fs::write(
            dir.path().join(KEY_RECORD_FILE),
            br#"{"version":1,"algorithm":"AES-256-XTS","key_source":"secret","wrapping_key_id":"x",
                "wrapped":"","wrapped_at":"2026-01-01T00:00:00Z","plaintext_key":"oops"}"#,
        )
        .unwrap();
        assert!(matches!(
            load_record::<KeyRecord>(dir.path()),
            Err(RecordError::Parse { .. })
        ));
        let newer = KeyRecord {
            version: 2,
            ..record
        };
        save_record(dir.path(), &newer).unwrap();
        assert!(matches!(
            load_record::<KeyRecord>(dir.path()),
            Err(RecordError::Version { found: 2, .. })
        ));
    }

    #[test]
    fn only_directories_are_no_user_data() {
        let export = tempfile::tempdir().unwrap();
        let state = export.path().join("state");
        std::fs::create_dir_all(export.path().join("lost+found")).unwrap();
        std::fs::create_dir_all(export.path().join("teams/a/b")).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("clients.json"), b"{}").unwrap();
        assert_eq!(find_user_data(export.path(), &state).unwrap(), None);
        std::os::unix::fs::symlink("x", export.path().join("teams/a/link")).unwrap();
        assert_eq!(
            find_user_data(export.path(), &state).unwrap(),
            Some(export.path().join("teams/a/link"))
        );
        std::fs::remove_file(export.path().join("teams/a/link")).unwrap();
        std::fs::write(export.path().join("teams/a/b/empty"), b"").unwrap();
        assert_eq!(
            find_user_data(export.path(), &state).unwrap(),
            Some(export.path().join("teams/a/b/empty"))
        );
    }

    #[test]
    fn the_termination_message_goes_only_to_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("termination-log");
        write_termination_message(&log, "absent");
        assert!(!log.exists());
        std::fs::write(&log, "an older, longer message").unwrap();
        write_termination_message(&log, "why");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "why");
    }
}
