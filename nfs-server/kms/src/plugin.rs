//! The reference KMS v2 plugin: AES-256-GCM under keys kept as files in a
//! directory (e.g. a mounted Kubernetes Secret, one key per Secret key).
//! A key's id is its file name; the current key (the one Encrypt uses) is
//! named by `--current-key` or by the directory's `current` file. Old keys
//! stay in the directory so that what they wrapped can still be decrypted.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::v2::key_management_service_server::{KeyManagementService, KeyManagementServiceServer};
use crate::v2::{
    DecryptRequest, DecryptResponse, EncryptRequest, EncryptResponse, StatusRequest, StatusResponse,
};
use crate::{API_VERSION, HEALTHY};

/// Bytes in a key file: one AES-256 key.
pub const KEY_LEN: usize = 32;
/// The file in the key directory naming the current key.
const CURRENT_FILE: &str = "current";
const NONCE_LEN: usize = 12;
/// Larger inputs are refused: KMS v2 callers send keys (Kubernetes' are 32
/// bytes, nfsd's 64), not data.
const MAX_PLAINTEXT: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("reading the key directory {path}: {source}")]
    ReadDir { path: PathBuf, source: io::Error },
    #[error("reading key file {path}: {source}")]
    ReadKey { path: PathBuf, source: io::Error },
    #[error("key file {path} holds {len} bytes, a key is exactly {KEY_LEN}")]
    KeyLength { path: PathBuf, len: usize },
    #[error("key file name {0:?} is not UTF-8 (it is the key id)")]
    KeyName(PathBuf),
    #[error("no current key: give --current-key or write the key's name into {dir}/{CURRENT_FILE}")]
    NoCurrent { dir: PathBuf },
    #[error("the current key {name:?} is not in {dir}")]
    UnknownCurrent { name: String, dir: PathBuf },
    #[error("removing stale socket {path}: {source}")]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error("binding {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("serving KMS v2: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// The keys of one reading of the directory.
struct Keys {
    by_id: BTreeMap<String, Zeroizing<[u8; KEY_LEN]>>,
    current: String,
}

impl Keys {
    fn load(dir: &Path, current_flag: Option<&str>) -> Result<Self, PluginError> {
        let read_dir = |source| PluginError::ReadDir {
            path: dir.to_owned(),
            source,
        };
        let mut by_id = BTreeMap::new();
        let mut current_file = None;
        for entry in std::fs::read_dir(dir).map_err(read_dir)? {
            let entry = entry.map_err(read_dir)?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name
                .to_str()
                .ok_or_else(|| PluginError::KeyName(path.clone()))?;
            // A mounted Secret's own bookkeeping (`..data`, timestamped
            // directories) starts with a dot.
            if name.starts_with('.') {
                continue;
            }
            let read_key = |source| PluginError::ReadKey {
                path: path.clone(),
                source,
            };
            // Follows symlinks: a mounted Secret's keys are links into `..data`.
            if !std::fs::metadata(&path).map_err(read_key)?.is_file() {
                continue;
            }
            let bytes = Zeroizing::new(std::fs::read(&path).map_err(read_key)?);
            if name == CURRENT_FILE {
                current_file = Some(String::from_utf8_lossy(&bytes).trim().to_owned());
                continue;
            }
            let key: [u8; KEY_LEN] =
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| PluginError::KeyLength {
                        path: path.clone(),
                        len: bytes.len(),
                    })?;
            by_id.insert(name.to_owned(), Zeroizing::new(key));
        }
        let current = current_flag
            .map(str::to_owned)
            .or(current_file)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| PluginError::NoCurrent {
                dir: dir.to_owned(),
            })?;
        if !by_id.contains_key(&current) {
            return Err(PluginError::UnknownCurrent {
                name: current,
                dir: dir.to_owned(),
            });
        }
        Ok(Self { by_id, current })
    }

    fn cipher(&self, id: &str) -> Option<Aes256Gcm> {
        self.by_id
            .get(id)
            .map(|key| Aes256Gcm::new(key.as_slice().into()))
    }
}

/// The plugin's state: where its keys come from and the last good reading.
pub struct Plugin {
    dir: PathBuf,
    current_flag: Option<String>,
    keys: RwLock<Arc<Keys>>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("dir", &self.dir)
            .field("current", &self.current_key_id())
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Reads the keys in `dir`; the current key is `current` or, without
    /// it, the name in `dir/current`.
    pub fn open(dir: PathBuf, current: Option<String>) -> Result<Self, PluginError> {
        let keys = Keys::load(&dir, current.as_deref())?;
        Ok(Self {
            dir,
            current_flag: current,
            keys: RwLock::new(Arc::new(keys)),
        })
    }

    /// Reads the directory again (SIGHUP): a new current key is a rotation.
    /// On an error the keys read before stay in use. Returns the current
    /// key's id.
    pub fn reload(&self) -> Result<String, PluginError> {
        let keys = Keys::load(&self.dir, self.current_flag.as_deref())?;
        let current = keys.current.clone();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(current)
    }

    pub fn current_key_id(&self) -> String {
        self.keys().current.clone()
    }

    fn keys(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The key id is the associated data: a ciphertext only opens under the
/// key it names.
fn payload<'a>(msg: &'a [u8], key_id: &'a str) -> Payload<'a, 'a> {
    Payload {
        msg,
        aad: key_id.as_bytes(),
    }
}

#[tonic::async_trait]
impl KeyManagementService for Plugin {
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(StatusResponse {
            version: API_VERSION.to_owned(),
            healthz: HEALTHY.to_owned(),
            key_id: self.current_key_id(),
        }))
    }

    async fn encrypt(
        &self,
        request: Request<EncryptRequest>,
    ) -> Result<Response<EncryptResponse>, Status> {
        let request = request.into_inner();
        let plaintext = Zeroizing::new(request.plaintext);
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(Status::invalid_argument(format!(
                "plaintext of {} bytes, at most {MAX_PLAINTEXT}",
                plaintext.len()
            )));
        }
        let keys = self.keys();
        let cipher = keys
            .cipher(&keys.current)
            .ok_or_else(|| Status::internal("the current key is gone"))?;
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                payload(&plaintext, &keys.current),
            )
            .map_err(|_| Status::internal("AES-GCM encryption failed"))?;
        info!(uid = %request.uid, key_id = %keys.current, "encrypt");
        Ok(Response::new(EncryptResponse {
            ciphertext: [nonce.as_slice(), &sealed].concat(),
            key_id: keys.current.clone(),
            annotations: Default::default(),
        }))
    }

    async fn decrypt(
        &self,
        request: Request<DecryptRequest>,
    ) -> Result<Response<DecryptResponse>, Status> {
        let request = request.into_inner();
        let keys = self.keys();
        let cipher = keys.cipher(&request.key_id).ok_or_else(|| {
            warn!(uid = %request.uid, key_id = %request.key_id, "decrypt: unknown key");
            Status::not_found(format!("no key {:?} in the key directory", request.key_id))
        })?;
        let Some((nonce, sealed)) = request.ciphertext.split_at_checked(NONCE_LEN) else {
            return Err(Status::invalid_argument("ciphertext too short"));
        };
        let plaintext = cipher
            .decrypt(Nonce::from_slice(nonce), payload(sealed, &request.key_id))
            .map_err(|_| {
                warn!(uid = %request.uid, key_id = %request.key_id, "decrypt: ciphertext does not authenticate");
                Status::invalid_argument(format!(
                    "the ciphertext does not authenticate under key {:?}",
                    request.key_id
                ))
            })?;
        info!(uid = %request.uid, key_id = %request.key_id, "decrypt");
        Ok(Response::new(DecryptResponse { plaintext }))
    }
}

/// Binds the socket at `path`, replacing one left by an earlier run.
pub fn bind(path: &Path) -> Result<UnixListener, PluginError> {
    match std::fs::remove_file(path) {
        Ok(()) => info!(path = %path.display(), "removed stale socket"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(PluginError::RemoveStale {
                path: path.to_owned(),
                source,
            });
        }
    }
    UnixListener::bind(path).map_err(|source| PluginError::Bind {
        path: path.to_owned(),
        source,
    })
}

/// Serves KMS v2 on `listener` until `shutdown` completes.
pub async fn serve(
    listener: UnixListener,
    plugin: Arc<Plugin>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), PluginError> {
    tonic::transport::Server::builder()
        .add_service(KeyManagementServiceServer::from_arc(plugin))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k1"), [1u8; KEY_LEN]).unwrap();
        std::fs::write(dir.path().join("k2"), [2u8; KEY_LEN]).unwrap();
        dir
    }

    #[tokio::test]
    async fn round_trip_under_named_keys() {
        let dir = key_dir();
        let plugin = Plugin::open(dir.path().to_owned(), Some("k1".into())).unwrap();
        let sealed = plugin
            .encrypt(Request::new(EncryptRequest {
                plaintext: b"data key".to_vec(),
                uid: "u".into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(sealed.key_id, "k1");
        assert!(!sealed.ciphertext.windows(8).any(|w| w == b"data key"));
        let decrypt = |key_id: &str, ciphertext: Vec<u8>| {
            plugin.decrypt(Request::new(DecryptRequest {
                ciphertext,
                uid: "u".into(),
                key_id: key_id.into(),
                annotations: Default::default(),
            }))
        };
        let opened = decrypt("k1", sealed.ciphertext.clone()).await.unwrap();
        assert_eq!(opened.into_inner().plaintext, b"data key");
        // Another key, an unknown one, a damaged or short ciphertext: refused.
        let code = |r: Result<Response<DecryptResponse>, Status>| r.unwrap_err().code();
        assert_eq!(
            code(decrypt("k2", sealed.ciphertext.clone()).await),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            code(decrypt("k3", sealed.ciphertext.clone()).await),
            tonic::Code::NotFound
        );
        let mut damaged = sealed.ciphertext.clone();
        damaged[20] ^= 1;
        assert_eq!(
            code(decrypt("k1", damaged).await),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            code(decrypt("k1", vec![0; 5]).await),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn the_current_key_comes_from_the_flag_or_the_current_file() {
        let dir = key_dir();
        assert!(matches!(
            Plugin::open(dir.path().to_owned(), None),
            Err(PluginError::NoCurrent { .. })
        ));
        assert!(matches!(
            Plugin::open(dir.path().to_owned(), Some("k9".into())),
            Err(PluginError::UnknownCurrent { .. })
        ));
        std::fs::write(dir.path().join(CURRENT_FILE), "k1\n").unwrap();
        // Kubernetes' own files in a mounted Secret are not keys.
        std::fs::create_dir(dir.path().join("..2026_01_01")).unwrap();
        std::fs::write(dir.path().join("..data"), b"short").unwrap();
        let plugin = Plugin::open(dir.path().to_owned(), None).unwrap();
        assert_eq!(plugin.current_key_id(), "k1");
        std::fs::write(dir.path().join(CURRENT_FILE), "k2").unwrap();
        assert_eq!(plugin.reload().unwrap(), "k2");
        // A bad reading leaves the keys as they were.
        std::fs::write(dir.path().join("k3"), b"too short").unwrap();
        assert!(matches!(
            plugin.reload(),
            Err(PluginError::KeyLength { len: 9, .. })
        ));
        assert_eq!(plugin.current_key_id(), "k2");
        let flagged = Plugin::open(dir.path().to_owned(), Some("k1".into()));
        assert!(matches!(flagged, Err(PluginError::KeyLength { .. })));
    }
}
