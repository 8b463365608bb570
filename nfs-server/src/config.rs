//! Command line and config file of `openefs-nfsd serve`, validated into a
//! [`Config`]. Flags (and their env vars) override the TOML file's keys.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use openefs_kms::{KmsError, socket_path};

use crate::admin::AdminSettings;
use crate::encryption::{EncryptionSettings, KeySource};
use crate::performance::PerformanceMode;
use crate::settings::{
    AccessPointError, AccessPoints, ClientRule, ClientRuleError, ClientRules, NOBODY, Policy,
    Settings, ThroughputMode,
};
use crate::tls::TlsSettings;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The throughput mode's name in flags and the config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThroughputModeName {
    Bursting,
    Provisioned,
    Elastic,
}

/// Serve a local directory over NFSv4.1, NFSv4.0 and NFSv3 (with MOUNT v3), on one port.
#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// Directory to export as the NFS root.
    #[arg(long, env = "OPENEFS_EXPORT")]
    pub export: Option<PathBuf>,
    /// Address and port to accept NFS connections on.
    #[arg(long, env = "OPENEFS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// TOML file with the same keys as these flags (kebab-case); flags win.
    /// Also `[[access-point]]` and `[[client-rule]]` tables (docs/nfsd.md).
    #[arg(long, env = "OPENEFS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Map uid 0 of clients to the anonymous uid/gid.
    #[arg(long, env = "OPENEFS_ROOT_SQUASH")]
    pub root_squash: bool,
    /// Serve the file system read-only: every modifying operation fails
    /// with ROFS.
    #[arg(long, env = "OPENEFS_READ_ONLY")]
    pub read_only: bool,
    /// Uid for AUTH_NONE callers and squashed root [default: 65534].
    #[arg(long, env = "OPENEFS_ANON_UID")]
    pub anon_uid: Option<u32>,
    /// Gid for AUTH_NONE callers and squashed root [default: 65534].
    #[arg(long, env = "OPENEFS_ANON_GID")]
    pub anon_gid: Option<u32>,
    /// How long a client's state lives without renewal, e.g. "90s".
    #[arg(long, env = "OPENEFS_LEASE_TIME")]
    pub lease_time: Option<humantime::Duration>,
    /// Directory for the stable client records that let clients reclaim
    /// opens and locks after a restart; put it on the export's volume, e.g.
    /// /data/state next to /data/export. Without it state is in memory only
    /// and a restart loses every open and lock.
    #[arg(long, env = "OPENEFS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Longest grace period after a restart, in which only reclaims are
    /// served, e.g. "90s" [default: the lease time].
    #[arg(long, env = "OPENEFS_GRACE_TIME")]
    pub grace_time: Option<humantime::Duration>,
    /// Address and port for the Prometheus `/metrics` endpoint (off if unset).
    #[arg(long, env = "OPENEFS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Most client connections served at once [default: 1024].
    #[arg(long, env = "OPENEFS_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Log output format.
    #[arg(long, env = "OPENEFS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// PEM certificate chain for TLS on the NFS port, e.g.
    /// /etc/openefs/tls/tls.crt; re-read when the file changes.
    #[arg(long, env = "OPENEFS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert, e.g. /etc/openefs/tls/tls.key.
    #[arg(long, env = "OPENEFS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: TLS clients must present a certificate it signed
    /// (mTLS), e.g. /etc/openefs/tls/ca.crt; the config file's
    /// `[[client-rule]]` tables then grant by the certificate's name.
    #[arg(long, env = "OPENEFS_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Refuse plaintext RPC connections (needs --tls-cert and --tls-key).
    #[arg(long, env = "OPENEFS_REQUIRE_TLS")]
    pub require_tls: bool,
    /// Address and port for the gRPC admin API (off if unset); never the
    /// NFS port. Needs --admin-token-file.
    #[arg(long, env = "OPENEFS_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// File with the bearer token admin API callers must present, e.g. a
    /// mounted Secret; re-read on every call.
    #[arg(long, env = "OPENEFS_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// How data throughput is limited [default: elastic, no limit].
    #[arg(long, env = "OPENEFS_THROUGHPUT_MODE", value_enum)]
    pub throughput_mode: Option<ThroughputModeName>,
    /// Metered MiB/s of --throughput-mode provisioned.
    #[arg(long, env = "OPENEFS_PROVISIONED_THROUGHPUT_MIBPS")]
    pub provisioned_throughput_mibps: Option<u32>,
    /// Where file system calls run: on the RPC's own thread
    /// (general-purpose, lowest latency) or on a pool of blocking threads
    /// (max-io); fixed at start [default: general-purpose].
    #[arg(long, env = "OPENEFS_PERFORMANCE_MODE", value_enum)]
    pub performance_mode: Option<PerformanceMode>,
    /// Encrypt file contents at rest, with a data key wrapped by the
    /// 32-byte key-encryption key in this file (e.g. a mounted Secret's
    /// key); re-read when it is needed, so a changed file is a rotation.
    /// Needs --state-dir; excludes --kms-endpoint.
    #[arg(long, env = "OPENEFS_KEK_FILE")]
    pub kek_file: Option<PathBuf>,
    /// Encrypt file contents at rest, with a data key wrapped by a
    /// Kubernetes KMS v2 plugin on this unix socket (unix:///path or
    /// /path). Needs --state-dir; excludes --kek-file.
    #[arg(long, env = "OPENEFS_KMS_ENDPOINT")]
    pub kms_endpoint: Option<String>,
    /// A 32-byte KEK file the stored data key may still be wrapped with
    /// (the Secret or its key changed, or the source moved to KMS); it is
    /// unwrapped with it and re-wrapped with the current source at start.
    #[arg(long, env = "OPENEFS_PREVIOUS_KEK_FILE")]
    pub previous_kek_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    export: Option<PathBuf>,
    listen: Option<SocketAddr>,
    root_squash: Option<bool>,
    read_only: Option<bool>,
    anon_uid: Option<u32>,
    anon_gid: Option<u32>,
    lease_time: Option<String>,
    state_dir: Option<PathBuf>,
    grace_time: Option<String>,
    metrics_listen: Option<SocketAddr>,
    max_connections: Option<usize>,
    log_format: Option<LogFormat>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    require_tls: Option<bool>,
    admin_listen: Option<SocketAddr>,
    admin_token_file: Option<PathBuf>,
    throughput_mode: Option<ThroughputModeName>,
    provisioned_throughput_mibps: Option<u32>,
    performance_mode: Option<PerformanceMode>,
    kek_file: Option<PathBuf>,
    kms_endpoint: Option<String>,
    previous_kek_file: Option<PathBuf>,
    /// `[[access-point]]` tables.
    #[serde(default)]
    access_point: Vec<FileAccessPoint>,
    /// `[[client-rule]]` tables, in order.
    #[serde(default)]
    client_rule: Vec<FileClientRule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileClientRule {
    client: String,
    read_only: Option<bool>,
    root_squash: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileAccessPoint {
    id: String,
    /// Default `/`, the export itself (as EFS).
    root_directory: Option<String>,
    posix_user: Option<FilePosixUser>,
    creation_info: Option<FileCreationInfo>,
    /// The quota: most metered bytes stored through the access point.
    max_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FilePosixUser {
    uid: u32,
    gid: u32,
    #[serde(default)]
    secondary_gids: Vec<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileCreationInfo {
    owner_uid: u32,
    owner_gid: u32,
    /// e.g. `0o750` (TOML has octal literals).
    permissions: u32,
}

impl FileAccessPoint {
    fn to_access_point(&self) -> openefs_vfs::AccessPoint {
        openefs_vfs::AccessPoint {
            id: self.id.clone(),
            root_directory: self.root_directory.clone().unwrap_or_else(|| "/".into()),
            posix_user: self.posix_user.as_ref().map(|u| openefs_vfs::Identity {
                uid: u.uid,
                gid: u.gid,
                groups: u.secondary_gids.clone(),
            }),
            creation_info: self
                .creation_info
                .as_ref()
                .map(|c| openefs_vfs::CreationInfo {
                    owner_uid: c.owner_uid,
                    owner_gid: c.owner_gid,
                    permissions: c.permissions,
                }),
            max_bytes: self.max_bytes,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing config file {path}: {source}")]
    ParseFile {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid lease-time {value:?}: {source}")]
    LeaseTime {
        value: String,
        source: humantime::DurationError,
    },
    #[error("lease time {0:?} is outside 10s..=1h")]
    LeaseRange(Duration),
    #[error("invalid grace-time {value:?}: {source}")]
    GraceTime {
        value: String,
        source: humantime::DurationError,
    },
    #[error("grace time {0:?} is outside 1s..=1h")]
    GraceRange(Duration),
    #[error("missing required setting `{0}` (flag, env var or config file)")]
    Missing(&'static str),
    #[error("export {path} is not a directory")]
    ExportNotDir { path: PathBuf },
    #[error("max-connections must be at least 1")]
    NoConnections,
    #[error("{0} needs both tls-cert and tls-key")]
    TlsIncomplete(&'static str),
    #[error(
        "admin-listen and admin-token-file go together: the admin API is never served without a token"
    )]
    AdminIncomplete,
    #[error("admin-listen must differ from the NFS listen address {0}")]
    AdminOnNfsPort(SocketAddr),
    #[error("throughput-mode = \"provisioned\" needs provisioned-throughput-mibps (at least 1)")]
    ProvisionedRate,
    #[error(
        "provisioned-throughput-mibps is set but throughput-mode is not \"provisioned\" (it would be ignored)"
    )]
    RateNotProvisioned,
    #[error(transparent)]
    AccessPoint(#[from] AccessPointError),
    #[error(transparent)]
    ClientRule(#[from] ClientRuleError),
    /// Settings this server cannot apply ([`Settings::check`]).
    #[error("{0}")]
    Settings(String),
    #[error("kek-file and kms-endpoint exclude each other: the data key has one key source")]
    TwoKeySources,
    #[error("invalid kms-endpoint: {0}")]
    KmsEndpoint(#[from] KmsError),
    #[error("previous-kek-file needs kek-file or kms-endpoint (the key source to re-wrap with)")]
    PreviousWithoutSource,
    #[error(
        "encryption at rest (kek-file, kms-endpoint) needs state-dir, where the wrapped data key is kept"
    )]
    EncryptionWithoutStateDir,
}

/// Validated server settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub export: PathBuf,
    pub listen: SocketAddr,
    /// The settings to start with; [`Config::reload_settings`] gives new ones.
    pub settings: Settings,
    /// Where runtime settings come from on a reload.
    pub settings_source: SettingsSource,
    pub lease: Duration,
    /// Where the stable client records live; `None`: in memory only.
    pub state_dir: Option<PathBuf>,
    /// Longest grace period after a restart with recorded clients.
    pub grace: Duration,
    pub metrics_listen: Option<SocketAddr>,
    pub max_connections: usize,
    pub log_format: LogFormat,
    /// TLS on the NFS port; `None`: plaintext only.
    pub tls: Option<TlsSettings>,
    /// The gRPC admin API; `None`: not served.
    pub admin: Option<AdminSettings>,
    /// Where blocking vfs calls run; only read at start.
    pub performance_mode: PerformanceMode,
    /// Encryption at rest; `None`: file contents are stored as written.
    pub encryption: Option<EncryptionSettings>,
}

/// Largest READ/WRITE payload we negotiate.
pub const MAX_IO: u32 = 1 << 20;
/// Session request/response limit: one maximal READ/WRITE plus the other
/// operations of its compound.
pub const MAX_MESSAGE: u32 = MAX_IO + 64 * 1024;

impl Config {
    /// Largest RPC record accepted: a maximal message plus the RPC header and
    /// the largest credential and verifier (400 bytes each).
    pub fn max_record(&self) -> usize {
        MAX_MESSAGE as usize + 1024
    }

    /// Settings from the config file as it is now, under the flags given at
    /// start (flags still win). Keys that only count at start are validated
    /// but not applied.
    pub fn reload_settings(&self) -> Result<Settings, ConfigError> {
        self.settings_source.load()
    }

    /// Defaults for tests and embedding.
    pub fn new(export: PathBuf, listen: SocketAddr) -> Self {
        Self {
            export,
            listen,
            settings: Settings::default(),
            settings_source: SettingsSource::default(),
            lease: Duration::from_secs(90),
            state_dir: None,
            grace: Duration::from_secs(90),
            metrics_listen: None,
            max_connections: 1024,
            log_format: LogFormat::Text,
            tls: None,
            admin: None,
            performance_mode: PerformanceMode::default(),
            encryption: None,
        }
    }
}

impl ServeArgs {
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let settings_source = SettingsSource {
            file: self.config.clone(),
            flags: SettingsFlags {
                root_squash: self.root_squash,
                read_only: self.read_only,
                require_tls: self.require_tls,
                anon_uid: self.anon_uid,
                anon_gid: self.anon_gid,
                throughput_mode: self.throughput_mode,
                provisioned_throughput_mibps: self.provisioned_throughput_mibps,
            },
        };
        let settings = settings_source.flags.over(&file)?;
        let lease = match (self.lease_time, file.lease_time) {
            (Some(d), _) => d.into(),
            (None, Some(s)) => humantime::parse_duration(&s)
                .map_err(|source| ConfigError::LeaseTime { value: s, source })?,
            (None, None) => Duration::from_secs(90),
        };
        if !(Duration::from_secs(10)..=Duration::from_secs(3600)).contains(&lease) {
            return Err(ConfigError::LeaseRange(lease));
        }
        let grace = match (self.grace_time, file.grace_time) {
            (Some(d), _) => d.into(),
            (None, Some(s)) => humantime::parse_duration(&s)
                .map_err(|source| ConfigError::GraceTime { value: s, source })?,
            // A client renews within one lease, so it notices the restart
            // and reclaims within one too.
            (None, None) => lease,
        };
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&grace) {
            return Err(ConfigError::GraceRange(grace));
        }
        let export = self
            .export
            .or(file.export)
            .ok_or(ConfigError::Missing("export"))?;
        if !export.is_dir() {
            return Err(ConfigError::ExportNotDir { path: export });
        }
        let max_connections = self
            .max_connections
            .or(file.max_connections)
            .unwrap_or(1024);
        if max_connections == 0 {
            return Err(ConfigError::NoConnections);
        }
        let require_tls = settings.policy.require_tls;
        let client_ca = self.tls_client_ca.or(file.tls_client_ca);
        let tls = match (
            self.tls_cert.or(file.tls_cert),
            self.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsSettings {
                cert,
                key,
                client_ca,
            }),
            (None, None) if require_tls => return Err(ConfigError::TlsIncomplete("require-tls")),
            (None, None) if client_ca.is_some() => {
                return Err(ConfigError::TlsIncomplete("tls-client-ca"));
            }
            (None, None) => None,
            _ => return Err(ConfigError::TlsIncomplete("TLS")),
        };
        settings
            .check(tls.as_ref())
            .map_err(ConfigError::Settings)?;
        let listen = self
            .listen
            .or(file.listen)
            .ok_or(ConfigError::Missing("listen"))?;
        let admin = match (
            self.admin_listen.or(file.admin_listen),
            self.admin_token_file.or(file.admin_token_file),
        ) {
            (Some(addr), _) if addr == listen => return Err(ConfigError::AdminOnNfsPort(listen)),
            (Some(listen), Some(token_file)) => Some(AdminSettings { listen, token_file }),
            (None, None) => None,
            _ => return Err(ConfigError::AdminIncomplete),
        };
        let state_dir = self.state_dir.or(file.state_dir);
        let previous_kek_file = self.previous_kek_file.or(file.previous_kek_file);
        let source = match (
            self.kek_file.or(file.kek_file),
            self.kms_endpoint.or(file.kms_endpoint),
        ) {
            (Some(_), Some(_)) => return Err(ConfigError::TwoKeySources),
            (Some(kek_file), None) => Some(KeySource::Secret { kek_file }),
            (None, Some(endpoint)) => Some(KeySource::Kms {
                socket: socket_path(&endpoint)?,
            }),
            (None, None) if previous_kek_file.is_some() => {
                return Err(ConfigError::PreviousWithoutSource);
            }
            (None, None) => None,
        };
        if source.is_some() && state_dir.is_none() {
            return Err(ConfigError::EncryptionWithoutStateDir);
        }
        let encryption = source.map(|source| EncryptionSettings {
            source,
            previous_kek_file,
        });
        Ok(Config {
            export,
            listen,
            settings,
            settings_source,
            lease,
            state_dir,
            grace,
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            max_connections,
            log_format: self.log_format.or(file.log_format).unwrap_or_default(),
            tls,
            admin,
            performance_mode: self
                .performance_mode
                .or(file.performance_mode)
                .unwrap_or_default(),
            encryption,
        })
    }
}

/// The runtime settings given as flags (or env vars), which win over the
/// config file's keys at start and on every reload.
#[derive(Clone, Debug, Default)]
pub struct SettingsFlags {
    pub root_squash: bool,
    pub read_only: bool,
    pub require_tls: bool,
    pub anon_uid: Option<u32>,
    pub anon_gid: Option<u32>,
    pub throughput_mode: Option<ThroughputModeName>,
    pub provisioned_throughput_mibps: Option<u32>,
}

impl SettingsFlags {
    fn over(&self, file: &FileConfig) -> Result<Settings, ConfigError> {
        Ok(Settings {
            policy: Policy {
                root_squash: self.root_squash || file.root_squash.unwrap_or(false),
                read_only: self.read_only || file.read_only.unwrap_or(false),
                require_tls: self.require_tls || file.require_tls.unwrap_or(false),
                anon_uid: self.anon_uid.or(file.anon_uid).unwrap_or(NOBODY),
                anon_gid: self.anon_gid.or(file.anon_gid).unwrap_or(NOBODY),
                client_rules: ClientRules::new(
                    file.client_rule
                        .iter()
                        .map(|r| ClientRule {
                            client: r.client.clone(),
                            read_only: r.read_only,
                            root_squash: r.root_squash,
                        })
                        .collect(),
                )?,
            },
            throughput: throughput_mode(
                self.throughput_mode.or(file.throughput_mode),
                self.provisioned_throughput_mibps
                    .or(file.provisioned_throughput_mibps),
            )?,
            access_points: AccessPoints::new(
                file.access_point
                    .iter()
                    .map(FileAccessPoint::to_access_point)
                    .collect(),
            )?,
        })
    }
}

fn throughput_mode(
    name: Option<ThroughputModeName>,
    mibps: Option<u32>,
) -> Result<ThroughputMode, ConfigError> {
    match (name, mibps) {
        (Some(ThroughputModeName::Provisioned), Some(mibps)) if mibps > 0 => {
            Ok(ThroughputMode::Provisioned { mibps })
        }
        (Some(ThroughputModeName::Provisioned), _) => Err(ConfigError::ProvisionedRate),
        (_, Some(_)) => Err(ConfigError::RateNotProvisioned),
        (Some(ThroughputModeName::Bursting), None) => Ok(ThroughputMode::Bursting),
        (Some(ThroughputModeName::Elastic) | None, None) => Ok(ThroughputMode::Elastic),
    }
}

/// The config file (if any) and the flags runtime settings come from.
#[derive(Clone, Debug, Default)]
pub struct SettingsSource {
    pub file: Option<PathBuf>,
    pub flags: SettingsFlags,
}

impl SettingsSource {
    pub fn load(&self) -> Result<Settings, ConfigError> {
        let file = match &self.file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        self.flags.over(&file)
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::ParseFile {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_apply() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("nfsd.toml");
        std::fs::write(
            &cfg,
            format!(
                "export = {:?}\nlisten = \"127.0.0.1:2049\"\nlease-time = \"30s\"\nroot-squash = true\n\
                 performance-mode = \"max-io\"\nstate-dir = \"/data/state\"\n\
                 kek-file = \"/etc/openefs/kek/kek\"\n",
                dir.path()
            ),
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(cfg),
            listen: Some("127.0.0.1:3049".parse().unwrap()),
            ..Default::default()
        };
        let c = args.into_config().unwrap();
        assert_eq!(c.listen.port(), 3049);
        assert_eq!(c.lease, Duration::from_secs(30));
        // The grace period follows the lease unless set.
        assert_eq!(c.grace, Duration::from_secs(30));
        assert_eq!(c.state_dir, Some("/data/state".into()));
        assert_eq!(
            c.encryption.map(|e| e.source),
            Some(KeySource::Secret {
                kek_file: "/etc/openefs/kek/kek".into()
            })
        );
        assert!(c.settings.policy.root_squash);
        assert_eq!(c.performance_mode, PerformanceMode::MaxIo);
        assert_eq!(
            (
                c.settings.policy.anon_uid,
                c.settings.policy.anon_gid,
                c.max_connections
            ),
            (65534, 65534, 1024)
        );
    }

    #[test]
    fn client_rules_come_from_the_file_in_order_and_need_a_client_ca() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("nfsd.toml");
        let rules = concat!(
            "[[client-rule]]\nclient = \"backup.example\"\nread-only = false\n",
            "[[client-rule]]\nclient = \"*\"\nroot-squash = true\n",
        );
        std::fs::write(
            &cfg,
            format!(
                "export = {:?}\nlisten = \"127.0.0.1:2049\"\nread-only = true\n{rules}",
                dir.path()
            ),
        )
        .unwrap();
        let args = || ServeArgs {
            config: Some(cfg.clone()),
            tls_cert: Some("/etc/openefs/tls/tls.crt".into()),
            tls_key: Some("/etc/openefs/tls/tls.key".into()),
            ..Default::default()
        };
        let err = args().into_config().unwrap_err();
        assert!(
            matches!(&err, ConfigError::Settings(m) if m.contains("--tls-client-ca")),
            "{err}"
        );
        let c = ServeArgs {
            tls_client_ca: Some("/etc/openefs/tls/ca.crt".into()),
            ..args()
        }
        .into_config()
        .unwrap();
        let rules = c.settings.policy.client_rules.as_slice();
        assert_eq!(
            rules,
            [
                ClientRule {
                    client: "backup.example".into(),
                    read_only: Some(false),
                    root_squash: None
                },
                ClientRule {
                    client: "*".into(),
                    read_only: None,
                    root_squash: Some(true)
                },
            ]
        );
        std::fs::write(
            &cfg,
            format!(
                "export = {:?}\nlisten = \"127.0.0.1:2049\"\n[[client-rule]]\nclient = \"a\"\n",
                dir.path()
            ),
        )
        .unwrap();
        assert!(matches!(
            c.reload_settings(),
            Err(ConfigError::ClientRule(ClientRuleError::Empty(_)))
        ));
    }

    #[test]
    fn a_reload_reads_the_file_again_under_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("nfsd.toml");
        let write = |body: &str| {
            std::fs::write(
                &cfg,
                format!(
                    "export = {:?}\nlisten = \"127.0.0.1:2049\"\n{body}",
                    dir.path()
                ),
            )
            .unwrap()
        };
        write("anon-uid = 99\n");
        let c = ServeArgs {
            config: Some(cfg.clone()),
            anon_gid: Some(7),
            ..Default::default()
        }
        .into_config()
        .unwrap();
        assert!(!c.settings.policy.root_squash);
        write("root-squash = true\nread-only = true\nanon-uid = 98\nanon-gid = 1\n");
        let p = c.reload_settings().unwrap().policy;
        assert_eq!(
            (p.root_squash, p.read_only, p.anon_uid, p.anon_gid),
            (true, true, 98, 7)
        );
        write(concat!(
            "[[access-point]]\nid = \"a\"\nroot-directory = \"/teams/a\"\n",
            "posix-user = { uid = 1000, gid = 1000, secondary-gids = [10] }\n",
            "creation-info = { owner-uid = 1000, owner-gid = 1000, permissions = 0o750 }\n",
            "max-bytes = 1073741824\n",
            "[[access-point]]\nid = \"b\"\n",
        ));
        let aps = c.reload_settings().unwrap().access_points;
        let [a, b] = aps.as_slice() else {
            panic!("two access points: {aps:?}")
        };
        assert_eq!(
            (
                a.id.as_str(),
                a.root_directory.as_str(),
                b.root_directory.as_str()
            ),
            ("a", "/teams/a", "/")
        );
        assert_eq!(
            a.posix_user.as_ref().map(|u| u.groups.clone()),
            Some(vec![10])
        );
        assert_eq!(a.creation_info.map(|c| c.permissions), Some(0o750));
        assert!(b.posix_user.is_none() && b.creation_info.is_none());
        assert_eq!((a.max_bytes, b.max_bytes), (Some(1 << 30), None));
        write("[[access-point]]\nid = \"a\"\n[[access-point]]\nid = \"a\"\n");
        assert!(matches!(
            c.reload_settings(),
            Err(ConfigError::AccessPoint(AccessPointError::DuplicateId(_)))
        ));
        write("[[access-point]]\nid = \"a\"\nroot-directory = \"/a/../..\"\n");
        assert!(matches!(
            c.reload_settings(),
            Err(ConfigError::AccessPoint(AccessPointError::BadRoot { .. }))
        ));
        write("root-squash = \"yes\"\n");
        assert!(matches!(
            c.reload_settings(),
            Err(ConfigError::ParseFile { .. })
        ));
        assert_eq!(c.settings.throughput, ThroughputMode::Elastic);
        write("throughput-mode = \"provisioned\"\nprovisioned-throughput-mibps = 20\n");
        assert_eq!(
            c.reload_settings().unwrap().throughput,
            ThroughputMode::Provisioned { mibps: 20 }
        );
        write("throughput-mode = \"bursting\"\n");
        assert_eq!(
            c.reload_settings().unwrap().throughput,
            ThroughputMode::Bursting
        );
        write("throughput-mode = \"provisioned\"\n");
        assert!(matches!(
            c.reload_settings(),
            Err(ConfigError::ProvisionedRate)
        ));
        write("throughput-mode = \"provisioned\"\nprovisioned-throughput-mibps = 0\n");
        assert!(matches!(
            c.reload_settings(),
            Err(ConfigError::ProvisionedRate)
        ));
        write("provisioned-throughput-mibps = 5\n");
        assert!(matches!(
            c.reload_settings(),
            Err(ConfigError::RateNotProvisioned)
        ));
        write("throughput-mode = \"fast\"\n");
        assert!(matches!(
            c.reload_settings(),
            Err(ConfigError::ParseFile { .. })
        ));
    }

    #[test]
    fn rejects_bad_settings() {
        let dir = tempfile::tempdir().unwrap();
        let base = || ServeArgs {
            export: Some(dir.path().to_owned()),
            listen: Some("127.0.0.1:2049".parse().unwrap()),
            ..Default::default()
        };
        assert!(matches!(
            ServeArgs {
                export: None,
                ..base()
            }
            .into_config(),
            Err(ConfigError::Missing("export"))
        ));
        assert!(matches!(
            ServeArgs {
                lease_time: Some("1s".parse().unwrap()),
                ..base()
            }
            .into_config(),
            Err(ConfigError::LeaseRange(_))
        ));
        assert!(matches!(
            ServeArgs {
                grace_time: Some("0s".parse().unwrap()),
                ..base()
            }
            .into_config(),
            Err(ConfigError::GraceRange(_))
        ));
        let c = ServeArgs {
            grace_time: Some("15s".parse().unwrap()),
            state_dir: Some(dir.path().join("state")),
            ..base()
        }
        .into_config()
        .unwrap();
        assert_eq!(c.grace, Duration::from_secs(15));
        assert_eq!(c.state_dir, Some(dir.path().join("state")));
        assert_eq!(c.performance_mode, PerformanceMode::GeneralPurpose);
        assert!(matches!(
            ServeArgs {
                require_tls: true,
                ..base()
            }
            .into_config(),
            Err(ConfigError::TlsIncomplete("require-tls"))
        ));
        assert!(matches!(
            ServeArgs {
                tls_key: Some("/etc/openefs/tls/tls.key".into()),
                ..base()
            }
            .into_config(),
            Err(ConfigError::TlsIncomplete("TLS"))
        ));
        let c = ServeArgs {
            tls_cert: Some("/etc/openefs/tls/tls.crt".into()),
            tls_key: Some("/etc/openefs/tls/tls.key".into()),
            require_tls: true,
            ..base()
        }
        .into_config()
        .unwrap();
        assert_eq!(
            c.tls,
            Some(TlsSettings {
                cert: "/etc/openefs/tls/tls.crt".into(),
                key: "/etc/openefs/tls/tls.key".into(),
                client_ca: None,
            })
        );
        assert!(c.settings.policy.require_tls);
        assert!(matches!(
            ServeArgs {
                admin_listen: Some("127.0.0.1:9000".parse().unwrap()),
                ..base()
            }
            .into_config(),
            Err(ConfigError::AdminIncomplete)
        ));
        assert!(matches!(
            ServeArgs {
                admin_listen: Some("127.0.0.1:2049".parse().unwrap()),
                admin_token_file: Some("/etc/openefs/admin/token".into()),
                ..base()
            }
            .into_config(),
            Err(ConfigError::AdminOnNfsPort(_))
        ));
        assert!(matches!(
            ServeArgs {
                kek_file: Some("/etc/openefs/kek/kek".into()),
                ..base()
            }
            .into_config(),
            Err(ConfigError::EncryptionWithoutStateDir)
        ));
        let state_dir = Some(dir.path().join("state"));
        assert!(matches!(
            ServeArgs {
                kek_file: Some("/etc/openefs/kek/kek".into()),
                kms_endpoint: Some("unix:///run/kms.sock".into()),
                state_dir: state_dir.clone(),
                ..base()
            }
            .into_config(),
            Err(ConfigError::TwoKeySources)
        ));
        assert!(matches!(
            ServeArgs {
                previous_kek_file: Some("/etc/openefs/kek/old".into()),
                state_dir: state_dir.clone(),
                ..base()
            }
            .into_config(),
            Err(ConfigError::PreviousWithoutSource)
        ));
        assert!(matches!(
            ServeArgs {
                kms_endpoint: Some("run/kms.sock".into()),
                state_dir: state_dir.clone(),
                ..base()
            }
            .into_config(),
            Err(ConfigError::KmsEndpoint(_))
        ));
        let c = ServeArgs {
            kms_endpoint: Some("unix:///run/kms.sock".into()),
            previous_kek_file: Some("/etc/openefs/kek/old".into()),
            state_dir: state_dir.clone(),
            ..base()
        }
        .into_config()
        .unwrap();
        assert_eq!(
            c.encryption,
            Some(EncryptionSettings {
                source: KeySource::Kms {
                    socket: "/run/kms.sock".into()
                },
                previous_kek_file: Some("/etc/openefs/kek/old".into()),
            })
        );
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "no-such-key = 1\n").unwrap();
        assert!(matches!(
            ServeArgs {
                config: Some(bad),
                ..base()
            }
            .into_config(),
            Err(ConfigError::ParseFile { .. })
        ));
    }
}
