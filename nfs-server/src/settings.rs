//! The settings that may change while the server runs: the file system
//! policy (and, as they land, access points and the throughput mode).
//!
//! They are one immutable [`Settings`] value; a change replaces the whole
//! value at once ([`SettingsCell::replace`]), so an RPC sees either the old
//! or the new settings, never a mix. Changes come from re-reading the config
//! file on SIGHUP and from the admin API.

use std::sync::Arc;

use openefs_vfs::Identity;
use tokio::sync::watch;

pub use crate::throughput::ThroughputMode;

/// Uid and gid of AUTH_NONE callers and squashed root unless configured.
pub const NOBODY: u32 = 65534;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub policy: Policy,
    /// How data throughput is limited (`crate::throughput`).
    pub throughput: ThroughputMode,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            policy: Policy {
                root_squash: false,
                read_only: false,
                anon_uid: NOBODY,
                anon_gid: NOBODY,
            },
            throughput: ThroughputMode::default(),
        }
    }
}

/// Who callers are taken to be, and what they may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Map uid 0 (and gid 0) of clients to the anonymous ids.
    pub root_squash: bool,
    /// Refuse every operation that would modify the file system (ROFS).
    pub read_only: bool,
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
