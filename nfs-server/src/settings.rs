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
            },
            throughput: ThroughputMode::default(),
            access_points: AccessPoints::default(),
        }
    }
}

impl Settings {
    /// What a server with (`tls_served`) or without TLS material can apply.
    pub fn check(&self, tls_served: bool) -> Result<(), String> {
        if self.policy.require_tls && !tls_served {
            return Err(
                "policy.requireTls needs the server's TLS certificate and key (--tls-cert, \
                 --tls-key); refusing settings that would refuse every client"
                    .to_owned(),
            );
        }
        Ok(())
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
