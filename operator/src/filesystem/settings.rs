//! A FileSystem's runtime settings in its nfsd, changed without a restart:
//! computed from the spec ([`nfsd_settings`], pure), written into a
//! ConfigMap nfsd reads at its first start ([`config_map`]), and pushed on
//! every reconcile through nfsd's admin API ([`AdminCalls`]) with a token
//! from the `<fs-id>-admin` Secret, which the operator creates once.
//!
//! Why both: the push changes a running server at once, and nfsd keeps what
//! was pushed in its state directory for its next start; the ConfigMap
//! covers the first start, before any push. Neither is in the pod template,
//! so a policy change rolls no pod.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Client, ResourceExt};
use openefs_admin_api::v1 as api;
use openefs_admin_api::v1::admin_client::AdminClient;
use openefs_crds::{
    AccessPoint, AccessPointId, FileSystem, FileSystemId, RootAccess, SizeInBytes, ThroughputMode,
};
use serde::Serialize;

use super::desired::MetaFactory;
use super::status::Usage;
use crate::apply;
use crate::conditions::{Status, Verdict};
use crate::error::Error;

/// Port of nfsd's admin API in the pod (never the NFS port).
pub const ADMIN_PORT: i32 = 9050;
/// Where the admin token Secret is mounted in the server pod.
pub const ADMIN_PATH: &str = "/etc/openefs/admin";
/// The admin token Secret's key (and file name).
pub const ADMIN_TOKEN_KEY: &str = "token";
/// Where the settings ConfigMap is mounted in the server pod.
pub const CONFIG_PATH: &str = "/etc/openefs/config";
/// The settings ConfigMap's key (and file name): nfsd's `--config` file.
pub const CONFIG_KEY: &str = "nfsd.toml";
/// The settings ConfigMap's key (and file name) for the client CA bundle of
/// `policy.clientCertificates`: nfsd's `--tls-client-ca`, re-read when it
/// changes.
pub const CLIENT_CA_KEY: &str = "client-ca.crt";

/// `True` once nfsd confirmed the settings of the current spec.
pub const SETTINGS_APPLIED: &str = "SettingsApplied";
pub const REASON_APPLIED: &str = "Applied";
/// Not pushed: the server is not ready (the ConfigMap or its kept settings
/// apply meanwhile).
pub const REASON_WAITING_FOR_SERVER: &str = "WaitingForServer";
pub const REASON_ADMIN_UNREACHABLE: &str = "AdminUnreachable";
pub const REASON_ADMIN_TOKEN_REJECTED: &str = "AdminTokenRejected";
pub const REASON_SETTINGS_REFUSED: &str = "SettingsRefused";
pub const REASON_ADMIN_FAILED: &str = "AdminFailed";

/// How long one push may take, connection included: a reconcile must not
/// hang on a server that accepts and then stalls.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a rewrap may take: a KMS plugin may call a remote KMS.
const REWRAP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a root directory's deletion is waited for. nfsd carries on
/// after a timeout, and the retry finds less to delete.
const DELETE_TIMEOUT: Duration = Duration::from_secs(120);

pub fn admin_secret_name(id: &FileSystemId) -> String {
    format!("{}-admin", id.as_str())
}

pub fn config_map_name(id: &FileSystemId) -> String {
    format!("{}-nfsd", id.as_str())
}

/// The settings nfsd should run with for `fs` and the AccessPoints that
/// reference it. AccessPoints being deleted are left out: their clients
/// lose access at once, and their finalizer then lets them go.
pub fn nfsd_settings(fs: &FileSystem, access_points: &[AccessPoint]) -> api::Settings {
    let policy = &fs.spec.policy;
    let mut aps: Vec<api::AccessPoint> = access_points
        .iter()
        .filter(|ap| ap.metadata.deletion_timestamp.is_none())
        .filter_map(access_point)
        .collect();
    aps.sort_by(|a, b| a.id.cmp(&b.id));
    api::Settings {
        policy: Some(api::Policy {
            root_squash: policy.root_access == RootAccess::Squash,
            read_only: policy.read_only,
            require_tls: policy.require_tls,
            anon_uid: None,
            anon_gid: None,
            client_rules: policy
                .client_certificates
                .iter()
                .flat_map(|c| &c.rules)
                .map(|r| api::ClientRule {
                    client: r.client.clone(),
                    read_only: r.read_only,
                    root_squash: r.root_access.map(|a| a == RootAccess::Squash),
                })
                .collect(),
        }),
        throughput: Some(throughput(fs)),
        access_points: aps,
    }
}

/// `None` for an object without a uid (not read from the API server), which
/// has no id yet.
fn access_point(ap: &AccessPoint) -> Option<api::AccessPoint> {
    let id = AccessPointId::of(ap).ok()?;
    let spec = &ap.spec;
    Some(api::AccessPoint {
        id: id.as_str().to_owned(),
        root_directory: spec.root_directory.path.clone(),
        posix_user: spec.posix_user.as_ref().map(|u| api::PosixUser {
            uid: u.uid,
            gid: u.gid,
            secondary_gids: u.secondary_gids.clone(),
        }),
        creation_info: spec
            .root_directory
            .creation_info
            .as_ref()
            .map(|c| api::CreationInfo {
                owner_uid: c.owner_uid,
                owner_gid: c.owner_gid,
                permissions: c.permissions.mode(),
            }),
        // The schema admits only quantities this reads.
        max_bytes: spec
            .quota
            .as_ref()
            .and_then(|q| openefs_crds::schema::byte_quantity_bytes(&q.max_bytes.0)),
    })
}

fn throughput(fs: &FileSystem) -> api::Throughput {
    use api::throughput::Mode;
    let (mode, provisioned_mibps) = match fs.spec.throughput_mode {
        ThroughputMode::Bursting => (Mode::Bursting, 0),
        ThroughputMode::Elastic => (Mode::Elastic, 0),
        // The schema requires the rate in this mode; were it missing, nfsd
        // would refuse the 0 and SettingsApplied would say why.
        ThroughputMode::Provisioned => (
            Mode::Provisioned,
            fs.spec.provisioned_throughput_mibps.unwrap_or(0),
        ),
    };
    api::Throughput {
        mode: mode.into(),
        provisioned_mibps,
    }
}

/// nfsd's config file keys (`docs/nfsd.md`), for [`config_toml`].
#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ConfigFile<'a> {
    root_squash: bool,
    read_only: bool,
    require_tls: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    anon_uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anon_gid: Option<u32>,
    throughput_mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    provisioned_throughput_mibps: Option<u32>,
    access_point: Vec<ConfigAccessPoint<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    client_rule: Vec<ConfigClientRule<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ConfigClientRule<'a> {
    client: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    root_squash: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ConfigAccessPoint<'a> {
    id: &'a str,
    root_directory: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    posix_user: Option<ConfigPosixUser<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    creation_info: Option<ConfigCreationInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_bytes: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ConfigPosixUser<'a> {
    uid: u32,
    gid: u32,
    secondary_gids: &'a [u32],
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ConfigCreationInfo {
    owner_uid: u32,
    owner_gid: u32,
    permissions: u32,
}

/// `settings` as nfsd's config file (its runtime keys).
pub fn config_toml(settings: &api::Settings) -> Result<String, toml::ser::Error> {
    use api::throughput::Mode;
    let policy = settings.policy.clone().unwrap_or_default();
    let throughput = settings.throughput.unwrap_or_default();
    let file = ConfigFile {
        root_squash: policy.root_squash,
        read_only: policy.read_only,
        require_tls: policy.require_tls,
        anon_uid: policy.anon_uid,
        anon_gid: policy.anon_gid,
        throughput_mode: match throughput.mode() {
            Mode::Bursting => "bursting",
            Mode::Provisioned => "provisioned",
            Mode::Elastic | Mode::Unspecified => "elastic",
        },
        provisioned_throughput_mibps: (throughput.mode() == Mode::Provisioned)
            .then_some(throughput.provisioned_mibps),
        access_point: settings
            .access_points
            .iter()
            .map(|ap| ConfigAccessPoint {
                id: &ap.id,
                root_directory: &ap.root_directory,
                posix_user: ap.posix_user.as_ref().map(|u| ConfigPosixUser {
                    uid: u.uid,
                    gid: u.gid,
                    secondary_gids: &u.secondary_gids,
                }),
                creation_info: ap.creation_info.map(|c| ConfigCreationInfo {
                    owner_uid: c.owner_uid,
                    owner_gid: c.owner_gid,
                    permissions: c.permissions,
                }),
                max_bytes: ap.max_bytes,
            })
            .collect(),
        client_rule: policy
            .client_rules
            .iter()
            .map(|r| ConfigClientRule {
                client: &r.client,
                read_only: r.read_only,
                root_squash: r.root_squash,
            })
            .collect(),
    };
    Ok(format!(
        "# Written by the openefs operator; nfsd reads it at its first start.\n{}",
        toml::to_string(&file)?
    ))
}

/// nfsd's config file and, with `policy.clientCertificates`, the client CA
/// bundle (public certificates, so a ConfigMap).
pub fn config_map(
    factory: &MetaFactory,
    settings: &api::Settings,
    client_ca_bundle: Option<&str>,
) -> Result<ConfigMap, Error> {
    let mut data = BTreeMap::from([(
        CONFIG_KEY.to_owned(),
        config_toml(settings).map_err(Error::RenderConfig)?,
    )]);
    if let Some(pem) = client_ca_bundle {
        data.insert(CLIENT_CA_KEY.to_owned(), pem.to_owned());
    }
    Ok(ConfigMap {
        metadata: factory.meta(&config_map_name(factory.id()), true),
        data: Some(data),
        ..ConfigMap::default()
    })
}

/// The admin token, from the `<fs-id>-admin` Secret; creates the Secret
/// with a new random token when it is missing or has no token.
pub async fn ensure_token(client: &Client, factory: &MetaFactory) -> Result<String, Error> {
    let name = admin_secret_name(factory.id());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), factory.namespace());
    let stored = secrets.get_opt(&name).await.map_err(|source| Error::Read {
        what: format!("Secret {}/{name}", factory.namespace()),
        source: Box::new(source),
    })?;
    if let Some(token) = stored.as_ref().and_then(token_of) {
        return Ok(token);
    }
    let token = new_token();
    apply::object(client, &token_secret(factory, &token)).await?;
    tracing::info!(secret = %name, "admin token created");
    Ok(token)
}

fn token_of(secret: &Secret) -> Option<String> {
    let bytes = &secret.data.as_ref()?.get(ADMIN_TOKEN_KEY)?.0;
    let token = std::str::from_utf8(bytes).ok()?.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// 256 random bits, hex: printable, so it fits a gRPC metadata value.
fn new_token() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn token_secret(factory: &MetaFactory, token: &str) -> Secret {
    Secret {
        metadata: factory.meta(&admin_secret_name(factory.id()), true),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            ADMIN_TOKEN_KEY.to_owned(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// Where the operator reaches a file system's admin API: its pod's stable
/// DNS name under the headless Service (which publishes the pod before it
/// is Ready).
pub fn admin_endpoint(pod_dns_name: &str) -> String {
    format!("http://{pod_dns_name}:{ADMIN_PORT}")
}

/// The calls the reconciler makes to an nfsd; a trait so that reconcile
/// tests can stand in for the network.
pub trait AdminCalls: Send + Sync {
    /// Applies `settings` and returns the usage afterwards.
    fn push(
        &self,
        endpoint: String,
        token: String,
        settings: api::Settings,
    ) -> BoxFuture<'static, Result<api::Usage, tonic::Status>>;

    /// Deletes a removed access point's root directory (see the admin API's
    /// DeleteAccessPointRoot).
    fn delete_root(
        &self,
        endpoint: String,
        token: String,
        root_directory: String,
    ) -> BoxFuture<'static, Result<api::DeleteAccessPointRootResponse, tonic::Status>>;

    /// The file system's encryption at rest (see the admin API's
    /// GetEncryption).
    fn encryption(
        &self,
        endpoint: String,
        token: String,
    ) -> BoxFuture<'static, Result<api::Encryption, tonic::Status>>;

    /// Wraps the data key with the key source's current key-encryption key
    /// (see the admin API's RewrapDataKey).
    fn rewrap(
        &self,
        endpoint: String,
        token: String,
    ) -> BoxFuture<'static, Result<api::Encryption, tonic::Status>>;
}

/// The real admin API over gRPC.
#[derive(Debug, Default)]
pub struct GrpcAdmin;

impl AdminCalls for GrpcAdmin {
    fn push(
        &self,
        endpoint: String,
        token: String,
        settings: api::Settings,
    ) -> BoxFuture<'static, Result<api::Usage, tonic::Status>> {
        Box::pin(async move {
            let (mut client, bearer) = connect(endpoint, &token, ADMIN_TIMEOUT).await?;
            client
                .apply_settings(authorized(
                    &bearer,
                    api::ApplySettingsRequest {
                        settings: Some(settings),
                    },
                ))
                .await?;
            Ok(client
                .get_usage(authorized(&bearer, api::GetUsageRequest {}))
                .await?
                .into_inner())
        })
    }

    fn delete_root(
        &self,
        endpoint: String,
        token: String,
        root_directory: String,
    ) -> BoxFuture<'static, Result<api::DeleteAccessPointRootResponse, tonic::Status>> {
        Box::pin(async move {
            let (mut client, bearer) = connect(endpoint, &token, DELETE_TIMEOUT).await?;
            Ok(client
                .delete_access_point_root(authorized(
                    &bearer,
                    api::DeleteAccessPointRootRequest { root_directory },
                ))
                .await?
                .into_inner())
        })
    }

    fn encryption(
        &self,
        endpoint: String,
        token: String,
    ) -> BoxFuture<'static, Result<api::Encryption, tonic::Status>> {
        Box::pin(async move {
            let (mut client, bearer) = connect(endpoint, &token, ADMIN_TIMEOUT).await?;
            Ok(client
                .get_encryption(authorized(&bearer, api::GetEncryptionRequest {}))
                .await?
                .into_inner())
        })
    }

    fn rewrap(
        &self,
        endpoint: String,
        token: String,
    ) -> BoxFuture<'static, Result<api::Encryption, tonic::Status>> {
        Box::pin(async move {
            let (mut client, bearer) = connect(endpoint, &token, REWRAP_TIMEOUT).await?;
            Ok(client
                .rewrap_data_key(authorized(&bearer, api::RewrapDataKeyRequest {}))
                .await?
                .into_inner())
        })
    }
}

/// A client of the admin API at `endpoint` whose calls end after `timeout`,
/// and the bearer value its calls carry.
async fn connect(
    endpoint: String,
    token: &str,
    timeout: Duration,
) -> Result<
    (
        AdminClient<tonic::transport::Channel>,
        tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    ),
    tonic::Status,
> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint)
        .map_err(|e| tonic::Status::invalid_argument(format!("admin endpoint: {e}")))?
        .connect_timeout(ADMIN_TIMEOUT)
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connecting: {e}")))?;
    let bearer = format!("Bearer {token}")
        .parse()
        .map_err(|_| tonic::Status::invalid_argument("the admin token is not ASCII"))?;
    Ok((AdminClient::new(channel), bearer))
}

fn authorized<T>(
    bearer: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    message: T,
) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert("authorization", bearer.clone());
    r
}

/// The status figures of a server's usage reply.
pub fn usage(fs: &FileSystem, u: &api::Usage) -> Usage {
    let saturate = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    Usage {
        client_connections: i32::try_from(u.client_connections).unwrap_or(i32::MAX),
        stored_bytes: saturate(u.stored_bytes),
        // Two decimals: finer figures would rewrite the status for noise.
        permitted_mibps: u
            .permitted_bytes_per_second
            .map(|b| (b as f64 / f64::from(1u32 << 20) * 100.0).round() / 100.0),
        burst_credit_balance_bytes: (fs.spec.throughput_mode == ThroughputMode::Bursting)
            .then(|| saturate(u.burst_credit_bytes)),
    }
}

/// The AccessPoints whose metered size nfsd reports differently from their
/// status, with the size to write (by name). AccessPoints nfsd does not
/// report (not pushed yet, being deleted) keep what they have.
pub fn access_point_sizes(
    access_points: &[AccessPoint],
    u: &api::Usage,
    now: &Time,
) -> Vec<(String, SizeInBytes)> {
    access_points
        .iter()
        .filter_map(|ap| {
            let id = AccessPointId::of(ap).ok()?;
            let reported = u.access_points.iter().find(|r| r.id == id.as_str())?;
            let value = i64::try_from(reported.stored_bytes).unwrap_or(i64::MAX);
            let current = ap.status.as_ref().and_then(|s| s.size_in_bytes.as_ref());
            (current.map(|c| c.value) != Some(value)).then(|| {
                (
                    ap.name_any(),
                    SizeInBytes {
                        value,
                        timestamp: now.clone(),
                    },
                )
            })
        })
        .collect()
}

/// `SettingsApplied` from a push's outcome.
pub fn verdict(pushed: &Result<api::Usage, tonic::Status>) -> Verdict {
    let failed = |reason, what: &str, status: &tonic::Status| Verdict {
        type_: SETTINGS_APPLIED,
        status: Status::False,
        reason,
        message: format!("{what}: {}", status.message()),
    };
    match pushed {
        Ok(_) => Verdict {
            type_: SETTINGS_APPLIED,
            status: Status::True,
            reason: REASON_APPLIED,
            message: String::new(),
        },
        Err(s) => match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                failed(REASON_ADMIN_UNREACHABLE, "nfsd's admin API", s)
            }
            tonic::Code::Unauthenticated => failed(
                REASON_ADMIN_TOKEN_REJECTED,
                "nfsd refused the admin token (the pod may not see the Secret yet)",
                s,
            ),
            tonic::Code::InvalidArgument => failed(REASON_SETTINGS_REFUSED, "nfsd refused", s),
            _ => failed(REASON_ADMIN_FAILED, "applying settings", s),
        },
    }
}

/// `SettingsApplied` while the server is not ready to be asked.
pub fn waiting_verdict() -> Verdict {
    Verdict {
        type_: SETTINGS_APPLIED,
        status: Status::False,
        reason: REASON_WAITING_FOR_SERVER,
        message: "pushed once the server is ready; until then nfsd runs with the settings it \
                  kept from the last push, or the ConfigMap's at its first start"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs(spec: &str) -> FileSystem {
        FileSystem::new("shared", serde_json::from_str(spec).unwrap())
    }

    #[test]
    fn settings_follow_the_policy() {
        let s = nfsd_settings(&fs("{}"), &[]);
        assert_eq!(
            s.policy,
            Some(api::Policy {
                require_tls: true,
                ..Default::default()
            }),
            "secure by default"
        );
        assert_eq!(
            s.throughput.unwrap().mode(),
            api::throughput::Mode::Bursting,
            "EFS's default"
        );
        let s = nfsd_settings(
            &fs(r#"{"policy": {"rootAccess": "squash", "readOnly": true},
                 "throughputMode": "provisioned", "provisionedThroughputMiBps": 20}"#),
            &[],
        );
        let p = s.policy.clone().unwrap();
        assert!(p.root_squash && p.read_only);
        assert!(p.client_rules.is_empty());
        assert_eq!(s.throughput.unwrap().provisioned_mibps, 20);
        let toml = config_toml(&s).unwrap();
        assert!(
            toml.contains("root-squash = true\nread-only = true\nrequire-tls = true\nthroughput-mode = \"provisioned\"\nprovisioned-throughput-mibps = 20\n"),
            "{toml}"
        );
        assert!(!toml.contains("client-rule"), "{toml}");
    }

    #[test]
    fn client_rules_reach_nfsd_in_order() {
        let s = nfsd_settings(
            &fs(r#"{"policy": {"readOnly": true, "clientCertificates": {
                 "caBundle": "-----BEGIN CERTIFICATE-----\n",
                 "rules": [{"client": "backup", "readOnly": false},
                           {"client": "*", "rootAccess": "squash"},
                           {"client": "admin", "rootAccess": "allow"}]}}}"#),
            &[],
        );
        let rules = &s.policy.as_ref().unwrap().client_rules;
        let rule = |client: &str, read_only, root_squash| api::ClientRule {
            client: client.into(),
            read_only,
            root_squash,
        };
        assert_eq!(
            rules,
            &[
                rule("backup", Some(false), None),
                rule("*", None, Some(true)),
                rule("admin", None, Some(false)),
            ]
        );
        let toml = config_toml(&s).unwrap();
        assert!(
            toml.contains(concat!(
                "[[client-rule]]\nclient = \"backup\"\nread-only = false\n\n",
                "[[client-rule]]\nclient = \"*\"\nroot-squash = true\n\n",
                "[[client-rule]]\nclient = \"admin\"\nroot-squash = false\n"
            )),
            "{toml}"
        );
    }

    #[test]
    fn access_point_sizes_are_written_only_when_they_change() {
        let ap = |name: &str, uid: &str, size: Option<i64>| {
            let mut ap: AccessPoint = serde_json::from_value(serde_json::json!({
                "apiVersion": "openefs.io/v1alpha1", "kind": "AccessPoint",
                "metadata": {"name": name, "namespace": "team", "uid": uid},
                "spec": {"fileSystemRef": {"name": "shared"}, "rootDirectory": {"path": "/x"}},
            }))
            .unwrap();
            ap.status = size.map(|value| openefs_crds::AccessPointStatus {
                size_in_bytes: Some(SizeInBytes {
                    value,
                    timestamp: Time(Default::default()),
                }),
                ..Default::default()
            });
            ap
        };
        let aps = [
            ap("same", "u-1", Some(4096)),
            ap("grown", "u-2", Some(4096)),
            ap("new", "u-3", None),
            ap("unreported", "u-4", None),
        ];
        let id = |ap: &AccessPoint| AccessPointId::of(ap).unwrap().as_str().to_owned();
        let reported = |ap: &AccessPoint, stored_bytes| api::AccessPointUsage {
            id: id(ap),
            stored_bytes,
            max_bytes: None,
        };
        let usage = api::Usage {
            access_points: vec![
                reported(&aps[0], 4096),
                reported(&aps[1], 8192),
                reported(&aps[2], 0),
            ],
            ..Default::default()
        };
        let now = Time(Default::default());
        let written: Vec<(String, i64)> = access_point_sizes(&aps, &usage, &now)
            .into_iter()
            .map(|(name, size)| (name, size.value))
            .collect();
        assert_eq!(written, [("grown".to_owned(), 8192), ("new".to_owned(), 0)]);
    }

    #[test]
    fn tokens_are_random_hex_and_read_back_trimmed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        let secret = |data: &[u8]| Secret {
            data: Some(BTreeMap::from([(
                ADMIN_TOKEN_KEY.to_owned(),
                ByteString(data.to_vec()),
            )])),
            ..Secret::default()
        };
        assert_eq!(token_of(&secret(b"abc\n")), Some("abc".to_owned()));
        assert_eq!(token_of(&secret(b" ")), None);
        assert_eq!(token_of(&secret(b"\xff")), None);
        assert_eq!(token_of(&Secret::default()), None);
    }

    #[test]
    fn push_outcomes_become_reasons() {
        let reason = |r: Result<api::Usage, tonic::Status>| verdict(&r).reason;
        assert_eq!(reason(Ok(api::Usage::default())), REASON_APPLIED);
        assert_eq!(
            reason(Err(tonic::Status::unavailable("x"))),
            REASON_ADMIN_UNREACHABLE
        );
        assert_eq!(
            reason(Err(tonic::Status::unauthenticated("x"))),
            REASON_ADMIN_TOKEN_REJECTED
        );
        assert_eq!(
            reason(Err(tonic::Status::invalid_argument("x"))),
            REASON_SETTINGS_REFUSED
        );
        assert_eq!(
            reason(Err(tonic::Status::internal("x"))),
            REASON_ADMIN_FAILED
        );
    }

    fn access_point_object(uid: &str, spec: &str) -> AccessPoint {
        let mut ap = AccessPoint::new(uid, serde_json::from_str(spec).unwrap());
        ap.metadata.uid = Some(format!("00000000-0000-0000-0000-00000000000{uid}"));
        ap
    }

    #[test]
    fn access_points_being_deleted_or_without_uid_are_left_out() {
        let kept = access_point_object("a", r#"{"fileSystemRef": {"name": "shared"}}"#);
        let mut deleted = access_point_object("b", r#"{"fileSystemRef": {"name": "shared"}}"#);
        deleted.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let mut unsaved = kept.clone();
        unsaved.metadata.uid = None;
        let s = nfsd_settings(&fs("{}"), &[kept.clone(), deleted, unsaved]);
        assert_eq!(s.access_points.len(), 1);
        let ap = &s.access_points[0];
        assert_eq!(ap.id, AccessPointId::of(&kept).unwrap().as_str());
        assert_eq!(ap.root_directory, "/");
        assert!(ap.posix_user.is_none() && ap.creation_info.is_none());
        assert_eq!(ap.max_bytes, None);
    }

    /// nfsd reads the ConfigMap's file as the same settings the push sends.
    #[test]
    fn nfsd_parses_the_config_map_as_the_pushed_settings() {
        let dir = tempfile::tempdir().unwrap();
        let aps = [
            access_point_object("a", r#"{"fileSystemRef": {"name": "shared"}}"#),
            access_point_object(
                "b",
                r#"{"fileSystemRef": {"name": "shared"},
                    "posixUser": {"uid": 1000, "gid": 1000, "secondaryGids": [10, 11]},
                    "rootDirectory": {"path": "/teams/\"b\"",
                      "creationInfo": {"ownerUid": 1000, "ownerGid": 1000, "permissions": "0750"}},
                    "quota": {"maxBytes": "1.5Gi"}}"#,
            ),
        ];
        for (spec, aps) in [
            ("{}", &aps[..0]),
            (
                r#"{"policy": {"rootAccess": "squash", "readOnly": true}, "throughputMode": "elastic"}"#,
                &aps[..],
            ),
            (
                r#"{"throughputMode": "provisioned", "provisionedThroughputMiBps": 64}"#,
                &aps[1..],
            ),
        ] {
            let settings = nfsd_settings(&fs(spec), aps);
            assert_eq!(settings.access_points.len(), aps.len());
            let quotas: Vec<u64> = settings
                .access_points
                .iter()
                .filter_map(|ap| ap.max_bytes)
                .collect();
            let expected: &[u64] = if aps.is_empty() { &[] } else { &[3 << 29] };
            assert_eq!(quotas, expected, "{spec}");
            let file = dir.path().join(CONFIG_KEY);
            std::fs::write(&file, config_toml(&settings).unwrap()).unwrap();
            let config = openefs_nfsd::ServeArgs {
                config: Some(file),
                export: Some(dir.path().to_owned()),
                listen: Some("127.0.0.1:2049".parse().unwrap()),
                // As the StatefulSet gives them (requireTls needs them).
                tls_cert: Some("/etc/openefs/tls/tls.crt".into()),
                tls_key: Some("/etc/openefs/tls/tls.key".into()),
                ..Default::default()
            }
            .into_config()
            .unwrap();
            assert_eq!(
                Ok(config.settings),
                openefs_nfsd::admin::settings_from_api(settings),
                "{spec}"
            );
        }
    }

    /// A free loopback address (bound and released, then bound again at once).
    fn free_addr() -> std::net::SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    /// The real client against a real nfsd (in-process, as root): applied,
    /// a wrong token refused, a dead endpoint reported as unreachable.
    #[tokio::test]
    async fn pushes_to_a_real_nfsd() {
        use std::sync::Arc;

        let export = tempfile::tempdir().unwrap();
        let token_dir = tempfile::tempdir().unwrap();
        let token_file = token_dir.path().join("token");
        std::fs::write(&token_file, new_token()).unwrap();
        let token = std::fs::read_to_string(&token_file).unwrap();
        let mut config = openefs_nfsd::Config::new(export.path().to_owned(), free_addr());
        let admin_addr = free_addr();
        config.admin = Some(openefs_nfsd::admin::AdminSettings {
            listen: admin_addr,
            token_file,
        });
        let vfs = Arc::new(openefs_vfs::LocalVfs::new(export.path()).unwrap());
        let shutdown = tokio_util::sync::CancellationToken::new();
        let nfsd = tokio::spawn(openefs_nfsd::run(config, vfs, shutdown.clone()));
        let endpoint = format!("http://{admin_addr}");
        // This nfsd has no TLS material, so the policy does not require it.
        let squash = nfsd_settings(
            &fs(r#"{"policy": {"rootAccess": "squash", "requireTls": false}}"#),
            &[],
        );
        let mut pushed = Err(tonic::Status::unavailable("not tried"));
        for _ in 0..100 {
            pushed = GrpcAdmin
                .push(endpoint.clone(), token.clone(), squash.clone())
                .await;
            if pushed.as_ref().err().map(tonic::Status::code) != Some(tonic::Code::Unavailable) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(verdict(&pushed).reason, REASON_APPLIED, "{pushed:?}");
        assert_eq!(pushed.unwrap().client_connections, 0);
        let wrong = GrpcAdmin
            .push(endpoint, "not-the-token".into(), squash.clone())
            .await;
        assert_eq!(verdict(&wrong).reason, REASON_ADMIN_TOKEN_REJECTED);
        shutdown.cancel();
        nfsd.await.unwrap().unwrap();
        let gone = GrpcAdmin
            .push(format!("http://{admin_addr}"), token, squash)
            .await;
        assert_eq!(verdict(&gone).reason, REASON_ADMIN_UNREACHABLE, "{gone:?}");
    }
}
