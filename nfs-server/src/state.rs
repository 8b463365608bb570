//! NFSv4.1 server state: clients, sessions and their slot reply caches, open
//! owners and open stateids, leases.
//!
//! Synchronous code behind one mutex, with an injected [`Clock`], so lease
//! expiry and slot rules are unit-testable without sleeping. Nothing here does
//! I/O: opening files is the caller's job, the state only keeps the result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use openefs_nfs_wire::nfs4::types::{ChannelAttrs4, Stateid4};
use openefs_vfs::{FileHandle, OpenFile};

pub type ClientId = u64;
pub type SessionId = [u8; 16];

/// A monotonic time source; tests drive a [`ManualClock`].
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Time since an arbitrary fixed origin.
    fn now(&self) -> Duration;
}

#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

#[derive(Debug, Default)]
pub struct ManualClock {
    now: Mutex<Duration>,
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// OPEN4_SHARE_* bits that are share access/deny (not delegation wants).
pub mod share {
    pub use openefs_nfs_wire::nfs4::ops::{
        OPEN4_SHARE_ACCESS_BOTH as BOTH, OPEN4_SHARE_ACCESS_READ as READ,
        OPEN4_SHARE_ACCESS_WRITE as WRITE,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("client id unknown or from an earlier server instance")]
    StaleClientId,
    #[error("session unknown")]
    BadSession,
    #[error("slot id beyond the session's slot table")]
    BadSlot,
    #[error("sequence id is neither a retransmission nor the next request")]
    SeqMisordered,
    #[error("the original request is still executing")]
    Delay,
    #[error("the retransmitted request's reply was not cached")]
    RetryUncachedRep,
    #[error("stateid unknown")]
    BadStateid,
    #[error("stateid from an earlier server instance")]
    StaleStateid,
    #[error("stateid seqid is older than the current one")]
    OldStateid,
    #[error("client still has sessions")]
    ClientIdBusy,
    #[error("share reservation conflicts with another open")]
    ShareDenied,
    #[error("invalid argument")]
    Inval,
    #[error("open stateid cannot be freed; CLOSE it")]
    LocksHeld,
    #[error("more operations than the session allows")]
    TooManyOps,
    #[error("RECLAIM_COMPLETE was already done")]
    CompleteAlready,
}

pub type StateResult<T> = Result<T, StateError>;

#[derive(Debug)]
enum SlotReply {
    /// Never used, or retired: nothing to replay.
    Empty,
    InProgress,
    Cached(Bytes),
    /// Executed, reply not kept (the client did not ask for it).
    Uncached,
}

#[derive(Debug)]
struct Slot {
    seqid: u32,
    reply: SlotReply,
}

#[derive(Debug)]
struct Session {
    client: ClientId,
    fore: ChannelAttrs4,
    slots: Vec<Slot>,
}

/// What a retransmitted CREATE_SESSION gets back (RFC 8881 §18.36.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedSession {
    pub session: SessionId,
    pub sequence: u32,
    pub flags: u32,
    pub fore: ChannelAttrs4,
}

#[derive(Debug)]
struct Client {
    owner: Vec<u8>,
    verifier: [u8; 8],
    confirmed: bool,
    /// csa_sequence the next CREATE_SESSION must carry.
    next_cs_sequence: u32,
    last_cs: Option<CreatedSession>,
    last_renewed: Duration,
    reclaim_complete: bool,
}

#[derive(Debug)]
struct Open {
    client: ClientId,
    owner: Vec<u8>,
    seqid: u32,
    access: u32,
    deny: u32,
    file: Arc<OpenFile>,
}

#[derive(Debug)]
struct Inner {
    next_id: u64,
    clients: HashMap<ClientId, Client>,
    sessions: HashMap<SessionId, Session>,
    opens: HashMap<[u8; 12], Open>,
}

/// Result of EXCHANGE_ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exchanged {
    pub client: ClientId,
    pub sequence: u32,
    pub confirmed: bool,
}

/// Result of SEQUENCE's slot check.
#[derive(Debug)]
pub enum SlotUse {
    /// A new request: execute it, then call [`State::finish_slot`].
    Execute,
    /// A retransmission: send this encoded COMPOUND result again.
    Replay(Bytes),
}

#[derive(Debug)]
pub struct Sequenced {
    pub client: ClientId,
    pub slot_use: SlotUse,
    pub highest_slot: u32,
    pub max_response_size_cached: u32,
}

/// An open stateid as READ/WRITE/SETATTR see it.
#[derive(Debug, Clone)]
pub struct OpenRef {
    pub access: u32,
    pub file: Arc<OpenFile>,
}

#[derive(Debug)]
pub struct State {
    clock: Arc<dyn Clock>,
    lease: Duration,
    /// Distinguishes this server instance's ids from a previous one's.
    boot: u32,
    inner: Mutex<Inner>,
}

impl State {
    pub fn new(clock: Arc<dyn Clock>, lease: Duration, boot: u32) -> Self {
        Self {
            clock,
            lease,
            boot,
            inner: Mutex::new(Inner {
                next_id: 1,
                clients: HashMap::new(),
                sessions: HashMap::new(),
                opens: HashMap::new(),
            }),
        }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // State stays consistent between statements, so a panic elsewhere
        // while holding the lock leaves nothing half-done worth refusing.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_client_id(&self, inner: &mut Inner) -> ClientId {
        let n = inner.next_id;
        inner.next_id += 1;
        (u64::from(self.boot) << 32) | (n & 0xffff_ffff)
    }

    fn check_client_boot(&self, client: ClientId) -> StateResult<()> {
        if (client >> 32) as u32 != self.boot {
            return Err(StateError::StaleClientId);
        }
        Ok(())
    }

    /// EXCHANGE_ID (RFC 8881 §18.35.5), without state protection.
    pub fn exchange_id(&self, owner: &[u8], verifier: [u8; 8]) -> Exchanged {
        let now = self.clock.now();
        let mut inner = self.lock();
        let existing: Vec<ClientId> = inner
            .clients
            .iter()
            .filter(|(_, c)| c.owner == owner)
            .map(|(id, _)| *id)
            .collect();
        for id in &existing {
            let c = &inner.clients[id];
            // The same incarnation: a retransmission, or a client checking
            // its record (confirmed or not yet).
            if c.verifier == verifier {
                return Exchanged {
                    client: *id,
                    sequence: c.next_cs_sequence,
                    confirmed: c.confirmed,
                };
            }
        }
        // A new incarnation of the client: an unconfirmed record of another
        // one is replaced; a confirmed one lives until the new record is
        // confirmed.
        for id in existing {
            if !inner.clients[&id].confirmed {
                Self::remove_client(&mut inner, id);
            }
        }
        let id = self.new_client_id(&mut inner);
        inner.clients.insert(
            id,
            Client {
                owner: owner.to_vec(),
                verifier,
                confirmed: false,
                next_cs_sequence: 1,
                last_cs: None,
                last_renewed: now,
                reclaim_complete: false,
            },
        );
        Exchanged {
            client: id,
            sequence: 1,
            confirmed: false,
        }
    }

    /// CREATE_SESSION (RFC 8881 §18.36.4): confirms the client on first use;
    /// a retransmission (sequence one behind) returns the same session.
    pub fn create_session(
        &self,
        client: ClientId,
        sequence: u32,
        flags: u32,
        fore: ChannelAttrs4,
    ) -> StateResult<CreatedSession> {
        self.check_client_boot(client)?;
        let now = self.clock.now();
        let mut inner = self.lock();
        let c = inner
            .clients
            .get_mut(&client)
            .ok_or(StateError::StaleClientId)?;
        if let Some(last) = &c.last_cs
            && sequence == last.sequence
        {
            return Ok(last.clone());
        }
        if sequence != c.next_cs_sequence {
            return Err(StateError::SeqMisordered);
        }
        c.next_cs_sequence = c.next_cs_sequence.wrapping_add(1);
        c.last_renewed = now;
        let was_confirmed = c.confirmed;
        c.confirmed = true;
        let owner = c.owner.clone();
        let n = inner.next_id;
        inner.next_id += 1;
        let mut session = [0u8; 16];
        session[..8].copy_from_slice(&client.to_be_bytes());
        session[8..12].copy_from_slice(&self.boot.to_be_bytes());
        session[12..].copy_from_slice(&(n as u32).to_be_bytes());
        let slots = (0..fore.maxrequests)
            .map(|_| Slot {
                seqid: 0,
                reply: SlotReply::Empty,
            })
            .collect();
        inner.sessions.insert(
            session,
            Session {
                client,
                fore: fore.clone(),
                slots,
            },
        );
        let created = CreatedSession {
            session,
            sequence,
            flags,
            fore,
        };
        if let Some(c) = inner.clients.get_mut(&client) {
            c.last_cs = Some(created.clone());
        }
        if !was_confirmed {
            // The confirmed previous incarnation of this client is gone now.
            let old: Vec<ClientId> = inner
                .clients
                .iter()
                .filter(|(id, c)| **id != client && c.owner == owner)
                .map(|(id, _)| *id)
                .collect();
            for id in old {
                Self::remove_client(&mut inner, id);
            }
        }
        Ok(created)
    }

    /// SEQUENCE's slot rules (RFC 8881 §2.10.6.1); renews the lease.
    /// `ops` is the number of operations in the COMPOUND.
    pub fn sequence(
        &self,
        session: &SessionId,
        slot: u32,
        seqid: u32,
        ops: u32,
    ) -> StateResult<Sequenced> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let s = inner
            .sessions
            .get_mut(session)
            .ok_or(StateError::BadSession)?;
        if ops > s.fore.maxoperations {
            return Err(StateError::TooManyOps);
        }
        let client = s.client;
        let highest_slot = s.fore.maxrequests.saturating_sub(1);
        let max_response_size_cached = s.fore.maxresponsesize_cached;
        let sl = s.slots.get_mut(slot as usize).ok_or(StateError::BadSlot)?;
        let slot_use = if seqid == sl.seqid {
            match &sl.reply {
                SlotReply::Empty => return Err(StateError::SeqMisordered),
                SlotReply::InProgress => return Err(StateError::Delay),
                SlotReply::Uncached => return Err(StateError::RetryUncachedRep),
                SlotReply::Cached(b) => SlotUse::Replay(b.clone()),
            }
        } else if seqid == sl.seqid.wrapping_add(1) {
            sl.seqid = seqid;
            sl.reply = SlotReply::InProgress;
            SlotUse::Execute
        } else {
            return Err(StateError::SeqMisordered);
        };
        if let Some(c) = inner.clients.get_mut(&client) {
            c.last_renewed = now;
        }
        Ok(Sequenced {
            client,
            slot_use,
            highest_slot,
            max_response_size_cached,
        })
    }

    /// Records the reply of an executed request in its slot (`None`: the
    /// client did not ask for it to be cached).
    pub fn finish_slot(&self, session: &SessionId, slot: u32, seqid: u32, reply: Option<Bytes>) {
        let mut inner = self.lock();
        let Some(sl) = inner
            .sessions
            .get_mut(session)
            .and_then(|s| s.slots.get_mut(slot as usize))
        else {
            return; // destroyed meanwhile
        };
        if sl.seqid == seqid {
            sl.reply = match reply {
                Some(b) => SlotReply::Cached(b),
                None => SlotReply::Uncached,
            };
        }
    }

    pub fn session_client(&self, session: &SessionId) -> StateResult<ClientId> {
        self.lock()
            .sessions
            .get(session)
            .map(|s| s.client)
            .ok_or(StateError::BadSession)
    }

    pub fn destroy_session(&self, session: &SessionId) -> StateResult<()> {
        self.lock()
            .sessions
            .remove(session)
            .map(|_| ())
            .ok_or(StateError::BadSession)
    }

    /// RECLAIM_COMPLETE: there is no grace period to end (no state survives
    /// a restart yet), so this only records that the client said it.
    pub fn reclaim_complete(&self, client: ClientId) -> StateResult<()> {
        let mut inner = self.lock();
        let c = inner
            .clients
            .get_mut(&client)
            .ok_or(StateError::StaleClientId)?;
        if c.reclaim_complete {
            return Err(StateError::CompleteAlready);
        }
        c.reclaim_complete = true;
        Ok(())
    }

    pub fn destroy_client(&self, client: ClientId) -> StateResult<()> {
        self.check_client_boot(client)?;
        let mut inner = self.lock();
        if !inner.clients.contains_key(&client) {
            return Err(StateError::StaleClientId);
        }
        if inner.sessions.values().any(|s| s.client == client) {
            return Err(StateError::ClientIdBusy);
        }
        Self::remove_client(&mut inner, client);
        Ok(())
    }

    fn remove_client(inner: &mut Inner, client: ClientId) {
        inner.clients.remove(&client);
        inner.sessions.retain(|_, s| s.client != client);
        inner.opens.retain(|_, o| o.client != client);
    }

    /// Removes clients whose lease ran out, with their sessions and opens
    /// (dropping the opens closes their files). Returns how many went.
    pub fn reap_expired(&self) -> usize {
        let now = self.clock.now();
        let mut inner = self.lock();
        let expired: Vec<ClientId> = inner
            .clients
            .iter()
            .filter(|(_, c)| now.saturating_sub(c.last_renewed) > self.lease)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            Self::remove_client(&mut inner, *id);
        }
        expired.len()
    }

    fn new_stateid_other(&self, inner: &mut Inner) -> [u8; 12] {
        let n = inner.next_id;
        inner.next_id += 1;
        let mut other = [0u8; 12];
        other[..4].copy_from_slice(&self.boot.to_be_bytes());
        other[4..].copy_from_slice(&n.to_be_bytes());
        other
    }

    /// The open `owner` of `client` already holds on `fh`, if any.
    pub fn find_open(&self, client: ClientId, owner: &[u8], fh: &FileHandle) -> Option<OpenRef> {
        let inner = self.lock();
        inner
            .opens
            .values()
            .find(|o| o.client == client && o.owner == owner && o.file.handle == *fh)
            .map(|o| OpenRef {
                access: o.access,
                file: o.file.clone(),
            })
    }

    /// Records an OPEN: a new open stateid, or the owner's existing one with
    /// the union of share bits and a bumped seqid. `file` replaces the kept
    /// file when it allows more (an upgrade from read to read+write).
    pub fn record_open(
        &self,
        client: ClientId,
        owner: &[u8],
        access: u32,
        deny: u32,
        file: Arc<OpenFile>,
    ) -> StateResult<Stateid4> {
        if access & share::BOTH == 0 || access & !share::BOTH != 0 || deny & !share::BOTH != 0 {
            return Err(StateError::Inval);
        }
        let mut inner = self.lock();
        let mut mine = None;
        for (other, o) in &inner.opens {
            if o.file.handle != file.handle {
                continue;
            }
            if o.client == client && o.owner == owner {
                mine = Some(*other);
            } else if (o.deny & access) != 0 || (o.access & deny) != 0 {
                return Err(StateError::ShareDenied);
            }
        }
        if let Some(other) = mine
            && let Some(o) = inner.opens.get_mut(&other)
        {
            o.access |= access;
            o.deny |= deny;
            o.seqid = o.seqid.wrapping_add(1);
            let covers = |f: &OpenFile| (f.access.read as u8) + (f.access.write as u8);
            if covers(&file) > covers(&o.file) {
                o.file = file;
            }
            return Ok(Stateid4 {
                seqid: o.seqid,
                other,
            });
        }
        let other = self.new_stateid_other(&mut inner);
        inner.opens.insert(
            other,
            Open {
                client,
                owner: owner.to_vec(),
                seqid: 1,
                access,
                deny,
                file,
            },
        );
        Ok(Stateid4 { seqid: 1, other })
    }

    fn check_seqid(&self, given: Stateid4, current: u32) -> StateResult<()> {
        // Seqid 0 means "whatever is current" in 4.1 (RFC 8881 §8.2.2).
        if given.seqid == 0 || given.seqid == current {
            Ok(())
        } else if given.seqid < current {
            Err(StateError::OldStateid)
        } else {
            Err(StateError::BadStateid)
        }
    }

    fn unknown_stateid(&self, other: &[u8; 12]) -> StateError {
        if other[..4] != self.boot.to_be_bytes() {
            StateError::StaleStateid
        } else {
            StateError::BadStateid
        }
    }

    /// Looks an open stateid of `client` up for I/O.
    pub fn open_for_io(&self, client: ClientId, stateid: Stateid4) -> StateResult<OpenRef> {
        let inner = self.lock();
        let o = inner
            .opens
            .get(&stateid.other)
            .filter(|o| o.client == client)
            .ok_or_else(|| self.unknown_stateid(&stateid.other))?;
        self.check_seqid(stateid, o.seqid)?;
        Ok(OpenRef {
            access: o.access,
            file: o.file.clone(),
        })
    }

    pub fn close(&self, client: ClientId, stateid: Stateid4) -> StateResult<()> {
        let mut inner = self.lock();
        let o = inner
            .opens
            .get(&stateid.other)
            .filter(|o| o.client == client)
            .ok_or_else(|| self.unknown_stateid(&stateid.other))?;
        self.check_seqid(stateid, o.seqid)?;
        inner.opens.remove(&stateid.other);
        Ok(())
    }

    pub fn open_downgrade(
        &self,
        client: ClientId,
        stateid: Stateid4,
        access: u32,
        deny: u32,
    ) -> StateResult<Stateid4> {
        let mut inner = self.lock();
        let unknown = self.unknown_stateid(&stateid.other);
        let o = inner
            .opens
            .get_mut(&stateid.other)
            .filter(|o| o.client == client)
            .ok_or(unknown)?;
        self.check_seqid(stateid, o.seqid)?;
        if access & share::BOTH == 0 || access & !o.access != 0 || deny & !o.deny != 0 {
            return Err(StateError::Inval);
        }
        o.access = access;
        o.deny = deny;
        o.seqid = o.seqid.wrapping_add(1);
        Ok(Stateid4 {
            seqid: o.seqid,
            other: stateid.other,
        })
    }

    /// TEST_STATEID's per-stateid verdict.
    pub fn test_stateid(&self, client: ClientId, stateid: Stateid4) -> StateResult<()> {
        self.open_for_io(client, stateid).map(|_| ())
    }

    /// FREE_STATEID: only lock/delegation stateids can be freed, and we hand
    /// out neither yet; an open stateid needs CLOSE.
    pub fn free_stateid(&self, client: ClientId, stateid: Stateid4) -> StateResult<()> {
        self.open_for_io(client, stateid)?;
        Err(StateError::LocksHeld)
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize, usize) {
        let inner = self.lock();
        (inner.clients.len(), inner.sessions.len(), inner.opens.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openefs_vfs::OpenAccess;

    const LEASE: Duration = Duration::from_secs(90);

    fn attrs() -> ChannelAttrs4 {
        ChannelAttrs4 {
            headerpadsize: 0,
            maxrequestsize: 1 << 20,
            maxresponsesize: 1 << 20,
            maxresponsesize_cached: 4096,
            maxoperations: 16,
            maxrequests: 4,
            rdma_ird: None,
        }
    }

    fn setup() -> (Arc<ManualClock>, State, ClientId, SessionId) {
        let clock = Arc::new(ManualClock::default());
        let state = State::new(clock.clone(), LEASE, 7);
        let ex = state.exchange_id(b"client-a", [1; 8]);
        let cs = state
            .create_session(ex.client, ex.sequence, 0, attrs())
            .unwrap();
        (clock, state, ex.client, cs.session)
    }

    fn open_file(fh: &[u8], write: bool) -> Arc<OpenFile> {
        Arc::new(OpenFile {
            handle: FileHandle(fh.to_vec()),
            access: OpenAccess { read: true, write },
            file: tempfile::tempfile().unwrap(),
        })
    }

    #[test]
    fn create_session_confirms_and_replays() {
        let clock = Arc::new(ManualClock::default());
        let state = State::new(clock, LEASE, 7);
        let ex = state.exchange_id(b"c", [1; 8]);
        assert!(!ex.confirmed);
        assert_eq!(state.exchange_id(b"c", [1; 8]), ex, "retransmission");
        let first = state.create_session(ex.client, 1, 0, attrs()).unwrap();
        let again = state.create_session(ex.client, 1, 0, attrs()).unwrap();
        assert_eq!(first, again);
        assert_eq!(
            state.create_session(ex.client, 5, 0, attrs()),
            Err(StateError::SeqMisordered)
        );
        let ex2 = state.exchange_id(b"c", [1; 8]);
        assert_eq!(
            (ex2.client, ex2.confirmed, ex2.sequence),
            (ex.client, true, 2)
        );
        assert_eq!(
            state.create_session(ex.client ^ (1 << 40), 1, 0, attrs()),
            Err(StateError::StaleClientId)
        );
    }

    #[test]
    fn rebooted_client_replaces_old_record_on_confirm() {
        let (_, state, old, _) = setup();
        let ex = state.exchange_id(b"client-a", [2; 8]);
        assert_ne!(ex.client, old);
        assert_eq!(state.counts().0, 2);
        state
            .create_session(ex.client, ex.sequence, 0, attrs())
            .unwrap();
        assert_eq!(state.counts(), (1, 1, 0));
    }

    #[test]
    fn slot_rules() {
        let (_, state, _, sid) = setup();
        assert!(matches!(
            state.sequence(&sid, 0, 0, 1),
            Err(StateError::SeqMisordered)
        ));
        let s = state.sequence(&sid, 0, 1, 1).unwrap();
        assert!(matches!(s.slot_use, SlotUse::Execute));
        assert_eq!(s.highest_slot, 3);
        assert!(matches!(
            state.sequence(&sid, 0, 1, 1),
            Err(StateError::Delay)
        ));
        state.finish_slot(&sid, 0, 1, Some(Bytes::from_static(b"reply")));
        match state.sequence(&sid, 0, 1, 1).unwrap().slot_use {
            SlotUse::Replay(b) => assert_eq!(&b[..], b"reply"),
            SlotUse::Execute => panic!("a retransmission executed again"),
        }
        assert!(matches!(
            state.sequence(&sid, 0, 3, 1),
            Err(StateError::SeqMisordered)
        ));
        assert!(matches!(
            state.sequence(&sid, 4, 1, 1),
            Err(StateError::BadSlot)
        ));
        assert!(matches!(
            state.sequence(&sid, 0, 2, 1).unwrap().slot_use,
            SlotUse::Execute
        ));
        state.finish_slot(&sid, 0, 2, None);
        assert!(matches!(
            state.sequence(&sid, 0, 2, 1),
            Err(StateError::RetryUncachedRep)
        ));
        assert!(matches!(
            state.sequence(&[9; 16], 0, 1, 1),
            Err(StateError::BadSession)
        ));
    }

    #[test]
    fn lease_expiry_frees_opens_and_sequence_renews() {
        let (clock, state, client, sid) = setup();
        state
            .record_open(client, b"o", share::READ, 0, open_file(b"f", false))
            .unwrap();
        clock.advance(LEASE - Duration::from_secs(1));
        state.sequence(&sid, 1, 1, 1).unwrap();
        clock.advance(LEASE - Duration::from_secs(1));
        assert_eq!(state.reap_expired(), 0);
        assert_eq!(state.counts(), (1, 1, 1));
        clock.advance(Duration::from_secs(2));
        assert_eq!(state.reap_expired(), 1);
        assert_eq!(state.counts(), (0, 0, 0));
        assert!(matches!(
            state.sequence(&sid, 1, 2, 1),
            Err(StateError::BadSession)
        ));
    }

    #[test]
    fn open_upgrade_downgrade_close() {
        let (_, state, client, _) = setup();
        let fh = FileHandle(b"f".to_vec());
        let s1 = state
            .record_open(client, b"o", share::READ, 0, open_file(b"f", false))
            .unwrap();
        let s2 = state
            .record_open(client, b"o", share::WRITE, 0, open_file(b"f", true))
            .unwrap();
        assert_eq!((s1.other, s1.seqid + 1), (s2.other, s2.seqid));
        let found = state.find_open(client, b"o", &fh).unwrap();
        assert_eq!(found.access, share::BOTH);
        assert!(found.file.access.write);
        assert_eq!(
            state.open_for_io(client, s1).map(|_| ()),
            Err(StateError::OldStateid)
        );
        assert_eq!(
            state.open_for_io(client + 1, s2).map(|_| ()),
            Err(StateError::BadStateid)
        );
        let s3 = state.open_downgrade(client, s2, share::READ, 0).unwrap();
        assert_eq!(
            state.open_downgrade(client, s3, share::WRITE, 0),
            Err(StateError::Inval)
        );
        assert_eq!(state.free_stateid(client, s3), Err(StateError::LocksHeld));
        state.close(client, s3).unwrap();
        assert_eq!(state.test_stateid(client, s3), Err(StateError::BadStateid));
        let mut foreign = s3;
        foreign.other[0] ^= 1;
        assert_eq!(
            state.test_stateid(client, foreign),
            Err(StateError::StaleStateid)
        );
    }

    #[test]
    fn share_deny_conflicts() {
        let (_, state, client, _) = setup();
        state
            .record_open(
                client,
                b"a",
                share::READ,
                share::WRITE,
                open_file(b"f", false),
            )
            .unwrap();
        assert_eq!(
            state.record_open(client, b"b", share::WRITE, 0, open_file(b"f", true)),
            Err(StateError::ShareDenied)
        );
        state
            .record_open(client, b"b", share::READ, 0, open_file(b"f", false))
            .unwrap();
    }

    #[test]
    fn destroy_client_needs_no_sessions() {
        let (_, state, client, sid) = setup();
        assert_eq!(state.destroy_client(client), Err(StateError::ClientIdBusy));
        state.destroy_session(&sid).unwrap();
        state.destroy_client(client).unwrap();
        assert_eq!(state.destroy_client(client), Err(StateError::StaleClientId));
    }
}
