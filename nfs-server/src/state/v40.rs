//! NFSv4.0 state (RFC 7530): clients made by SETCLIENTID and confirmed by
//! SETCLIENTID_CONFIRM, leases renewed by RENEW and by use, and the owner
//! seqids that give 4.0 the replay protection 4.1 gets from session slots.
//! Opens, locks, leases and the grace period are the 4.1 ones.

use openefs_nfs_wire::nfs4::types::NetAddr4;
use openefs_nfs_wire::nfs4::{Nfs4Error, Nfs4Status, OP_OPEN, ResOp};

use super::*;

#[derive(Debug)]
pub(super) struct V40Client {
    /// The `setclientid_confirm` verifier of this record.
    confirm: [u8; 8],
    /// The verifier of a callback update of this (confirmed) record: a
    /// SETCLIENTID with the same client verifier (RFC 7530 §16.33.5), which
    /// keeps the client id once confirmed.
    update: Option<[u8; 8]>,
    /// The AUTH_SYS uid that set the client id: another may not take it
    /// over while the lease lasts.
    principal: u32,
    /// `cb_location`, returned with NFS4ERR_CLID_INUSE. Never called: no
    /// delegation is granted, so there is nothing to call back about.
    callback: NetAddr4,
}

/// A 4.0 open or lock owner.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OwnerKey {
    pub client: ClientId,
    /// A lock owner; otherwise an open owner.
    pub lock: bool,
    pub owner: Vec<u8>,
}

#[derive(Debug)]
pub(super) struct OwnerSeq {
    /// The seqid of the last request that advanced the sequence.
    last: u32,
    /// That request's result and the current filehandle after it.
    reply: Option<(ResOp, Option<FileHandle>)>,
    /// An open owner confirmed by OPEN_CONFIRM; lock owners always are.
    confirmed: bool,
    /// The open stateid its last request closed: a retransmitted CLOSE
    /// names a stateid that is gone, and must still find its owner.
    closed: Option<[u8; 12]>,
    /// The seqid of a request still executing: its retransmission must
    /// neither run again nor find the previous reply.
    busy: Option<u32>,
    /// When the owner was last used, so that an idle one without state can
    /// be dropped.
    used: Duration,
}

/// What to do with a request carrying an owner seqid.
#[derive(Debug)]
pub enum SeqidCheck {
    Execute,
    /// A retransmission of the owner's last request: its result again, and
    /// the current filehandle it left.
    Replay(Box<ResOp>, Option<FileHandle>),
}

/// The result of SETCLIENTID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setclientid {
    Ok {
        client: ClientId,
        confirm: [u8; 8],
    },
    /// A confirmed client of this name, with a live lease, belongs to
    /// another principal; its callback address.
    InUse(NetAddr4),
}

/// Whether a result advances its owner's seqid: not for the errors that
/// say the request could not be tied to the owner (RFC 7530, "Sequencing
/// of Lock Requests").
fn advances(status: Nfs4Status) -> bool {
    !matches!(
        status,
        Err(Nfs4Error::StaleClientid
            | Nfs4Error::StaleStateid
            | Nfs4Error::BadStateid
            | Nfs4Error::BadSeqid
            | Nfs4Error::Badxdr
            | Nfs4Error::Resource
            | Nfs4Error::Nofilehandle
            | Nfs4Error::Moved)
    )
}

impl State {
    /// SETCLIENTID (RFC 7530 §16.33.5, §9.1.1).
    pub fn setclientid(
        &self,
        owner: &[u8],
        verifier: [u8; 8],
        principal: u32,
        callback: NetAddr4,
    ) -> Setclientid {
        let now = self.clock.now();
        let confirm: [u8; 8] = rand::random();
        let mut inner = self.lock();
        let mine: Vec<ClientId> = inner
            .clients
            .iter()
            .filter(|(_, c)| c.owner == owner && c.v40.is_some())
            .map(|(id, _)| *id)
            .collect();
        let confirmed = mine.iter().copied().find(|id| inner.clients[id].confirmed);
        if let Some(id) = confirmed
            && let Some(c) = inner.clients.get_mut(&id)
            && let Some(v) = c.v40.as_mut()
        {
            if v.principal != principal && now.saturating_sub(c.last_renewed) <= self.lease {
                return Setclientid::InUse(v.callback.clone());
            }
            if c.verifier == verifier {
                // The same incarnation updating its callback: the client id
                // stays, a new confirmation verifier confirms the update.
                v.update = Some(confirm);
                v.principal = principal;
                v.callback = callback;
                for other in mine.into_iter().filter(|o| *o != id) {
                    Self::remove_client(&mut inner, other);
                }
                return Setclientid::Ok {
                    client: id,
                    confirm,
                };
            }
        }
        // A new client, or a new incarnation of a confirmed one (which keeps
        // its state until the new record is confirmed). An unconfirmed
        // record is replaced.
        for id in mine.into_iter().filter(|id| Some(*id) != confirmed) {
            Self::remove_client(&mut inner, id);
        }
        let id = self.new_client_id(&mut inner);
        let v40 = V40Client {
            confirm,
            update: None,
            principal,
            callback,
        };
        inner
            .clients
            .insert(id, Client::unconfirmed(owner, verifier, now, 0, Some(v40)));
        Setclientid::Ok {
            client: id,
            confirm,
        }
    }

    /// SETCLIENTID_CONFIRM (RFC 7530 §16.34): confirms a new record (the
    /// previous incarnation's state goes) or a callback update; a
    /// retransmission for a confirmed record succeeds again.
    pub fn setclientid_confirm(
        &self,
        client: ClientId,
        confirm: [u8; 8],
        principal: u32,
    ) -> StateResult<()> {
        self.check_client_boot(client)?;
        let now = self.clock.now();
        let mut inner = self.lock();
        let c = inner
            .clients
            .get_mut(&client)
            .ok_or(StateError::StaleClientId)?;
        let Some(v) = c.v40.as_mut() else {
            return Err(StateError::StaleClientId);
        };
        if v.principal != principal {
            return Err(StateError::ClidInUse);
        }
        if v.update == Some(confirm) {
            v.confirm = confirm;
            v.update = None;
            c.last_renewed = now;
            return Ok(());
        }
        if v.confirm != confirm {
            return Err(StateError::StaleClientId);
        }
        c.last_renewed = now;
        if c.confirmed {
            return Ok(());
        }
        c.confirmed = true;
        let owner = c.owner.clone();
        let old: Vec<ClientId> = inner
            .clients
            .iter()
            .filter(|(id, c)| **id != client && c.owner == owner && c.v40.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in old {
            Self::remove_client(&mut inner, id);
        }
        Ok(())
    }

    /// RENEW, and the implicit renewal by any 4.0 operation that names the
    /// client (by client id or stateid): the client must be a confirmed 4.0
    /// client of this server instance.
    pub fn renew(&self, client: ClientId) -> StateResult<()> {
        self.check_client_boot(client)?;
        let now = self.clock.now();
        let mut inner = self.lock();
        let c = inner
            .clients
            .get_mut(&client)
            .filter(|c| c.confirmed && c.v40.is_some())
            .ok_or(StateError::StaleClientId)?;
        c.last_renewed = now;
        Ok(())
    }

    /// The client a stateid belongs to (`None` for the special stateids,
    /// which need none), as a 4.0 COMPOUND identifies its client.
    pub fn stateid_client(&self, stateid: Stateid4) -> StateResult<Option<ClientId>> {
        if stateid == Stateid4::ANONYMOUS || stateid == Stateid4::READ_BYPASS {
            return Ok(None);
        }
        let inner = self.lock();
        if let Some(o) = inner.opens.get(&stateid.other) {
            return Ok(Some(o.client));
        }
        if let Some(l) = inner.locks.get(&stateid.other) {
            return Ok(Some(l.client));
        }
        match Self::closed_by(&inner, &stateid.other) {
            Some(k) => Ok(Some(k.client)),
            None => Err(self.unknown_stateid(&stateid.other)),
        }
    }

    fn closed_by<'a>(inner: &'a Inner, other: &[u8; 12]) -> Option<&'a OwnerKey> {
        inner
            .owners
            .iter()
            .find(|(_, o)| o.closed.as_ref() == Some(other))
            .map(|(k, _)| k)
    }

    /// The open or lock owner of a stateid, if it is known.
    pub fn stateid_owner(&self, stateid: Stateid4) -> Option<OwnerKey> {
        let inner = self.lock();
        if let Some(o) = inner.opens.get(&stateid.other) {
            return Some(OwnerKey {
                client: o.client,
                lock: false,
                owner: o.owner.clone(),
            });
        }
        if let Some(l) = inner.locks.get(&stateid.other) {
            return Some(OwnerKey {
                client: l.client,
                lock: true,
                owner: l.owner.clone(),
            });
        }
        Self::closed_by(&inner, &stateid.other).cloned()
    }

    /// The owner seqid rules of RFC 7530: the next seqid executes,
    /// the last one replays the last result, anything else is BAD_SEQID.
    /// An owner not seen before starts its sequence at any seqid, and so
    /// does an unconfirmed open owner's OPEN, which drops the owner's
    /// unconfirmed opens (§16.16).
    pub fn check_owner_seqid(
        &self,
        key: &OwnerKey,
        seqid: u32,
        opnum: u32,
    ) -> StateResult<SeqidCheck> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let Some(o) = inner.owners.get_mut(key) else {
            inner.owners.insert(
                key.clone(),
                OwnerSeq {
                    last: seqid.wrapping_sub(1),
                    reply: None,
                    confirmed: key.lock,
                    used: now,
                    closed: None,
                    busy: Some(seqid),
                },
            );
            return Ok(SeqidCheck::Execute);
        };
        if o.busy == Some(seqid) {
            return Err(StateError::Delay);
        }
        if seqid == o.last {
            return match &o.reply {
                Some((res, fh)) if res.opnum() == opnum => {
                    Ok(SeqidCheck::Replay(Box::new(res.clone()), fh.clone()))
                }
                _ => Err(StateError::BadSeqid),
            };
        }
        if seqid == o.last.wrapping_add(1) {
            o.busy = Some(seqid);
            return Ok(SeqidCheck::Execute);
        }
        if !o.confirmed && !key.lock && opnum == OP_OPEN {
            o.busy = Some(seqid);
            o.reply = None;
            inner
                .opens
                .retain(|_, o| !(o.client == key.client && o.owner == key.owner));
            return Ok(SeqidCheck::Execute);
        }
        Err(StateError::BadSeqid)
    }

    /// Records the result of a request checked by
    /// [`State::check_owner_seqid`] as the owner's last one, unless its
    /// status leaves the seqid where it was.
    pub fn finish_owner_seqid(
        &self,
        key: &OwnerKey,
        seqid: u32,
        res: &ResOp,
        fh: Option<FileHandle>,
    ) {
        let now = self.clock.now();
        let mut inner = self.lock();
        if let Some(o) = inner.owners.get_mut(key)
            && o.busy == Some(seqid)
        {
            o.busy = None;
        }
        if !advances(res.status()) {
            return;
        }
        let o = inner.owners.entry(key.clone()).or_insert(OwnerSeq {
            last: seqid,
            reply: None,
            confirmed: key.lock,
            used: now,
            closed: None,
            busy: None,
        });
        o.closed = match res {
            ResOp::Close(Ok(s)) => Some(s.other),
            _ => None,
        };
        o.last = seqid;
        o.reply = Some((res.clone(), fh));
        o.used = now;
    }

    /// A new lock owner's sequence starts at the `lock_seqid` of the LOCK
    /// that created it (RFC 7530 §16.10).
    pub fn start_lock_owner(&self, key: OwnerKey, lock_seqid: u32) {
        let now = self.clock.now();
        self.lock().owners.insert(
            key,
            OwnerSeq {
                last: lock_seqid,
                reply: None,
                confirmed: true,
                used: now,
                closed: None,
                busy: None,
            },
        );
    }

    /// Whether a 4.0 open owner has been confirmed (by OPEN_CONFIRM).
    pub fn open_owner_confirmed(&self, client: ClientId, owner: &[u8]) -> bool {
        let key = OwnerKey {
            client,
            lock: false,
            owner: owner.to_vec(),
        };
        self.lock().owners.get(&key).is_some_and(|o| o.confirmed)
    }

    /// Marks the open of an unconfirmed open owner: unusable until
    /// OPEN_CONFIRM.
    pub fn mark_unconfirmed(&self, stateid: Stateid4) {
        if let Some(o) = self.lock().opens.get_mut(&stateid.other) {
            o.confirmed = false;
        }
    }

    /// OPEN_CONFIRM: confirms the open owner and its opens; returns the
    /// open stateid with its next seqid.
    pub fn confirm_open(&self, client: ClientId, stateid: Stateid4) -> StateResult<Stateid4> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let unknown = self.unknown_stateid(&stateid.other);
        let o = inner
            .opens
            .get_mut(&stateid.other)
            .filter(|o| o.client == client)
            .ok_or(unknown)?;
        self.check_seqid(stateid, o.seqid)?;
        if o.confirmed {
            return Err(StateError::BadStateid);
        }
        o.seqid = next_seqid(o.seqid);
        let new = Stateid4 {
            seqid: o.seqid,
            other: stateid.other,
        };
        let owner = o.owner.clone();
        for o in inner
            .opens
            .values_mut()
            .filter(|o| o.client == client && o.owner == owner)
        {
            o.confirmed = true;
        }
        let key = OwnerKey {
            client,
            lock: false,
            owner,
        };
        inner
            .owners
            .entry(key)
            .or_insert(OwnerSeq {
                last: 0,
                reply: None,
                confirmed: true,
                used: now,
                closed: None,
                busy: None,
            })
            .confirmed = true;
        Ok(new)
    }

    /// RELEASE_LOCKOWNER: forgets a lock owner and its lock stateids, or
    /// answers LOCKS_HELD while it holds a lock.
    pub fn release_lockowner(&self, client: ClientId, owner: &[u8]) -> StateResult<()> {
        let mut inner = self.lock();
        let mine = |l: &LockState| l.client == client && l.owner == owner;
        if inner
            .locks
            .values()
            .any(|l| mine(l) && !l.ranges.is_empty())
        {
            return Err(StateError::LocksHeld);
        }
        inner.locks.retain(|_, l| !mine(l));
        inner.owners.remove(&OwnerKey {
            client,
            lock: true,
            owner: owner.to_vec(),
        });
        Ok(())
    }

    /// Drops the owner records that hold no state and were idle for a
    /// lease: the Linux client makes new open owners as it goes, and a
    /// retransmission comes within a lease or not at all.
    pub(super) fn reap_idle_owners(inner: &mut Inner, now: Duration, lease: Duration) {
        let busy: HashSet<(ClientId, bool, &[u8])> = inner
            .opens
            .values()
            .map(|o| (o.client, false, o.owner.as_slice()))
            .chain(
                inner
                    .locks
                    .values()
                    .map(|l| (l.client, true, l.owner.as_slice())),
            )
            .collect();
        let idle: Vec<OwnerKey> = inner
            .owners
            .iter()
            .filter(|(k, o)| {
                now.saturating_sub(o.used) > lease
                    && !busy.contains(&(k.client, k.lock, k.owner.as_slice()))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in idle {
            inner.owners.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openefs_nfs_wire::nfs4::OP_CLOSE;
    use openefs_nfs_wire::nfs4::types::Utf8Str;
    use openefs_vfs::OpenAccess;

    const LEASE: Duration = Duration::from_secs(90);

    fn cb() -> NetAddr4 {
        NetAddr4 {
            netid: Utf8Str::from("tcp"),
            addr: Utf8Str::from("127.0.0.1.3.4"),
        }
    }

    fn confirmed(state: &State, owner: &[u8], verifier: u8) -> ClientId {
        let Setclientid::Ok { client, confirm } = state.setclientid(owner, [verifier; 8], 0, cb())
        else {
            panic!("in use");
        };
        state.setclientid_confirm(client, confirm, 0).unwrap();
        client
    }

    fn open_file(fh: &[u8]) -> Arc<OpenFile> {
        Arc::new(OpenFile::new(
            FileHandle(fh.to_vec()),
            OpenAccess {
                read: true,
                write: true,
            },
            tempfile::tempfile().unwrap(),
        ))
    }

    #[test]
    fn setclientid_cases() {
        let clock = Arc::new(ManualClock::default());
        let state = State::new(clock.clone(), LEASE, 3);
        // Unconfirmed: RENEW does not know it; a wrong verifier is stale.
        let Setclientid::Ok { client, confirm } = state.setclientid(b"a", [1; 8], 0, cb()) else {
            panic!()
        };
        assert_eq!(state.renew(client), Err(StateError::StaleClientId));
        assert_eq!(
            state.setclientid_confirm(client, [0; 8], 0),
            Err(StateError::StaleClientId)
        );
        state.setclientid_confirm(client, confirm, 0).unwrap();
        // A retransmitted confirm succeeds again.
        state.setclientid_confirm(client, confirm, 0).unwrap();
        state.renew(client).unwrap();
        // Another principal while the lease lasts: in use.
        assert_eq!(
            state.setclientid(b"a", [1; 8], 1000, cb()),
            Setclientid::InUse(cb())
        );
        // A callback update keeps the client id.
        let Setclientid::Ok { client: same, .. } = state.setclientid(b"a", [1; 8], 0, cb()) else {
            panic!()
        };
        assert_eq!(same, client);
        // A rebooted client: the old record and its opens go on confirm.
        state
            .record_open(client, b"o", share::READ, 0, open_file(b"f"))
            .unwrap();
        let Setclientid::Ok {
            client: new,
            confirm,
        } = state.setclientid(b"a", [2; 8], 0, cb())
        else {
            panic!()
        };
        assert_ne!(new, client);
        state.renew(client).unwrap();
        state.setclientid_confirm(new, confirm, 0).unwrap();
        assert_eq!(state.renew(client), Err(StateError::StaleClientId));
        assert_eq!(state.counts(), (1, 0, 0));
        // Another server instance's client id.
        assert_eq!(state.renew(new ^ (1 << 40)), Err(StateError::StaleClientId));
        // Expiry is the 4.1 reaper's.
        clock.advance(LEASE * 2);
        assert_eq!(state.reap_expired().clients, 1);
        assert_eq!(state.renew(new), Err(StateError::StaleClientId));
    }

    #[test]
    fn owner_seqids_replay_and_confirm() {
        let clock = Arc::new(ManualClock::default());
        let state = State::new(clock.clone(), LEASE, 3);
        let client = confirmed(&state, b"a", 1);
        let key = OwnerKey {
            client,
            lock: false,
            owner: b"o".to_vec(),
        };
        // A new owner starts anywhere.
        assert!(matches!(
            state.check_owner_seqid(&key, 7, OP_OPEN),
            Ok(SeqidCheck::Execute)
        ));
        let sid = state
            .record_open(client, b"o", share::BOTH, 0, open_file(b"f"))
            .unwrap();
        assert!(!state.open_owner_confirmed(client, b"o"));
        state.mark_unconfirmed(sid);
        let res = ResOp::Close(Ok(sid));
        state.finish_owner_seqid(&key, 7, &res, None);
        // Unconfirmed: no I/O with it.
        assert_eq!(
            state.open_for_io(client, sid).unwrap_err(),
            StateError::BadStateid
        );
        // The same seqid and op replays; another op with it is BAD_SEQID.
        assert!(matches!(
            state.check_owner_seqid(&key, 7, OP_CLOSE),
            Ok(SeqidCheck::Replay(r, None)) if *r == res
        ));
        assert_eq!(
            state.check_owner_seqid(&key, 7, OP_OPEN).unwrap_err(),
            StateError::BadSeqid
        );
        assert_eq!(
            state.check_owner_seqid(&key, 9, OP_CLOSE).unwrap_err(),
            StateError::BadSeqid
        );
        let confirmed_sid = state.confirm_open(client, sid).unwrap();
        assert_eq!(confirmed_sid.seqid, sid.seqid + 1);
        assert!(state.open_owner_confirmed(client, b"o"));
        state.open_for_io(client, confirmed_sid).unwrap();
        assert!(matches!(
            state.check_owner_seqid(&key, 8, OP_CLOSE),
            Ok(SeqidCheck::Execute)
        ));
        // A retransmission while the original still executes waits.
        assert_eq!(
            state.check_owner_seqid(&key, 8, OP_CLOSE).unwrap_err(),
            StateError::Delay
        );
        // A failure that cannot be tied to the owner does not advance it.
        state.finish_owner_seqid(&key, 8, &ResOp::Close(Err(Nfs4Error::BadStateid)), None);
        assert!(matches!(
            state.check_owner_seqid(&key, 8, OP_CLOSE),
            Ok(SeqidCheck::Execute)
        ));
        // Idle owners without state go after a lease; ones with opens stay.
        clock.advance(LEASE * 2);
        state.renew(client).unwrap();
        state.reap_expired();
        assert!(state.open_owner_confirmed(client, b"o"));
        state.close(client, confirmed_sid).unwrap();
        state.reap_expired();
        assert!(!state.open_owner_confirmed(client, b"o"));
    }

    #[test]
    fn release_lockowner_needs_unlocked_owner() {
        let clock = Arc::new(ManualClock::default());
        let state = State::new(clock, LEASE, 3);
        let client = confirmed(&state, b"a", 1);
        let file = open_file(b"f");
        let fh = file.handle.clone();
        let open = state
            .record_open(client, b"o", share::BOTH, 0, file)
            .unwrap();
        let range = ByteRange::from_wire(0, 10).unwrap();
        let lock = state
            .lock_range(client, &fh, Locker::New { open, owner: b"l" }, true, range)
            .unwrap();
        assert_eq!(
            state.release_lockowner(client, b"l"),
            Err(StateError::LocksHeld)
        );
        state.unlock_range(client, &fh, lock, range).unwrap();
        state.release_lockowner(client, b"l").unwrap();
        assert_eq!(state.lock_count(), 0);
    }
}
