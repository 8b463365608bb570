//! The admin API (`openefs-admin-api`'s `Admin` service) on its own port:
//! the operator applies runtime settings and reads usage and clients.
//!
//! Authentication is a bearer token compared in constant time with the
//! content of `--admin-token-file`, read again on every call so that a
//! rotated Secret takes effect without a restart. The port never serves NFS,
//! and the NFS port never serves this.
//!
//! Applied settings are kept in the state directory ([`APPLIED_FILE`], the
//! protobuf message as sent) before they take effect, so a restarted server
//! starts with them instead of its flags: a policy such as read-only holds
//! from the first call, not from the operator's next push.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openefs_admin_api::v1 as api;
use openefs_admin_api::v1::admin_server::{Admin, AdminServer};
use prost::Message;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::encryption::{KeyError, KeyRecord};
use crate::server::Server;
use crate::settings::{
    AccessPoints, ClientRule, ClientRules, NOBODY, Policy, Settings, ThroughputMode,
};
use crate::stable::replace_file;
use crate::tls::Tls;
use openefs_vfs::{AccessPoint, CreationInfo, DeleteTreeError, Identity, VfsError};

/// Where the admin API listens and how callers prove who they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// File holding the bearer token (e.g. a mounted Secret's key).
    pub token_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("reading the admin token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the admin token file {0} is empty")]
    EmptyToken(PathBuf),
    #[error("serving the admin API: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("reading the applied settings {path}: {source}")]
    ReadApplied {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the applied settings {path} are damaged: {reason}")]
    DamagedApplied { path: PathBuf, reason: String },
}

/// The settings last applied through the API, in the state directory.
pub const APPLIED_FILE: &str = "admin-settings.pb";

/// The settings last applied through the API and kept in `state_dir`;
/// `None` if none were. A damaged file is an error: starting with other
/// settings than the operator asked for could serve a read-only file system
/// writable.
pub fn load_applied(state_dir: &Path) -> Result<Option<Settings>, AdminError> {
    let path = state_dir.join(APPLIED_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(AdminError::ReadApplied { path, source }),
    };
    let damaged = |reason: String| AdminError::DamagedApplied {
        path: path.clone(),
        reason,
    };
    let message = api::Settings::decode(bytes.as_slice()).map_err(|e| damaged(e.to_string()))?;
    settings_from_api(message).map(Some).map_err(damaged)
}

/// The token in `path`, without surrounding whitespace (Secrets created
/// with `echo` end in a newline).
pub fn read_token(path: &Path) -> Result<Vec<u8>, AdminError> {
    let raw = std::fs::read(path).map_err(|source| AdminError::TokenFile {
        path: path.to_owned(),
        source,
    })?;
    let token = raw.trim_ascii();
    if token.is_empty() {
        return Err(AdminError::EmptyToken(path.to_owned()));
    }
    Ok(token.to_vec())
}

/// Serves the admin API on `listener` until `shutdown` fires.
pub async fn serve_admin(
    listener: TcpListener,
    server: Arc<Server>,
    token_file: PathBuf,
    shutdown: CancellationToken,
) -> Result<(), AdminError> {
    // Refuse to start with a token that cannot be read, rather than refuse
    // every call later.
    read_token(&token_file)?;
    let check = move |request: Request<()>| authorize(&token_file, request);
    tonic::transport::Server::builder()
        .add_service(AdminServer::with_interceptor(
            AdminService { server },
            check,
        ))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await?;
    Ok(())
}

fn authorize(token_file: &Path, request: Request<()>) -> Result<Request<()>, Status> {
    let expected = read_token(token_file).map_err(|e| {
        warn!(error = %e, "admin call refused: no token to check against");
        Status::unavailable("the server cannot read its admin token")
    })?;
    let presented = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match presented {
        Some(token) if bool::from(token.ct_eq(&expected)) => Ok(request),
        Some(_) => {
            warn!(peer = ?request.remote_addr(), "admin call with a wrong token refused");
            Err(Status::unauthenticated("wrong admin token"))
        }
        None => Err(Status::unauthenticated(
            "missing `authorization: Bearer <token>` metadata",
        )),
    }
}

struct AdminService {
    server: Arc<Server>,
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn apply_settings(
        &self,
        request: Request<api::ApplySettingsRequest>,
    ) -> Result<Response<api::ApplySettingsResponse>, Status> {
        let settings = request
            .into_inner()
            .settings
            .ok_or_else(|| Status::invalid_argument("settings are required"))?;
        let bytes = settings.encode_to_vec();
        let validated = settings_from_api(settings).map_err(Status::invalid_argument)?;
        validated
            .check(self.server.tls().map(Tls::settings))
            .map_err(Status::failed_precondition)?;
        if let Some(dir) = self.server.config().state_dir.clone() {
            tokio::task::spawn_blocking(move || replace_file(&dir, APPLIED_FILE, &bytes))
                .await
                .map_err(|e| Status::internal(format!("settings store task failed: {e}")))?
                .map_err(|e| {
                    warn!(error = %e, "admin API: settings not applied, they cannot be kept");
                    Status::internal(format!("keeping the settings in the state directory: {e}"))
                })?;
        }
        info!("admin API: new settings");
        self.server
            .apply_settings(validated)
            .map_err(Status::failed_precondition)?;
        Ok(Response::new(api::ApplySettingsResponse {}))
    }

    async fn get_settings(
        &self,
        _: Request<api::GetSettingsRequest>,
    ) -> Result<Response<api::Settings>, Status> {
        Ok(Response::new(settings_to_api(&self.server.settings())))
    }

    async fn get_usage(
        &self,
        _: Request<api::GetUsageRequest>,
    ) -> Result<Response<api::Usage>, Status> {
        let vfs = self.server.vfs().clone();
        let stat = tokio::task::spawn_blocking(move || vfs.statfs(&vfs.root()))
            .await
            .map_err(|e| Status::internal(format!("statfs task failed: {e}")))?
            .map_err(|e| Status::internal(format!("statfs of the export: {e}")))?;
        let throughput = self
            .server
            .throttle()
            .snapshot(self.server.settings().throughput);
        let usage = self.server.vfs().usage();
        Ok(Response::new(api::Usage {
            stored_bytes: usage.stored_bytes,
            access_points: usage
                .access_points
                .into_iter()
                .map(|ap| api::AccessPointUsage {
                    id: ap.id,
                    stored_bytes: ap.stored_bytes,
                    max_bytes: ap.max_bytes,
                })
                .collect(),
            // Metered figures are whole bytes; fractions are rounding.
            burst_credit_bytes: throughput.credits as u64,
            permitted_bytes_per_second: throughput.permitted.map(|p| p as u64),
            metered_io_bytes: throughput.metered_total as u64,
            volume_bytes_total: stat.bytes_total,
            volume_bytes_free: stat.bytes_free,
            volume_files_total: stat.files_total,
            volume_files_free: stat.files_free,
            client_connections: self.server.metrics().connections(),
            nfs4_clients: self.server.state().clients().len() as u64,
            nfs3_mounts: self.server.mounts().list().0.len() as u64,
        }))
    }

    async fn delete_access_point_root(
        &self,
        request: Request<api::DeleteAccessPointRootRequest>,
    ) -> Result<Response<api::DeleteAccessPointRootResponse>, Status> {
        let root = request.into_inner().root_directory;
        let vfs = self.server.vfs().clone();
        let path = root.clone();
        // A big tree takes a while; it is removed to the end even when the
        // caller gives up waiting (a repeated call finds less to do).
        let removed = tokio::task::spawn_blocking(move || vfs.delete_tree(&path))
            .await
            .map_err(|e| Status::internal(format!("deletion task failed: {e}")))?
            .map_err(|e| {
                warn!(directory = %root, error = %e, "admin API: root directory not deleted");
                match e {
                    DeleteTreeError::ExportRoot(_) | DeleteTreeError::Vfs(VfsError::Inval) => {
                        Status::invalid_argument(e.to_string())
                    }
                    DeleteTreeError::InUse { .. } => Status::failed_precondition(e.to_string()),
                    DeleteTreeError::Removal { .. } | DeleteTreeError::Vfs(_) => {
                        Status::internal(e.to_string())
                    }
                }
            })?;
        info!(
            directory = %root,
            objects = removed.objects,
            "admin API: access point root directory deleted"
        );
        Ok(Response::new(api::DeleteAccessPointRootResponse {
            objects_removed: removed.objects,
            metered_bytes_removed: removed.metered_bytes,
        }))
    }

    async fn list_clients(
        &self,
        _: Request<api::ListClientsRequest>,
    ) -> Result<Response<api::ListClientsResponse>, Status> {
        let nfs4_clients = self
            .server
            .state()
            .clients()
            .into_iter()
            .map(|c| api::Nfs4Client {
                client_id: format!("{:016x}", c.id),
                owner: c.owner.escape_ascii().to_string(),
                minor_version: c.minor_version,
                confirmed: c.confirmed,
                sessions: saturate(c.sessions),
                opens: saturate(c.opens),
                lock_owners: saturate(c.lock_owners),
                lease_remaining_ms: millis(c.lease_remaining),
            })
            .collect();
        let nfs3_mounts = self
            .server
            .mounts()
            .list()
            .0
            .into_iter()
            .map(|m| api::Nfs3Mount {
                host: m.hostname.as_bytes().escape_ascii().to_string(),
                path: m.directory.as_bytes().escape_ascii().to_string(),
            })
            .collect();
        Ok(Response::new(api::ListClientsResponse {
            nfs4_clients,
            nfs3_mounts,
        }))
    }

    async fn get_encryption(
        &self,
        _: Request<api::GetEncryptionRequest>,
    ) -> Result<Response<api::Encryption>, Status> {
        let Some(keys) = self.server.encryption() else {
            return Ok(Response::new(api::Encryption::default()));
        };
        let current = keys.source().current_key_id().await;
        Ok(Response::new(encryption_to_api(
            &keys.record().await,
            current,
        )))
    }

    async fn rewrap_data_key(
        &self,
        _: Request<api::RewrapDataKeyRequest>,
    ) -> Result<Response<api::Encryption>, Status> {
        let keys = self
            .server
            .encryption()
            .ok_or_else(|| Status::failed_precondition("the file system is not encrypted"))?;
        let record = keys.rewrap().await.map_err(|e| {
            warn!(error = %e, "admin API: data key not re-wrapped");
            match e {
                KeyError::ReadKek { .. } | KeyError::KekLength { .. } | KeyError::Kms(_) => {
                    Status::unavailable(e.to_string())
                }
                KeyError::Record(_)
                | KeyError::StateDir { .. }
                | KeyError::ExportHasData { .. }
                | KeyError::ScanExport { .. }
                | KeyError::Algorithm { .. }
                | KeyError::Unwrap { .. } => Status::internal(e.to_string()),
            }
        })?;
        info!(
            key_source = record.key_source.name(),
            key_id = %record.wrapping_key_id,
            "admin API: data key re-wrapped"
        );
        let current = Ok(record.wrapping_key_id.clone());
        Ok(Response::new(encryption_to_api(&record, current)))
    }
}

/// The record and the source's current key id (or why it is unknown).
fn encryption_to_api(record: &KeyRecord, current: Result<String, KeyError>) -> api::Encryption {
    let (current_key_id, current_key_error) = match current {
        Ok(id) => (id, String::new()),
        Err(e) => (String::new(), e.to_string()),
    };
    api::Encryption {
        enabled: true,
        algorithm: record.algorithm.clone(),
        key_source: record.key_source.name().to_owned(),
        wrapping_key_id: record.wrapping_key_id.clone(),
        current_key_id,
        current_key_error,
        // Serialising owned plain data cannot fail; an empty copy would only
        // cost the operator its backup until the next poll.
        wrapped_data_key: serde_json::to_vec(record).unwrap_or_default(),
        wrapped_at: record.wrapped_at.clone(),
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Validates settings from the API; the message says what is wrong.
pub fn settings_from_api(s: api::Settings) -> Result<Settings, String> {
    let policy = s.policy.ok_or("settings.policy is required")?;
    Ok(Settings {
        policy: Policy {
            root_squash: policy.root_squash,
            read_only: policy.read_only,
            require_tls: policy.require_tls,
            anon_uid: policy.anon_uid.unwrap_or(NOBODY),
            anon_gid: policy.anon_gid.unwrap_or(NOBODY),
            client_rules: ClientRules::new(
                policy
                    .client_rules
                    .into_iter()
                    .map(|r| ClientRule {
                        client: r.client,
                        read_only: r.read_only,
                        root_squash: r.root_squash,
                    })
                    .collect(),
            )
            .map_err(|e| e.to_string())?,
        },
        throughput: match s.throughput {
            Some(t) => throughput_from_api(t)?,
            None => ThroughputMode::Elastic,
        },
        access_points: AccessPoints::new(
            s.access_points
                .into_iter()
                .map(access_point_from_api)
                .collect(),
        )
        .map_err(|e| e.to_string())?,
    })
}

fn access_point_from_api(ap: api::AccessPoint) -> AccessPoint {
    AccessPoint {
        id: ap.id,
        root_directory: if ap.root_directory.is_empty() {
            "/".to_owned()
        } else {
            ap.root_directory
        },
        posix_user: ap.posix_user.map(|u| Identity {
            uid: u.uid,
            gid: u.gid,
            groups: u.secondary_gids,
        }),
        creation_info: ap.creation_info.map(|c| CreationInfo {
            owner_uid: c.owner_uid,
            owner_gid: c.owner_gid,
            permissions: c.permissions,
        }),
        max_bytes: ap.max_bytes,
    }
}

fn access_point_to_api(ap: &AccessPoint) -> api::AccessPoint {
    api::AccessPoint {
        id: ap.id.clone(),
        root_directory: ap.root_directory.clone(),
        posix_user: ap.posix_user.as_ref().map(|u| api::PosixUser {
            uid: u.uid,
            gid: u.gid,
            secondary_gids: u.groups.clone(),
        }),
        creation_info: ap.creation_info.map(|c| api::CreationInfo {
            owner_uid: c.owner_uid,
            owner_gid: c.owner_gid,
            permissions: c.permissions,
        }),
        max_bytes: ap.max_bytes,
    }
}

fn throughput_from_api(t: api::Throughput) -> Result<ThroughputMode, String> {
    use api::throughput::Mode;
    let mode = Mode::try_from(t.mode).map_err(|_| format!("unknown throughput mode {}", t.mode))?;
    match (mode, t.provisioned_mibps) {
        (Mode::Unspecified, _) => Err("throughput.mode is required".to_owned()),
        (Mode::Provisioned, 0) => {
            Err("throughput.provisioned_mibps must be at least 1 with PROVISIONED".to_owned())
        }
        (Mode::Provisioned, mibps) => Ok(ThroughputMode::Provisioned { mibps }),
        (_, 1..) => Err("throughput.provisioned_mibps is only for PROVISIONED".to_owned()),
        (Mode::Elastic, 0) => Ok(ThroughputMode::Elastic),
        (Mode::Bursting, 0) => Ok(ThroughputMode::Bursting),
    }
}

pub fn settings_to_api(s: &Settings) -> api::Settings {
    api::Settings {
        policy: Some(api::Policy {
            root_squash: s.policy.root_squash,
            read_only: s.policy.read_only,
            require_tls: s.policy.require_tls,
            anon_uid: Some(s.policy.anon_uid),
            anon_gid: Some(s.policy.anon_gid),
            client_rules: s
                .policy
                .client_rules
                .as_slice()
                .iter()
                .map(|r| api::ClientRule {
                    client: r.client.clone(),
                    read_only: r.read_only,
                    root_squash: r.root_squash,
                })
                .collect(),
        }),
        throughput: Some(throughput_to_api(s.throughput)),
        access_points: s
            .access_points
            .as_slice()
            .iter()
            .map(access_point_to_api)
            .collect(),
    }
}

pub fn throughput_to_api(mode: ThroughputMode) -> api::Throughput {
    use api::throughput::Mode;
    let (mode, provisioned_mibps) = match mode {
        ThroughputMode::Elastic => (Mode::Elastic, 0),
        ThroughputMode::Bursting => (Mode::Bursting, 0),
        ThroughputMode::Provisioned { mibps } => (Mode::Provisioned, mibps),
    };
    api::Throughput {
        mode: mode.into(),
        provisioned_mibps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_defaults() {
        let mut s = Settings::default();
        s.policy.read_only = true;
        s.policy.anon_uid = 1234;
        assert_eq!(settings_from_api(settings_to_api(&s)), Ok(s.clone()));
        s.throughput = ThroughputMode::Provisioned { mibps: 20 };
        s.access_points = AccessPoints::new(vec![AccessPoint {
            id: "team-a".into(),
            root_directory: "/teams/a".into(),
            posix_user: Some(Identity {
                uid: 1000,
                gid: 1000,
                groups: vec![10, 11],
            }),
            creation_info: Some(CreationInfo {
                owner_uid: 1000,
                owner_gid: 1000,
                permissions: 0o750,
            }),
            max_bytes: Some(5 << 30),
        }])
        .unwrap();
        s.policy.client_rules = ClientRules::new(vec![
            ClientRule {
                client: "backup".into(),
                read_only: Some(false),
                root_squash: None,
            },
            ClientRule {
                client: "*".into(),
                read_only: None,
                root_squash: Some(true),
            },
        ])
        .unwrap();
        assert_eq!(settings_from_api(settings_to_api(&s)), Ok(s));
        let unset = api::Settings {
            policy: Some(api::Policy::default()),
            throughput: None,
            access_points: Vec::new(),
        };
        assert_eq!(settings_from_api(unset), Ok(Settings::default()));
        let refused = |policy, mode: api::throughput::Mode, provisioned_mibps| {
            settings_from_api(api::Settings {
                policy,
                throughput: Some(api::Throughput {
                    mode: mode.into(),
                    provisioned_mibps,
                }),
                access_points: Vec::new(),
            })
            .unwrap_err()
        };
        use api::throughput::Mode;
        let policy = Some(api::Policy::default());
        assert!(refused(None, Mode::Elastic, 0).contains("policy"));
        assert!(refused(policy.clone(), Mode::Unspecified, 0).contains("mode is required"));
        assert!(refused(policy.clone(), Mode::Provisioned, 0).contains("at least 1"));
        assert!(refused(policy.clone(), Mode::Bursting, 5).contains("only for PROVISIONED"));
        let empty_rule = api::Policy {
            client_rules: vec![api::ClientRule {
                client: "node-a".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(refused(Some(empty_rule), Mode::Elastic, 0).contains("overrides nothing"));
        let twice = api::AccessPoint {
            id: "x".into(),
            ..Default::default()
        };
        let dup = settings_from_api(api::Settings {
            policy,
            throughput: None,
            access_points: vec![twice.clone(), twice],
        });
        assert!(dup.unwrap_err().contains("twice"));
    }

    #[test]
    fn applied_settings_load_back_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_applied(dir.path()).unwrap().is_none());
        let mut s = Settings::default();
        s.policy.read_only = true;
        let bytes = settings_to_api(&s).encode_to_vec();
        replace_file(dir.path(), APPLIED_FILE, &bytes).unwrap();
        assert_eq!(load_applied(dir.path()).unwrap(), Some(s));
        std::fs::write(dir.path().join(APPLIED_FILE), b"\xff\xff").unwrap();
        assert!(matches!(
            load_applied(dir.path()),
            Err(AdminError::DamagedApplied { .. })
        ));
    }

    #[test]
    fn tokens_are_trimmed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(read_token(&path).unwrap(), b"s3cret");
        std::fs::write(&path, " \n").unwrap();
        assert!(matches!(read_token(&path), Err(AdminError::EmptyToken(_))));
        assert!(matches!(
            read_token(&dir.path().join("missing")),
            Err(AdminError::TokenFile { .. })
        ));
    }
}
