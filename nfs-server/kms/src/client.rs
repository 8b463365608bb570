//! A KMS v2 client over a unix socket. Each call opens its own connection:
//! calls are rare (start, rotation, status polls) and a plugin restarted in
//! between is then simply reached again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use zeroize::Zeroizing;

use crate::v2::key_management_service_client::KeyManagementServiceClient;
use crate::v2::{DecryptRequest, EncryptRequest, EncryptResponse, StatusRequest};
use crate::{HEALTHY, chain};

/// How long one call may take, connecting included: a plugin that hangs
/// must not hang nfsd's start or the admin API.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("KMS endpoint {0:?} must be unix:///absolute/path or an absolute path")]
    Endpoint(String),
    #[error("connecting to the KMS plugin at {socket}: {reason}")]
    Connect { socket: PathBuf, reason: String },
    #[error("KMS plugin at {socket}: {rpc} failed: {code:?}: {message}")]
    Call {
        socket: PathBuf,
        rpc: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("KMS plugin at {socket}: {rpc} took longer than {CALL_TIMEOUT:?}")]
    Timeout { socket: PathBuf, rpc: &'static str },
    #[error("KMS plugin at {socket} is unhealthy: healthz {healthz:?}, key_id {key_id:?}")]
    Unhealthy {
        socket: PathBuf,
        healthz: String,
        key_id: String,
    },
}

/// The socket path of `unix:///path` (the form Kubernetes'
/// EncryptionConfiguration uses) or of a bare absolute path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, KmsError> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(KmsError::Endpoint(endpoint.to_owned()))
    }
}

/// A KMS v2 plugin listening on a unix socket.
#[derive(Clone, Debug)]
pub struct KmsClient {
    socket: PathBuf,
}

impl KmsClient {
    pub fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn connect(&self) -> Result<KeyManagementServiceClient<Channel>, KmsError> {
        let socket = self.socket.clone();
        // The URI is required by the API but unused: the connector dials the socket.
        let channel =
            Endpoint::from_static("http://kms.invalid")
                .connect_with_connector(tower::service_fn(move |_| {
                    let socket = socket.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?))
                    }
                }))
                .await
                .map_err(|e| KmsError::Connect {
                    socket: self.socket.clone(),
                    reason: chain(&e),
                })?;
        Ok(KeyManagementServiceClient::new(channel))
    }

    async fn call<T, F>(&self, rpc: &'static str, f: F) -> Result<T, KmsError>
    where
        F: AsyncFnOnce(
            KeyManagementServiceClient<Channel>,
        ) -> Result<tonic::Response<T>, tonic::Status>,
    {
        let work = async {
            let client = self.connect().await?;
            f(client)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| KmsError::Call {
                    socket: self.socket.clone(),
                    rpc,
                    code: status.code(),
                    message: status.message().to_owned(),
                })
        };
        tokio::time::timeout(CALL_TIMEOUT, work)
            .await
            .map_err(|_| KmsError::Timeout {
                socket: self.socket.clone(),
                rpc,
            })?
    }

    /// The id of the key new data is encrypted with now, from Status; an
    /// unhealthy plugin (healthz not "ok", or no key id) is an error.
    pub async fn current_key_id(&self) -> Result<String, KmsError> {
        let status = self
            .call("Status", async |mut c| c.status(StatusRequest {}).await)
            .await?;
        if status.healthz != HEALTHY || status.key_id.is_empty() {
            return Err(KmsError::Unhealthy {
                socket: self.socket.clone(),
                healthz: status.healthz,
                key_id: status.key_id,
            });
        }
        Ok(status.key_id)
    }

    /// Encrypts `plaintext` with the plugin's current key: the ciphertext,
    /// the key id and the annotations to hand back to [`KmsClient::decrypt`].
    pub async fn encrypt(&self, plaintext: &[u8]) -> Result<EncryptResponse, KmsError> {
        let request = EncryptRequest {
            plaintext: plaintext.to_vec(),
            uid: request_uid(),
        };
        let response = self
            .call("Encrypt", async move |mut c| c.encrypt(request).await)
            .await?;
        if response.key_id.is_empty() {
            return Err(KmsError::Call {
                socket: self.socket.clone(),
                rpc: "Encrypt",
                code: tonic::Code::Internal,
                message: "the response names no key_id".to_owned(),
            });
        }
        Ok(response)
    }

    /// Decrypts what [`KmsClient::encrypt`] returned.
    pub async fn decrypt(
        &self,
        ciphertext: &[u8],
        key_id: &str,
        annotations: HashMap<String, Vec<u8>>,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let request = DecryptRequest {
            ciphertext: ciphertext.to_vec(),
            uid: request_uid(),
            key_id: key_id.to_owned(),
            annotations,
        };
        let response = self
            .call("Decrypt", async move |mut c| c.decrypt(request).await)
            .await?;
        Ok(Zeroizing::new(response.plaintext))
    }
}

/// A request's unique id (KMS v2 asks for one, for the plugin's logs).
fn request_uid() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_unix_sockets_with_absolute_paths() {
        assert_eq!(
            socket_path("unix:///run/kms/socket.sock").unwrap(),
            PathBuf::from("/run/kms/socket.sock")
        );
        assert_eq!(
            socket_path("/run/kms.sock").unwrap(),
            PathBuf::from("/run/kms.sock")
        );
        for bad in ["unix://run/kms.sock", "kms.sock", "tcp://127.0.0.1:1", ""] {
            assert!(
                matches!(socket_path(bad), Err(KmsError::Endpoint(_))),
                "{bad}"
            );
        }
    }
}
