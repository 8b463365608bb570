//! The settings that may change while the server runs: the file system
//! policy and the access points (and, as it lands, the throughput mode).
//!
//! They are one immutable [`Settings`] value; a change replaces the whole
//! value at once ([`SettingsCell::replace`]), so an RPC sees either the old
//! or the new settings, never a mix. Changes come from re-reading the config
//! file on SIGHUP and from the admin API.

use std::sync::Arc;

use std::collections::HashSet;

use openefs_vfs::{AccessPoint, Identity};
use tokio::sync::watch;

use crate::tls::TlsSettings;

pub use crate::throughput::ThroughputMode;

/// Uid and gid of AUTH_NONE callers and squashed root unless configured.
pub const NOBODY: u32 = 65534;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub policy: Policy,
    /// How data throughput is limited (`crate::throughput`).
    pub throughput: ThroughputMode,
    pub access_points: AccessPoints,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            policy: Policy {
                root_squash: false,
                read_only: false,
                require_tls: false,
                anon_uid: NOBODY,
                anon_gid: NOBODY,
                client_rules: ClientRules::default(),
            },
            throughput: ThroughputMode::default(),
            access_points: AccessPoints::default(),
        }
    }
}

impl Settings {
    /// What a server with or without TLS material (`tls`) can apply.
    pub fn check(&self, tls: Option<&TlsSettings>) -> Result<(), String> {
        if self.policy.require_tls && tls.is_none() {
            return Err(
                "policy.requireTls needs the server's TLS certificate and key (--tls-cert, \
                 --tls-key); refusing settings that would refuse every client"
                    .to_owned(),
            );
        }
        let verifies_clients = tls.is_some_and(|t| t.client_ca.is_some());
        if !self.policy.client_rules.is_empty() && !verifies_clients {
            return Err(
                "policy client rules need client certificates verified against --tls-client-ca; \
                 without it no rule could ever apply"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// The settings a connection whose verified client certificate bears
    /// `client_names` works under: the first client rule naming it
    /// overrides the file system-wide policy; `None` when no rule applies
    /// (the settings as they are).
    pub fn for_client(&self, client_names: &[String]) -> Option<(&ClientRule, Settings)> {
        let rule = self.policy.client_rules.matching(client_names)?;
        let mut settings = self.clone();
        if let Some(read_only) = rule.read_only {
            settings.policy.read_only = read_only;
        }
        if let Some(root_squash) = rule.root_squash {
            settings.policy.root_squash = root_squash;
        }
        Some((rule, settings))
    }
}

/// The access points served, validated: only [`AccessPoints::new`] makes
/// one, so every `Settings` holds a valid set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessPoints(Vec<AccessPoint>);

/// Longest access point id; EFS's are 22 characters, Kubernetes names 253.
pub const MAX_ACCESS_POINT_ID: usize = 253;
/// Longest root directory (Linux's PATH_MAX).
const MAX_ROOT_DIRECTORY: usize = 4096;
/// Linux's NAME_MAX.
const MAX_COMPONENT: usize = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccessPointError {
    #[error(
        "access point id {0:?} is not 1 to 253 of the characters a-z A-Z 0-9 . _ - (and not . or ..)"
    )]
    BadId(String),
    #[error("access point id {0:?} is configured twice")]
    DuplicateId(String),
    #[error(
        "access point {id:?}: root directory {root:?} must be an absolute path of at most 4096 bytes without `.` or `..` components, NUL, or components longer than 255 bytes"
    )]
    BadRoot { id: String, root: String },
    #[error("access point {id:?}: permissions {permissions:#o} exceed 0o7777")]
    BadPermissions { id: String, permissions: u32 },
    #[error("access point {id:?}: uid/gid 4294967295 (-1) is not an id")]
    BadUser { id: String },
}

impl AccessPoints {
    pub fn new(aps: Vec<AccessPoint>) -> Result<Self, AccessPointError> {
        let mut seen = HashSet::with_capacity(aps.len());
        for ap in &aps {
            validate(ap)?;
            if !seen.insert(ap.id.as_str()) {
                return Err(AccessPointError::DuplicateId(ap.id.clone()));
            }
        }
        Ok(Self(aps))
    }

    pub fn as_slice(&self) -> &[AccessPoint] {
        &self.0
    }
}

fn validate(ap: &AccessPoint) -> Result<(), AccessPointError> {
    let id_ok = !ap.id.is_empty()
        && ap.id.len() <= MAX_ACCESS_POINT_ID
        && ap.id != "."
        && ap.id != ".."
        && ap
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !id_ok {
        return Err(AccessPointError::BadId(ap.id.clone()));
    }
    let root = &ap.root_directory;
    let root_ok = root.starts_with('/')
        && root.len() <= MAX_ROOT_DIRECTORY
        && !root.contains('\0')
        && root
            .split('/')
            .all(|c| c != "." && c != ".." && c.len() <= MAX_COMPONENT);
    if !root_ok {
        return Err(AccessPointError::BadRoot {
            id: ap.id.clone(),
            root: root.clone(),
        });
    }
    if let Some(info) = &ap.creation_info {
        if info.permissions > 0o7777 {
            return Err(AccessPointError::BadPermissions {
                id: ap.id.clone(),
                permissions: info.permissions,
            });
        }
        if info.owner_uid == u32::MAX || info.owner_gid == u32::MAX {
            return Err(AccessPointError::BadUser { id: ap.id.clone() });
        }
    }
    if let Some(user) = &ap.posix_user
        && (user.uid == u32::MAX || user.gid == u32::MAX || user.groups.contains(&u32::MAX))
    {
        return Err(AccessPointError::BadUser { id: ap.id.clone() });
    }
    Ok(())
}

/// Who callers are taken to be, and what they may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Map uid 0 (and gid 0) of clients to the anonymous ids.
    pub root_squash: bool,
    /// Refuse every operation that would modify the file system (ROFS).
    pub read_only: bool,
    /// Serve only TLS connections: new plaintext connections are refused,
    /// open ones are closed at their next call. Needs the server's TLS
    /// material ([`Settings::check`]).
    pub require_tls: bool,
    pub anon_uid: u32,
    pub anon_gid: u32,
    /// Overrides for TLS clients named by their verified certificates.
    pub client_rules: ClientRules,
}

/// What one TLS client, named by its verified certificate (mTLS), may do
/// unlike the file system-wide policy: EFS grants write and root access
/// per IAM principal; a client certificate is our principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRule {
    /// The certificate's common name or one of its DNS names; `*` matches
    /// every verified client certificate.
    pub client: String,
    /// Overrides the policy's `read_only`; `None` keeps it.
    pub read_only: Option<bool>,
    /// Overrides the policy's `root_squash`; `None` keeps it.
    pub root_squash: Option<bool>,
}

/// The client rules, in order (the first that names a client applies);
/// only [`ClientRules::new`] makes one, so every `Policy` holds valid rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientRules(Vec<ClientRule>);

/// Longest client name a rule may give (a DNS name's limit).
const MAX_CLIENT_NAME: usize = 253;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientRuleError {
    #[error(
        "client rule {0:?}: the client must be 1 to 253 printable ASCII characters (a common name, a DNS name, or *)"
    )]
    BadClient(String),
    #[error("client rule {0:?} overrides nothing: give read-only, root-squash or both")]
    Empty(String),
}

impl ClientRules {
    pub fn new(rules: Vec<ClientRule>) -> Result<Self, ClientRuleError> {
        for rule in &rules {
            let name_ok = !rule.client.is_empty()
                && rule.client.len() <= MAX_CLIENT_NAME
                && rule
                    .client
                    .bytes()
                    .all(|b| b.is_ascii_graphic() || b == b' ');
            if !name_ok {
                return Err(ClientRuleError::BadClient(rule.client.clone()));
            }
            if rule.read_only.is_none() && rule.root_squash.is_none() {
                return Err(ClientRuleError::Empty(rule.client.clone()));
            }
        }
        Ok(Self(rules))
    }

    pub fn as_slice(&self) -> &[ClientRule] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first rule naming one of `client_names` (or `*`, when there is a
    /// verified certificate at all).
    fn matching(&self, client_names: &[String]) -> Option<&ClientRule> {
        if client_names.is_empty() {
            return None;
        }
        self.0
            .iter()
            .find(|r| r.client == "*" || client_names.contains(&r.client))
    }
}

impl Policy {
    /// Caller identity from AUTH_SYS credentials, after root squashing.
    pub fn identity(&self, uid: u32, gid: u32, groups: &[u32]) -> Identity {
        if self.root_squash && uid == 0 {
            return self.anonymous();
        }
        let squash_gid = |g: u32| {
            if self.root_squash && g == 0 {
                self.anon_gid
            } else {
                g
            }
        };
        Identity {
            uid,
            gid: squash_gid(gid),
            groups: groups.iter().copied().map(squash_gid).collect(),
        }
    }

    /// Of the ACCESS bits the file system `granted`, those the policy lets
    /// callers use: none that modify under `read_only`, so clients fail
    /// early (and cache the answer) instead of trying and getting ROFS.
    pub fn allowed_access(&self, granted: u32) -> u32 {
        use openefs_vfs::access::{DELETE, EXTEND, MODIFY};
        if self.read_only {
            granted & !(MODIFY | EXTEND | DELETE)
        } else {
            granted
        }
    }

    /// The identity of AUTH_NONE callers and squashed root.
    pub fn anonymous(&self) -> Identity {
        Identity {
            uid: self.anon_uid,
            gid: self.anon_gid,
            groups: Vec::new(),
        }
    }
}

/// The current settings, shared by every connection; a `watch` channel so
/// that parts which keep derived state can wait for changes.
#[derive(Debug)]
pub struct SettingsCell(watch::Sender<Arc<Settings>>);

impl SettingsCell {
    pub fn new(settings: Settings) -> Self {
        Self(watch::Sender::new(Arc::new(settings)))
    }

    pub fn current(&self) -> Arc<Settings> {
        self.0.borrow().clone()
    }

    /// Installs `settings` for every RPC that starts from now on.
    pub fn replace(&self, settings: Settings) {
        self.0.send_replace(Arc::new(settings));
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Settings>> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openefs_vfs::CreationInfo;

    fn ap(id: &str, root: &str) -> AccessPoint {
        AccessPoint {
            id: id.into(),
            root_directory: root.into(),
            posix_user: None,
            creation_info: None,
            max_bytes: None,
        }
    }

    #[test]
    fn access_points_are_validated() {
        let ok =
            AccessPoints::new(vec![ap("fsap-0a1", "/"), ap("b_2.x", "/teams//b/")]).expect("valid");
        assert_eq!(ok.as_slice().len(), 2);
        for id in ["", ".", "..", "a/b", "a b", "ä", &"x".repeat(254)] {
            assert_eq!(
                AccessPoints::new(vec![ap(id, "/")]),
                Err(AccessPointError::BadId(id.into())),
                "{id:?}"
            );
        }
        assert_eq!(
            AccessPoints::new(vec![ap("a", "/x"), ap("a", "/y")]),
            Err(AccessPointError::DuplicateId("a".into()))
        );
        let long = format!("/{}", "x".repeat(256));
        for root in ["", "x", "/a/../b", "/..", "/./a", "/a\0b", long.as_str()] {
            assert!(
                matches!(
                    AccessPoints::new(vec![ap("a", root)]),
                    Err(AccessPointError::BadRoot { .. })
                ),
                "{root:?}"
            );
        }
        let mut bad = ap("a", "/x");
        bad.creation_info = Some(CreationInfo {
            owner_uid: 1,
            owner_gid: 1,
            permissions: 0o10000,
        });
        assert!(matches!(
            AccessPoints::new(vec![bad.clone()]),
            Err(AccessPointError::BadPermissions { .. })
        ));
        bad.creation_info = None;
        bad.posix_user = Some(Identity {
            uid: 1,
            gid: u32::MAX,
            groups: vec![],
        });
        assert!(matches!(
            AccessPoints::new(vec![bad]),
            Err(AccessPointError::BadUser { .. })
        ));
    }

    #[test]
    fn root_squash_maps_root_and_group_zero() {
        let mut p = Settings::default().policy;
        let root = p.identity(0, 0, &[0, 5]);
        assert_eq!((root.uid, root.gid, root.groups), (0, 0, vec![0, 5]));
        p.root_squash = true;
        let root = p.identity(0, 0, &[0, 5]);
        assert_eq!((root.uid, root.gid, root.groups), (65534, 65534, vec![]));
        let user = p.identity(1000, 0, &[0, 5]);
        assert_eq!(
            (user.uid, user.gid, user.groups),
            (1000, 65534, vec![65534, 5])
        );
    }

    fn rule(client: &str, read_only: Option<bool>, root_squash: Option<bool>) -> ClientRule {
        ClientRule {
            client: client.into(),
            read_only,
            root_squash,
        }
    }

    #[test]
    fn client_rules_are_validated() {
        for client in ["", "a\tb", "ä", &"x".repeat(254)] {
            assert_eq!(
                ClientRules::new(vec![rule(client, Some(true), None)]),
                Err(ClientRuleError::BadClient(client.into())),
                "{client:?}"
            );
        }
        assert_eq!(
            ClientRules::new(vec![rule("node-a", None, None)]),
            Err(ClientRuleError::Empty("node-a".into()))
        );
        assert!(ClientRules::new(vec![rule("system:node:a b", None, Some(false))]).is_ok());
    }

    #[test]
    fn the_first_rule_naming_a_client_overrides_the_policy() {
        let mut s = Settings::default();
        s.policy.read_only = true;
        s.policy.root_squash = true;
        s.policy.client_rules = ClientRules::new(vec![
            rule("backup.example", Some(false), None),
            rule("admin", Some(false), Some(false)),
            rule("*", None, Some(false)),
        ])
        .unwrap();
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();

        // A DNS name of the certificate matches; the rule leaves root squashed.
        let (r, backup) = s.for_client(&names(&["CN x", "backup.example"])).unwrap();
        assert_eq!(r.client, "backup.example");
        assert!(!backup.policy.read_only && backup.policy.root_squash);
        let (_, admin) = s.for_client(&names(&["admin"])).unwrap();
        assert!(!admin.policy.read_only && !admin.policy.root_squash);
        // "*": any other verified certificate.
        let (r, other) = s.for_client(&names(&["someone"])).unwrap();
        assert_eq!(r.client, "*");
        assert!(other.policy.read_only && !other.policy.root_squash);
        // No certificate: the file system-wide policy.
        assert!(s.for_client(&[]).is_none());
        // Only the policy changes.
        assert_eq!(backup.access_points, s.access_points);
    }

    #[test]
    fn client_rules_need_client_certificates() {
        let mut s = Settings::default();
        s.policy.client_rules = ClientRules::new(vec![rule("a", Some(true), None)]).unwrap();
        let tls = |client_ca: Option<&str>| TlsSettings {
            cert: "c".into(),
            key: "k".into(),
            client_ca: client_ca.map(Into::into),
        };
        assert!(s.check(None).is_err());
        assert!(
            s.check(Some(&tls(None)))
                .unwrap_err()
                .contains("--tls-client-ca")
        );
        assert!(s.check(Some(&tls(Some("ca")))).is_ok());
        s.policy.require_tls = true;
        s.policy.client_rules = ClientRules::default();
        assert!(s.check(None).unwrap_err().contains("requireTls"));
        assert!(s.check(Some(&tls(None))).is_ok());
    }

    #[test]
    fn a_replacement_is_seen_whole_by_new_readers() {
        let cell = SettingsCell::new(Settings::default());
        let changes = cell.subscribe();
        let before = cell.current();
        let mut next = Settings::default();
        next.policy.root_squash = true;
        cell.replace(next.clone());
        assert!(changes.has_changed().unwrap());
        assert_eq!(*cell.current(), next);
        assert!(!before.policy.root_squash);
    }
}
