//! NFSv4.1 server state: clients, sessions and their slot reply caches, open
//! owners and open stateids, lock owners with their byte-range locks, leases.
//! NFSv4.0's clients and owner seqids are in [`v40`], over the same opens,
//! locks and leases.
//!
//! Synchronous code behind one mutex, with an injected [`Clock`], so lease
//! expiry, slot rules and the grace period are unit-testable without
//! sleeping. Nothing here does I/O: opening files and writing the stable
//! client records (`crate::stable`) are the caller's job, the state only
//! keeps the result and says which owners to record or forget.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use openefs_nfs_wire::nfs4::types::{ChannelAttrs4, Stateid4};
use openefs_vfs::{FileHandle, OpenFile};

mod v40;
pub use v40::{OwnerKey, SeqidCheck, Setclientid};

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
    #[error("stateid still holds locks, or is an open stateid (CLOSE frees those)")]
    LocksHeld,
    #[error("more operations than the session allows")]
    TooManyOps,
    #[error("RECLAIM_COMPLETE was already done")]
    CompleteAlready,
    #[error("the open does not allow this lock type")]
    OpenMode,
    #[error("in the grace period: only reclaims are served")]
    Grace,
    #[error("no grace period, or this client may not reclaim in it")]
    NoGrace,
    #[error("owner seqid is neither a retransmission nor the next request (4.0)")]
    BadSeqid,
    #[error("the client id belongs to another principal (4.0)")]
    ClidInUse,
}

/// A byte range, both ends inclusive, so a lock up to the end of the file
/// (length all ones) is `end == u64::MAX` without overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// The range of an `offset4`/`length4` pair (RFC 8881 §18.10.4): a zero
    /// length, or one that runs past 2^64 without being all ones, is INVAL.
    pub fn from_wire(offset: u64, length: u64) -> StateResult<Self> {
        if length == u64::MAX {
            return Ok(Self {
                start: offset,
                end: u64::MAX,
            });
        }
        if length == 0 {
            return Err(StateError::Inval);
        }
        let end = offset.checked_add(length - 1).ok_or(StateError::Inval)?;
        Ok(Self { start: offset, end })
    }

    /// The `offset4`/`length4` pair of this range.
    pub fn to_wire(self) -> (u64, u64) {
        let length = if self.end == u64::MAX {
            u64::MAX
        } else {
            self.end - self.start + 1
        };
        (self.start, length)
    }

    fn overlaps(self, other: Self) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

/// One byte-range lock a lock owner holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HeldRange {
    range: ByteRange,
    write: bool,
}

/// The lock that made LOCK or LOCKT fail, for `LOCK4denied`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub client: ClientId,
    pub owner: Vec<u8>,
    pub range: ByteRange,
    pub write: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    #[error("conflicts with a lock of another owner")]
    Denied(Conflict),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Who asks for a lock: a lock owner new to this file (its first LOCK comes
/// with the open stateid it derives from), or one that has a lock stateid.
#[derive(Clone, Copy, Debug)]
pub enum Locker<'a> {
    New { open: Stateid4, owner: &'a [u8] },
    Existing(Stateid4),
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
    /// Its owner is in the stable records (set by the caller once written).
    recorded: bool,
    /// Set for an NFSv4.0 client (made by SETCLIENTID, without sessions).
    v40: Option<v40::V40Client>,
}

impl Client {
    /// A new record for `owner`, unconfirmed until CREATE_SESSION (4.1)
    /// or SETCLIENTID_CONFIRM (4.0).
    fn unconfirmed(
        owner: &[u8],
        verifier: [u8; 8],
        now: Duration,
        next_cs_sequence: u32,
        v40: Option<v40::V40Client>,
    ) -> Self {
        Client {
            owner: owner.to_vec(),
            verifier,
            confirmed: false,
            next_cs_sequence,
            last_cs: None,
            last_renewed: now,
            reclaim_complete: false,
            recorded: false,
            v40,
        }
    }
}

#[derive(Debug)]
struct Open {
    client: ClientId,
    owner: Vec<u8>,
    seqid: u32,
    access: u32,
    deny: u32,
    file: Arc<OpenFile>,
    /// False for the open of a 4.0 open owner still awaiting OPEN_CONFIRM:
    /// no I/O or lock may use it yet.
    confirmed: bool,
}

/// A lock stateid: one lock owner's locks on one file, derived from an open
/// of that file (RFC 8881 §9.1.4.1).
#[derive(Debug)]
struct LockState {
    client: ClientId,
    owner: Vec<u8>,
    /// The open stateid's `other`; I/O with the lock stateid uses its file.
    open: [u8; 12],
    file: FileHandle,
    seqid: u32,
    /// Sorted by start, disjoint, adjacent ranges of one type merged.
    ranges: Vec<HeldRange>,
}

#[derive(Debug)]
struct Inner {
    next_id: u64,
    clients: HashMap<ClientId, Client>,
    sessions: HashMap<SessionId, Session>,
    opens: HashMap<[u8; 12], Open>,
    locks: HashMap<[u8; 12], LockState>,
    grace: Option<Grace>,
    /// 4.0 open and lock owners: their seqid and last reply.
    owners: HashMap<OwnerKey, v40::OwnerSeq>,
}

/// The grace period after a restart (RFC 8881 §8.4.2.1): until `until`, or
/// until every client of the previous instance said RECLAIM_COMPLETE.
#[derive(Debug)]
struct Grace {
    until: Duration,
    /// Owners of the previous instance's recorded clients.
    reclaimable: HashSet<Vec<u8>>,
    /// Those of them that sent RECLAIM_COMPLETE.
    completed: HashSet<Vec<u8>>,
}

impl Grace {
    fn over(&self, now: Duration) -> bool {
        now >= self.until || self.completed.len() == self.reclaimable.len()
    }
}

/// How a grace period ended, for the log and the stable records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraceEnded {
    /// Every recorded client sent RECLAIM_COMPLETE before the time was up.
    pub early: bool,
    /// Previous clients that did not come back: their state is gone, their
    /// records can go too.
    pub forget: Vec<Vec<u8>>,
}

/// What the lease reaper removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    pub clients: usize,
    /// Recorded owners no client in memory has any more.
    pub forget: Vec<Vec<u8>>,
}

/// One client as the admin API lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSummary {
    pub id: ClientId,
    pub owner: Vec<u8>,
    pub minor_version: u32,
    pub confirmed: bool,
    pub sessions: usize,
    pub opens: usize,
    pub lock_owners: usize,
    /// Until the lease runs out without renewal (zero once it has).
    pub lease_remaining: Duration,
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
                locks: HashMap::new(),
                grace: None,
                owners: HashMap::new(),
            }),
        }
    }

    /// Starts a grace period of `length` for the previous instance's
    /// recorded clients; without any there is nothing to reclaim, and none.
    pub fn start_grace(&self, previous: &[Vec<u8>], length: Duration) {
        if previous.is_empty() {
            return;
        }
        let until = self.clock.now() + length;
        self.lock().grace = Some(Grace {
            until,
            reclaimable: previous.iter().cloned().collect(),
            completed: HashSet::new(),
        });
    }

    /// Whether new state is refused for now, so that clients can take back
    /// what they had.
    pub fn in_grace(&self) -> bool {
        let now = self.clock.now();
        self.lock().grace.as_ref().is_some_and(|g| !g.over(now))
    }

    /// Refuses what could conflict with state not yet reclaimed.
    pub fn check_not_grace(&self) -> StateResult<()> {
        if self.in_grace() {
            return Err(StateError::Grace);
        }
        Ok(())
    }

    /// A reclaim (OPEN CLAIM_PREVIOUS, LOCK with reclaim) is allowed in the
    /// grace period, from a client the previous instance recorded, until it
    /// sends RECLAIM_COMPLETE.
    pub fn check_reclaim(&self, client: ClientId) -> StateResult<()> {
        let now = self.clock.now();
        let inner = self.lock();
        let c = inner
            .clients
            .get(&client)
            .ok_or(StateError::StaleClientId)?;
        match &inner.grace {
            Some(g) if !g.over(now) && !c.reclaim_complete && g.reclaimable.contains(&c.owner) => {
                Ok(())
            }
            _ => Err(StateError::NoGrace),
        }
    }

    /// Ends the grace period if its time is up or every previous client
    /// completed its reclaims; says so once.
    pub fn end_grace_if_over(&self) -> Option<GraceEnded> {
        let now = self.clock.now();
        let mut inner = self.lock();
        if !inner.grace.as_ref().is_some_and(|g| g.over(now)) {
            return None;
        }
        let g = inner.grace.take()?;
        let present: HashSet<&Vec<u8>> = inner.clients.values().map(|c| &c.owner).collect();
        let mut forget: Vec<Vec<u8>> = g
            .reclaimable
            .iter()
            .filter(|o| !present.contains(o))
            .cloned()
            .collect();
        forget.sort();
        Some(GraceEnded {
            early: g.completed.len() == g.reclaimable.len(),
            forget,
        })
    }

    /// The owner of `client` when it is not yet in the stable records.
    pub fn owner_to_record(&self, client: ClientId) -> StateResult<Option<Vec<u8>>> {
        let inner = self.lock();
        let c = inner
            .clients
            .get(&client)
            .ok_or(StateError::StaleClientId)?;
        Ok((!c.recorded).then(|| c.owner.clone()))
    }

    /// Notes that the owner of `client` is in the stable records now.
    pub fn mark_recorded(&self, client: ClientId) {
        if let Some(c) = self.lock().clients.get_mut(&client) {
            c.recorded = true;
        }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Every client record, confirmed or not, ordered by id.
    pub fn clients(&self) -> Vec<ClientSummary> {
        let now = self.clock.now();
        let inner = self.lock();
        let mut out: Vec<ClientSummary> = inner
            .clients
            .iter()
            .map(|(&id, c)| ClientSummary {
                id,
                owner: c.owner.clone(),
                minor_version: if c.v40.is_some() { 0 } else { 1 },
                confirmed: c.confirmed,
                sessions: inner.sessions.values().filter(|s| s.client == id).count(),
                opens: inner.opens.values().filter(|o| o.client == id).count(),
                lock_owners: inner.locks.values().filter(|l| l.client == id).count(),
                lease_remaining: (c.last_renewed + self.lease).saturating_sub(now),
            })
            .collect();
        out.sort_by_key(|c| c.id);
        out
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
            .filter(|(_, c)| c.owner == owner && c.v40.is_none())
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
        inner
            .clients
            .insert(id, Client::unconfirmed(owner, verifier, now, 1, None));
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
            .filter(|c| c.v40.is_none())
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
                .filter(|(id, c)| **id != client && c.owner == owner && c.v40.is_none())
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

    /// RECLAIM_COMPLETE: the client has taken back all it will; once every
    /// client of the previous instance said so, the grace period can end
    /// early ([`State::end_grace_if_over`]).
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
        let owner = c.owner.clone();
        if let Some(g) = inner.grace.as_mut()
            && g.reclaimable.contains(&owner)
        {
            g.completed.insert(owner);
        }
        Ok(())
    }

    /// DESTROY_CLIENTID; returns the owner to forget from the stable
    /// records, if it was recorded and no other client has it.
    pub fn destroy_client(&self, client: ClientId) -> StateResult<Option<Vec<u8>>> {
        self.check_client_boot(client)?;
        let mut inner = self.lock();
        if !inner.clients.contains_key(&client) {
            return Err(StateError::StaleClientId);
        }
        if inner.sessions.values().any(|s| s.client == client) {
            return Err(StateError::ClientIdBusy);
        }
        let forget = Self::remove_client(&mut inner, client);
        Ok(forget)
    }

    /// Removes a client with its sessions, opens and locks; returns its
    /// owner when it was recorded and no other client has that owner (a
    /// new incarnation of the client keeps the record).
    fn remove_client(inner: &mut Inner, client: ClientId) -> Option<Vec<u8>> {
        let c = inner.clients.remove(&client)?;
        inner.sessions.retain(|_, s| s.client != client);
        inner.opens.retain(|_, o| o.client != client);
        inner.locks.retain(|_, l| l.client != client);
        inner.owners.retain(|k, _| k.client != client);
        let mut shared = false;
        for other in inner.clients.values_mut().filter(|o| o.owner == c.owner) {
            // The record is per owner: another incarnation inherits it.
            other.recorded |= c.recorded;
            shared = true;
        }
        (c.recorded && !shared).then_some(c.owner)
    }

    /// Removes clients whose lease ran out, with their sessions, opens and
    /// locks (dropping the opens closes their files).
    pub fn reap_expired(&self) -> Reaped {
        let now = self.clock.now();
        let mut inner = self.lock();
        let expired: Vec<ClientId> = inner
            .clients
            .iter()
            .filter(|(_, c)| now.saturating_sub(c.last_renewed) > self.lease)
            .map(|(id, _)| *id)
            .collect();
        let mut reaped = Reaped::default();
        for id in &expired {
            reaped.clients += 1;
            reaped.forget.extend(Self::remove_client(&mut inner, *id));
        }
        Self::reap_idle_owners(&mut inner, now, self.lease);
        reaped
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
                confirmed: true,
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

    /// Looks an open or lock stateid of `client` up for I/O: the Linux
    /// client reads and writes with the lock stateid while it holds a lock.
    pub fn open_for_io(&self, client: ClientId, stateid: Stateid4) -> StateResult<OpenRef> {
        let inner = self.lock();
        let open = match inner
            .locks
            .get(&stateid.other)
            .filter(|l| l.client == client)
        {
            Some(l) => {
                self.check_seqid(stateid, l.seqid)?;
                l.open
            }
            None => stateid.other,
        };
        let o = inner
            .opens
            .get(&open)
            .filter(|o| o.client == client && o.confirmed)
            .ok_or_else(|| self.unknown_stateid(&stateid.other))?;
        if open == stateid.other {
            self.check_seqid(stateid, o.seqid)?;
        }
        Ok(OpenRef {
            access: o.access,
            file: o.file.clone(),
        })
    }

    /// CLOSE. The open's lock stateids and their locks go with it, as knfsd
    /// does: RFC 8881 §18.2.4 lets the server free them, and the Linux client
    /// has released its locks before it closes (it has no handling for
    /// NFS4ERR_LOCKS_HELD), so keeping them would only leak state.
    pub fn close(&self, client: ClientId, stateid: Stateid4) -> StateResult<()> {
        let mut inner = self.lock();
        let o = inner
            .opens
            .get(&stateid.other)
            .filter(|o| o.client == client)
            .ok_or_else(|| self.unknown_stateid(&stateid.other))?;
        self.check_seqid(stateid, o.seqid)?;
        inner.opens.remove(&stateid.other);
        inner.locks.retain(|_, l| l.open != stateid.other);
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

    /// FREE_STATEID: a lock stateid without locks goes; one with locks,
    /// and an open stateid (which needs CLOSE), answer LOCKS_HELD.
    pub fn free_stateid(&self, client: ClientId, stateid: Stateid4) -> StateResult<()> {
        {
            let mut inner = self.lock();
            if let Some(l) = inner
                .locks
                .get(&stateid.other)
                .filter(|l| l.client == client)
            {
                self.check_seqid(stateid, l.seqid)?;
                if !l.ranges.is_empty() {
                    return Err(StateError::LocksHeld);
                }
                inner.locks.remove(&stateid.other);
                return Ok(());
            }
        }
        self.open_for_io(client, stateid)?;
        Err(StateError::LocksHeld)
    }

    /// LOCK (RFC 8881 §18.10): checks the stateid, refuses a lock that
    /// conflicts with another lock owner's, and otherwise sets `range` of the
    /// owner's locks on `fh` to the type asked for (POSIX-style: upgrade,
    /// downgrade, split and merge). Returns the lock stateid with its new
    /// seqid. Blocking lock types are the caller's to map: the Linux client
    /// polls after DENIED, so no lock is ever queued here.
    pub fn lock_range(
        &self,
        client: ClientId,
        fh: &FileHandle,
        locker: Locker<'_>,
        write: bool,
        range: ByteRange,
    ) -> Result<Stateid4, LockError> {
        let mut inner = self.lock();
        let (existing, open, owner) = match locker {
            Locker::New { open, owner } => {
                let o = inner
                    .opens
                    .get(&open.other)
                    .filter(|o| o.client == client && o.confirmed)
                    .ok_or_else(|| self.unknown_stateid(&open.other))?;
                self.check_seqid(open, o.seqid)?;
                // An owner that already has a lock stateid from this open
                // keeps using it (knfsd does the same).
                let existing = inner
                    .locks
                    .iter()
                    .find(|(_, l)| l.client == client && l.owner == owner && l.open == open.other)
                    .map(|(other, _)| *other);
                (existing, open.other, owner.to_vec())
            }
            Locker::Existing(sid) => {
                let l = inner
                    .locks
                    .get(&sid.other)
                    .filter(|l| l.client == client)
                    .ok_or_else(|| self.unknown_stateid(&sid.other))?;
                self.check_seqid(sid, l.seqid)?;
                (Some(sid.other), l.open, l.owner.clone())
            }
        };
        let o = inner.opens.get(&open).ok_or(StateError::BadStateid)?;
        if o.file.handle != *fh {
            return Err(StateError::BadStateid.into());
        }
        let needed = if write { share::WRITE } else { share::READ };
        if o.access & needed == 0 {
            return Err(StateError::OpenMode.into());
        }
        if let Some(c) = Self::conflict(&inner, client, &owner, fh, range, write) {
            return Err(LockError::Denied(c));
        }
        let other = match existing {
            Some(other) => other,
            None => {
                let other = self.new_stateid_other(&mut inner);
                inner.locks.insert(
                    other,
                    LockState {
                        client,
                        owner,
                        open,
                        file: fh.clone(),
                        seqid: 0,
                        ranges: Vec::new(),
                    },
                );
                other
            }
        };
        let l = inner.locks.get_mut(&other).ok_or(StateError::BadStateid)?;
        set_range(&mut l.ranges, range, Some(write));
        l.seqid = next_seqid(l.seqid);
        Ok(Stateid4 {
            seqid: l.seqid,
            other,
        })
    }

    /// LOCKT: whether `owner` of `client` could take the lock, without
    /// creating any state.
    pub fn test_lock(
        &self,
        client: ClientId,
        owner: &[u8],
        fh: &FileHandle,
        write: bool,
        range: ByteRange,
    ) -> Result<(), LockError> {
        let inner = self.lock();
        match Self::conflict(&inner, client, owner, fh, range, write) {
            Some(c) => Err(LockError::Denied(c)),
            None => Ok(()),
        }
    }

    /// LOCKU: releases `range` of the lock stateid's locks (splitting a lock
    /// that covers more); unlocking what is not locked is no error (POSIX).
    pub fn unlock_range(
        &self,
        client: ClientId,
        fh: &FileHandle,
        stateid: Stateid4,
        range: ByteRange,
    ) -> StateResult<Stateid4> {
        let mut inner = self.lock();
        let unknown = self.unknown_stateid(&stateid.other);
        let l = inner
            .locks
            .get_mut(&stateid.other)
            .filter(|l| l.client == client)
            .ok_or(unknown)?;
        self.check_seqid(stateid, l.seqid)?;
        if l.file != *fh {
            return Err(StateError::BadStateid);
        }
        set_range(&mut l.ranges, range, None);
        l.seqid = next_seqid(l.seqid);
        Ok(Stateid4 {
            seqid: l.seqid,
            other: stateid.other,
        })
    }

    /// The first lock on `fh` of another lock owner than (`client`,
    /// `owner`) that overlaps `range` where one of the two is a write lock.
    fn conflict(
        inner: &Inner,
        client: ClientId,
        owner: &[u8],
        fh: &FileHandle,
        range: ByteRange,
        write: bool,
    ) -> Option<Conflict> {
        inner
            .locks
            .values()
            .filter(|l| l.file == *fh && (l.client != client || l.owner != owner))
            .find_map(|l| {
                l.ranges
                    .iter()
                    .find(|h| h.range.overlaps(range) && (write || h.write))
                    .map(|h| Conflict {
                        client: l.client,
                        owner: l.owner.clone(),
                        range: h.range,
                        write: h.write,
                    })
            })
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize, usize) {
        let inner = self.lock();
        (inner.clients.len(), inner.sessions.len(), inner.opens.len())
    }

    #[cfg(test)]
    fn lock_count(&self) -> usize {
        self.lock().locks.len()
    }

    /// A lock stateid's ranges as (start, end, write).
    #[cfg(test)]
    fn held(&self, stateid: Stateid4) -> Vec<(u64, u64, bool)> {
        self.lock().locks[&stateid.other]
            .ranges
            .iter()
            .map(|h| (h.range.start, h.range.end, h.write))
            .collect()
    }
}

/// A stateid's next seqid; 0 is skipped on wrap-around since it means
/// "the current one" (RFC 8881 §8.2.2).
fn next_seqid(seqid: u32) -> u32 {
    seqid.checked_add(1).unwrap_or(1)
}

/// Sets `range` of one owner's sorted, disjoint locks to a write lock, a
/// read lock, or (`None`) unlocked, splitting what it cuts and merging
/// neighbours of one type, as POSIX `fcntl` does for one process.
fn set_range(ranges: &mut Vec<HeldRange>, range: ByteRange, set: Option<bool>) {
    let mut out = Vec::with_capacity(ranges.len() + 2);
    for h in ranges.drain(..) {
        if !h.range.overlaps(range) {
            out.push(h);
            continue;
        }
        // Overlapping: keep the parts outside `range` (the subtractions
        // cannot overflow, the comparisons guard them).
        if h.range.start < range.start {
            out.push(HeldRange {
                range: ByteRange {
                    start: h.range.start,
                    end: range.start - 1,
                },
                write: h.write,
            });
        }
        if h.range.end > range.end {
            out.push(HeldRange {
                range: ByteRange {
                    start: range.end + 1,
                    end: h.range.end,
                },
                write: h.write,
            });
        }
    }
    if let Some(write) = set {
        out.push(HeldRange { range, write });
    }
    out.sort_by_key(|h| h.range.start);
    for h in out {
        match ranges.last_mut() {
            Some(last)
                if last.write == h.write
                    && last.range.end.checked_add(1) == Some(h.range.start) =>
            {
                last.range.end = h.range.end;
            }
            _ => ranges.push(h),
        }
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
        Arc::new(OpenFile::new(
            FileHandle(fh.to_vec()),
            OpenAccess { read: true, write },
            tempfile::tempfile().unwrap(),
        ))
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
        assert_eq!(state.reap_expired().clients, 0);
        assert_eq!(state.counts(), (1, 1, 1));
        clock.advance(Duration::from_secs(2));
        assert_eq!(state.reap_expired().clients, 1);
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

    /// A confirmed client of `owner` on `state`.
    fn connect(state: &State, owner: &[u8]) -> ClientId {
        let ex = state.exchange_id(owner, [1; 8]);
        state
            .create_session(ex.client, ex.sequence, 0, attrs())
            .unwrap();
        ex.client
    }

    #[test]
    fn grace_serves_only_reclaims_of_recorded_clients() {
        let clock = Arc::new(ManualClock::default());
        let state = State::new(clock.clone(), LEASE, 8);
        state.start_grace(&[b"old".to_vec()], Duration::from_secs(30));
        assert!(state.in_grace());
        let old = connect(&state, b"old");
        let new = connect(&state, b"new");
        state.check_reclaim(old).unwrap();
        assert_eq!(state.check_not_grace(), Err(StateError::Grace));
        assert_eq!(state.check_reclaim(new), Err(StateError::NoGrace));
        // A client the previous instance did not know ends nothing.
        state.reclaim_complete(new).unwrap();
        assert!(state.in_grace());
        assert_eq!(state.end_grace_if_over(), None);
        // The last previous client finishing ends grace early.
        clock.advance(Duration::from_secs(5));
        state.reclaim_complete(old).unwrap();
        assert_eq!(state.check_reclaim(old), Err(StateError::NoGrace));
        assert!(!state.in_grace());
        state.check_not_grace().unwrap();
        assert_eq!(
            state.end_grace_if_over(),
            Some(GraceEnded {
                early: true,
                forget: vec![]
            })
        );
        assert_eq!(state.end_grace_if_over(), None);
    }

    #[test]
    fn grace_ends_in_time_and_forgets_who_did_not_return() {
        let clock = Arc::new(ManualClock::default());
        let state = State::new(clock.clone(), LEASE, 8);
        state.start_grace(&[b"a".to_vec(), b"b".to_vec()], Duration::from_secs(30));
        let a = connect(&state, b"a");
        clock.advance(Duration::from_secs(29));
        state.check_reclaim(a).unwrap();
        assert_eq!(state.end_grace_if_over(), None);
        clock.advance(Duration::from_secs(1));
        assert_eq!(state.check_reclaim(a), Err(StateError::NoGrace));
        state.check_not_grace().unwrap();
        assert_eq!(
            state.end_grace_if_over(),
            Some(GraceEnded {
                early: false,
                forget: vec![b"b".to_vec()]
            })
        );
    }

    #[test]
    fn no_records_no_grace() {
        let (_, state, client, _) = setup();
        state.start_grace(&[], Duration::from_secs(30));
        assert!(!state.in_grace());
        assert_eq!(state.check_reclaim(client), Err(StateError::NoGrace));
        assert_eq!(state.end_grace_if_over(), None);
    }

    #[test]
    fn records_follow_the_owner() {
        let (clock, state, a, sid) = setup();
        assert_eq!(state.owner_to_record(a), Ok(Some(b"client-a".to_vec())));
        state.mark_recorded(a);
        assert_eq!(state.owner_to_record(a), Ok(None));
        // A new incarnation of the client inherits the record: dropping
        // the old one forgets nothing.
        let ex = state.exchange_id(b"client-a", [9; 8]);
        state
            .create_session(ex.client, ex.sequence, 0, attrs())
            .unwrap();
        assert_eq!(state.owner_to_record(ex.client), Ok(None));
        assert_eq!(state.destroy_session(&sid), Err(StateError::BadSession));
        // Unrecorded clients leave nothing to forget; recorded ones do.
        let b = connect(&state, b"client-b");
        let b_sid = state
            .lock()
            .sessions
            .iter()
            .find(|(_, s)| s.client == b)
            .map(|(id, _)| *id)
            .unwrap();
        state.destroy_session(&b_sid).unwrap();
        assert_eq!(state.destroy_client(b), Ok(None));
        clock.advance(LEASE + Duration::from_secs(1));
        assert_eq!(
            state.reap_expired(),
            Reaped {
                clients: 1,
                forget: vec![b"client-a".to_vec()]
            }
        );
    }

    #[test]
    fn destroy_client_needs_no_sessions() {
        let (_, state, client, sid) = setup();
        assert_eq!(state.destroy_client(client), Err(StateError::ClientIdBusy));
        state.destroy_session(&sid).unwrap();
        state.destroy_client(client).unwrap();
        assert_eq!(state.destroy_client(client), Err(StateError::StaleClientId));
    }

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    /// An open of file `fh` by `owner` with read+write access.
    fn open_rw(state: &State, client: ClientId, owner: &[u8], fh: &[u8]) -> Stateid4 {
        state
            .record_open(client, owner, share::BOTH, 0, open_file(fh, true))
            .unwrap()
    }

    fn new_lock(
        state: &State,
        client: ClientId,
        open: Stateid4,
        owner: &[u8],
        write: bool,
        range: ByteRange,
    ) -> Result<Stateid4, LockError> {
        let fh = state.lock().opens[&open.other].file.handle.clone();
        state.lock_range(client, &fh, Locker::New { open, owner }, write, range)
    }

    #[test]
    fn byte_ranges_from_the_wire() {
        assert_eq!(ByteRange::from_wire(5, 0), Err(StateError::Inval));
        assert_eq!(ByteRange::from_wire(u64::MAX, 2), Err(StateError::Inval));
        assert_eq!(ByteRange::from_wire(7, u64::MAX), Ok(r(7, u64::MAX)));
        // Ends exactly at 2^64 - 1: allowed.
        assert_eq!(ByteRange::from_wire(2, u64::MAX - 1), Ok(r(2, u64::MAX)));
        assert_eq!(
            ByteRange::from_wire(3, u64::MAX - 1),
            Err(StateError::Inval)
        );
        assert_eq!(ByteRange::from_wire(10, 5), Ok(r(10, 14)));
        assert_eq!(r(10, 14).to_wire(), (10, 5));
        assert_eq!(r(7, u64::MAX).to_wire(), (7, u64::MAX));
    }

    #[test]
    fn locks_conflict_across_owners_only_when_one_writes() {
        let (_, state, client, _) = setup();
        let fh = FileHandle(b"f".to_vec());
        let oa = open_rw(&state, client, b"oa", b"f");
        let ob = open_rw(&state, client, b"ob", b"f");
        let a = new_lock(&state, client, oa, b"la", true, r(0, 99)).unwrap();
        assert_eq!(a.seqid, 1);
        let want = Conflict {
            client,
            owner: b"la".to_vec(),
            range: r(0, 99),
            write: true,
        };
        assert_eq!(
            new_lock(&state, client, ob, b"lb", false, r(50, 60)),
            Err(LockError::Denied(want.clone()))
        );
        assert_eq!(
            state.test_lock(client, b"lb", &fh, false, r(99, 99)),
            Err(LockError::Denied(want))
        );
        // Nothing was created for the refused owner.
        assert_eq!(state.lock_count(), 1);
        let b = new_lock(&state, client, ob, b"lb", true, r(100, u64::MAX)).unwrap();
        // Shared locks coexist; another file is independent.
        let a = state
            .lock_range(client, &fh, Locker::Existing(a), false, r(0, 99))
            .unwrap();
        let oc = open_rw(&state, client, b"oc", b"f");
        new_lock(&state, client, oc, b"lc", false, r(0, 10)).unwrap();
        let od = open_rw(&state, client, b"od", b"g");
        new_lock(&state, client, od, b"ld", true, r(0, u64::MAX)).unwrap();
        assert_eq!(state.held(a), vec![(0, 99, false)]);
        assert_eq!(state.held(b), vec![(100, u64::MAX, true)]);
        // The same owner never conflicts with itself.
        state
            .test_lock(client, b"lb", &fh, true, r(200, 300))
            .unwrap();
    }

    #[test]
    fn same_owner_upgrades_downgrades_splits_and_merges() {
        let (_, state, client, _) = setup();
        let fh = FileHandle(b"f".to_vec());
        let o = open_rw(&state, client, b"o", b"f");
        let s = new_lock(&state, client, o, b"l", false, r(0, 99)).unwrap();
        let s = state
            .lock_range(client, &fh, Locker::Existing(s), true, r(20, 29))
            .unwrap();
        assert_eq!(s.seqid, 2);
        assert_eq!(
            state.held(s),
            vec![(0, 19, false), (20, 29, true), (30, 99, false)]
        );
        let other = open_rw(&state, client, b"o2", b"f");
        assert!(matches!(
            new_lock(&state, client, other, b"l2", false, r(25, 25)),
            Err(LockError::Denied(Conflict { range, write: true, .. })) if range == r(20, 29)
        ));
        // Downgrading the middle merges all back into one read lock.
        let s = state
            .lock_range(client, &fh, Locker::Existing(s), false, r(20, 29))
            .unwrap();
        assert_eq!(state.held(s), vec![(0, 99, false)]);
        // Adjacent same-type ranges merge; a different type stays apart.
        let s = state
            .lock_range(client, &fh, Locker::Existing(s), false, r(100, 199))
            .unwrap();
        let s = state
            .lock_range(client, &fh, Locker::Existing(s), true, r(200, 299))
            .unwrap();
        assert_eq!(state.held(s), vec![(0, 199, false), (200, 299, true)]);
        // A second LOCK with open_to_lock_owner reuses the owner's stateid.
        let again = new_lock(&state, client, o, b"l", true, r(500, 500)).unwrap();
        assert_eq!((again.other, again.seqid), (s.other, s.seqid + 1));
        new_lock(&state, client, other, b"l2", false, r(25, 25)).unwrap();
    }

    #[test]
    fn unlock_splits_and_frees_the_middle() {
        let (_, state, client, _) = setup();
        let fh = FileHandle(b"f".to_vec());
        let o = open_rw(&state, client, b"o", b"f");
        let s = new_lock(&state, client, o, b"l", true, r(0, u64::MAX)).unwrap();
        let s = state.unlock_range(client, &fh, s, r(10, 19)).unwrap();
        assert_eq!(state.held(s), vec![(0, 9, true), (20, u64::MAX, true)]);
        let o2 = open_rw(&state, client, b"o2", b"f");
        new_lock(&state, client, o2, b"l2", true, r(10, 19)).unwrap();
        assert!(matches!(
            new_lock(&state, client, o2, b"l2", true, r(19, 20)),
            Err(LockError::Denied(_))
        ));
        // Unlocking what is not locked is fine.
        let s = state.unlock_range(client, &fh, s, r(10, 19)).unwrap();
        assert_eq!(
            state.unlock_range(client, &FileHandle(b"g".to_vec()), s, r(0, 1)),
            Err(StateError::BadStateid)
        );
        let s = state.unlock_range(client, &fh, s, r(0, u64::MAX)).unwrap();
        assert!(state.held(s).is_empty());
    }

    #[test]
    fn lock_stateid_rules() {
        let (_, state, client, _) = setup();
        let fh = FileHandle(b"f".to_vec());
        let read_only = state
            .record_open(client, b"ro", share::READ, 0, open_file(b"f", false))
            .unwrap();
        assert_eq!(
            new_lock(&state, client, read_only, b"l", true, r(0, 1)),
            Err(LockError::State(StateError::OpenMode))
        );
        let o = open_rw(&state, client, b"o", b"f");
        assert_eq!(
            state.lock_range(
                client,
                &FileHandle(b"g".to_vec()),
                Locker::New {
                    open: o,
                    owner: b"l"
                },
                false,
                r(0, 1)
            ),
            Err(LockError::State(StateError::BadStateid))
        );
        let s1 = new_lock(&state, client, o, b"l", true, r(0, 9)).unwrap();
        let s2 = state.unlock_range(client, &fh, s1, r(0, 4)).unwrap();
        assert_eq!(
            state.unlock_range(client, &fh, s1, r(0, 4)),
            Err(StateError::OldStateid)
        );
        assert_eq!(
            state.unlock_range(client + 1, &fh, s2, r(0, 4)),
            Err(StateError::BadStateid)
        );
        // I/O and TEST_STATEID accept the lock stateid.
        assert_eq!(state.open_for_io(client, s2).unwrap().access, share::BOTH);
        state.test_stateid(client, s2).unwrap();
        assert_eq!(state.free_stateid(client, s2), Err(StateError::LocksHeld));
        let s3 = state.unlock_range(client, &fh, s2, r(0, u64::MAX)).unwrap();
        state.free_stateid(client, s3).unwrap();
        assert_eq!(state.test_stateid(client, s3), Err(StateError::BadStateid));
        // CLOSE takes the open's lock stateids and locks with it.
        let s4 = new_lock(&state, client, o, b"l", true, r(0, 9)).unwrap();
        state.close(client, o).unwrap();
        assert_eq!(state.test_stateid(client, s4), Err(StateError::BadStateid));
        let o2 = open_rw(&state, client, b"o2", b"f");
        new_lock(&state, client, o2, b"l2", true, r(0, 9)).unwrap();
    }

    #[test]
    fn expired_lease_releases_locks_to_another_client() {
        let (clock, state, a, _) = setup();
        let ex = state.exchange_id(b"client-b", [2; 8]);
        let b_sid = state
            .create_session(ex.client, ex.sequence, 0, attrs())
            .unwrap()
            .session;
        let b = ex.client;
        let fh = FileHandle(b"f".to_vec());
        let oa = open_rw(&state, a, b"o", b"f");
        new_lock(&state, a, oa, b"l", true, r(0, u64::MAX)).unwrap();
        let ob = open_rw(&state, b, b"o", b"f");
        match new_lock(&state, b, ob, b"l", false, r(4096, 8191)) {
            Err(LockError::Denied(c)) => assert_eq!(c.client, a),
            other => panic!("expected DENIED, got {other:?}"),
        }
        // B keeps renewing, A does not.
        clock.advance(LEASE - Duration::from_secs(1));
        state.sequence(&b_sid, 0, 1, 1).unwrap();
        assert_eq!(state.reap_expired().clients, 0);
        assert!(state.test_lock(b, b"l", &fh, true, r(0, 0)).is_err());
        clock.advance(Duration::from_secs(2));
        assert_eq!(state.reap_expired().clients, 1);
        state.test_lock(b, b"l", &fh, true, r(0, 0)).unwrap();
        new_lock(&state, b, ob, b"l", true, r(0, u64::MAX)).unwrap();
    }

    #[test]
    fn destroyed_client_loses_its_locks() {
        let (_, state, client, sid) = setup();
        let o = open_rw(&state, client, b"o", b"f");
        new_lock(&state, client, o, b"l", true, r(0, 9)).unwrap();
        state.destroy_session(&sid).unwrap();
        state.destroy_client(client).unwrap();
        assert_eq!(state.lock_count(), 0);
    }

    /// Random LOCK/LOCKU/LOCKT sequences of two owners on one file against a
    /// model that keeps each byte's lock per owner: the same verdicts, and
    /// the same bytes locked, after every step.
    #[test]
    fn locks_match_a_byte_model() {
        use rand::{Rng, SeedableRng};
        // Small enough that ranges often touch, overlap and split. Requests
        // start below N; model byte N stands for all of N..=u64::MAX.
        const N: u64 = 40;
        #[derive(Clone, Copy, PartialEq, Debug)]
        enum B {
            Free,
            Read,
            Write,
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x10c5);
        for _ in 0..50 {
            let (_, state, client, _) = setup();
            let fh = FileHandle(b"f".to_vec());
            let owners: [&[u8]; 2] = [b"l0", b"l1"];
            let opens = [
                open_rw(&state, client, b"o0", b"f"),
                open_rw(&state, client, b"o1", b"f"),
            ];
            let mut lock_ids: [Option<Stateid4>; 2] = [None, None];
            let mut model = [[B::Free; N as usize + 1]; 2];
            for _ in 0..60 {
                let who = rng.random_range(0..2usize);
                let start = rng.random_range(0..N);
                let range = if rng.random_bool(0.2) {
                    r(start, u64::MAX)
                } else {
                    r(start, rng.random_range(start..N))
                };
                let bytes = start as usize..=(range.end.min(N) as usize);
                let write = rng.random_bool(0.5);
                let conflict = bytes.clone().any(|b| {
                    let theirs = model[1 - who][b];
                    theirs == B::Write || (write && theirs == B::Read)
                });
                match rng.random_range(0..3) {
                    0 => {
                        let locker = match lock_ids[who] {
                            Some(s) => Locker::Existing(s),
                            None => Locker::New {
                                open: opens[who],
                                owner: owners[who],
                            },
                        };
                        let got = state.lock_range(client, &fh, locker, write, range);
                        match got {
                            Ok(s) => {
                                assert!(!conflict, "granted over a conflict");
                                lock_ids[who] = Some(s);
                                for b in bytes {
                                    model[who][b] = if write { B::Write } else { B::Read };
                                }
                            }
                            Err(LockError::Denied(c)) => {
                                assert!(conflict, "refused without a conflict: {c:?}");
                                assert!(c.range.overlaps(range) && (write || c.write));
                                assert_eq!(c.owner, owners[1 - who]);
                            }
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                    1 => {
                        let got = state.test_lock(client, owners[who], &fh, write, range);
                        assert_eq!(got.is_err(), conflict);
                    }
                    _ => {
                        if let Some(s) = lock_ids[who] {
                            lock_ids[who] =
                                Some(state.unlock_range(client, &fh, s, range).unwrap());
                            for b in bytes {
                                model[who][b] = B::Free;
                            }
                        }
                    }
                }
                for o in 0..2 {
                    let held = lock_ids[o].map(|s| state.held(s)).unwrap_or_default();
                    // Sorted, disjoint, and neighbours of one type merged.
                    for w in held.windows(2) {
                        assert!(w[0].1 < w[1].0);
                        assert!(w[0].2 != w[1].2 || w[0].1 + 1 < w[1].0, "{held:?}");
                    }
                    let mut bytes = [B::Free; N as usize + 1];
                    for (start, end, write) in held {
                        for b in start..=end.min(N) {
                            bytes[b as usize] = if write { B::Write } else { B::Read };
                        }
                    }
                    assert_eq!(bytes, model[o], "owner {o}");
                }
            }
        }
    }

    /// One step of [`opens_and_locks_match_a_model`]. Owners 0 and 1
    /// belong to client a, 2 and 3 to client b; files are 0 and 1. A step
    /// whose precondition does not hold (closing what is not open) is a
    /// no-op, so shrinking may drop any step.
    #[derive(Clone, Debug)]
    enum Op {
        Open {
            owner: usize,
            file: usize,
            access: u32,
            deny: u32,
        },
        Close {
            owner: usize,
            file: usize,
        },
        Lock {
            owner: usize,
            file: usize,
            write: bool,
        },
        Unlock {
            owner: usize,
            file: usize,
        },
        /// Uses a stateid that must no longer work (picked among those
        /// replaced, closed or expired so far) for one of the operations.
        Replay {
            pick: proptest::sample::Index,
            with: Replay,
        },
        /// Client a renews, b goes silent past its lease and is reaped,
        /// then comes back as a new incarnation.
        ExpireB,
    }

    #[derive(Clone, Copy, Debug)]
    enum Replay {
        Io,
        Close,
        Lock,
        Unlock,
    }

    fn op_strategy() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let owner = 0..4usize;
        let file = 0..2usize;
        prop_oneof![
            3 => (owner.clone(), file.clone(), prop::sample::select(vec![share::READ, share::WRITE, share::BOTH]), 0..4u32)
                .prop_map(|(owner, file, access, deny)| Op::Open { owner, file, access, deny }),
            1 => (owner.clone(), file.clone()).prop_map(|(owner, file)| Op::Close { owner, file }),
            3 => (owner.clone(), file.clone(), any::<bool>())
                .prop_map(|(owner, file, write)| Op::Lock { owner, file, write }),
            1 => (owner, file).prop_map(|(owner, file)| Op::Unlock { owner, file }),
            2 => (any::<prop::sample::Index>(), prop::sample::select(vec![Replay::Io, Replay::Close, Replay::Lock, Replay::Unlock]))
                .prop_map(|(pick, with)| Op::Replay { pick, with }),
            1 => Just(Op::ExpireB),
        ]
    }

    /// The model: share reservations, whole-file locks and stateid seqids
    /// of four owners on two files, and the stateids that must fail.
    struct Model {
        clock: Arc<ManualClock>,
        state: State,
        /// (client id, session) of a and b.
        clients: [(ClientId, SessionId); 2],
        incarnation: u8,
        a_seq: u32,
        opens: HashMap<(usize, usize), MOpen>,
        locks: HashMap<(usize, usize), MLock>,
        /// Stateids that must no longer work: (client index, stateid, is
        /// a lock stateid).
        gone: Vec<(usize, Stateid4, bool)>,
    }

    struct MOpen {
        sid: Stateid4,
        access: u32,
        deny: u32,
    }

    struct MLock {
        sid: Stateid4,
        /// `None`: unlocked, the lock stateid kept.
        write: Option<bool>,
    }

    const FILES: [&[u8]; 2] = [b"f", b"g"];
    const WHOLE: ByteRange = ByteRange {
        start: 0,
        end: u64::MAX,
    };

    fn open_owner(o: usize) -> Vec<u8> {
        format!("o{o}").into_bytes()
    }

    fn lock_owner(o: usize) -> Vec<u8> {
        format!("l{o}").into_bytes()
    }

    impl Model {
        fn new() -> Self {
            let clock = Arc::new(ManualClock::default());
            let state = State::new(clock.clone(), LEASE, 3);
            let a = Self::connect_as(&state, b"a", 1);
            let b = Self::connect_as(&state, b"b", 1);
            Self {
                clock,
                state,
                clients: [a, b],
                incarnation: 1,
                a_seq: 0,
                opens: HashMap::new(),
                locks: HashMap::new(),
                gone: Vec::new(),
            }
        }

        fn connect_as(state: &State, name: &[u8], verifier: u8) -> (ClientId, SessionId) {
            let ex = state.exchange_id(name, [verifier; 8]);
            let cs = state
                .create_session(ex.client, ex.sequence, 0, attrs())
                .unwrap();
            (ex.client, cs.session)
        }

        /// A SEQUENCE of client a, which renews its lease.
        fn renew_a(&mut self) -> Result<(), TestCaseError> {
            let a = self.clients[0].1;
            self.a_seq += 1;
            prop_assert!(self.state.sequence(&a, 0, self.a_seq, 1).is_ok());
            self.state.finish_slot(&a, 0, self.a_seq, None);
            Ok(())
        }

        fn client(&self, owner: usize) -> ClientId {
            self.clients[owner / 2].0
        }

        /// Whether a live stateid has the `other` of `sid` with a newer
        /// seqid (a replay of it is OLD_STATEID, not BAD_STATEID).
        fn replaced(&self, sid: Stateid4) -> bool {
            self.opens
                .values()
                .map(|m| m.sid)
                .chain(self.locks.values().map(|l| l.sid))
                .any(|s| s.other == sid.other && s.seqid > sid.seqid)
        }

        fn lock_conflict(&self, o: usize, f: usize, write: bool) -> bool {
            self.locks
                .iter()
                .any(|(&(o2, f2), l)| o2 != o && f2 == f && l.write.is_some_and(|w| w || write))
        }

        fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
            match *op {
                Op::Open {
                    owner: o,
                    file: f,
                    access,
                    deny,
                } => {
                    let conflict = self.opens.iter().any(|(&(o2, f2), m)| {
                        o2 != o && f2 == f && (m.deny & access != 0 || m.access & deny != 0)
                    });
                    let got = self.state.record_open(
                        self.client(o),
                        &open_owner(o),
                        access,
                        deny,
                        open_file(FILES[f], access & share::WRITE != 0),
                    );
                    if conflict {
                        prop_assert_eq!(got, Err(StateError::ShareDenied));
                        return Ok(());
                    }
                    let sid = got.map_err(|e| TestCaseError::fail(format!("OPEN: {e:?}")))?;
                    match self.opens.get_mut(&(o, f)) {
                        Some(m) => {
                            prop_assert_eq!((sid.other, sid.seqid), (m.sid.other, m.sid.seqid + 1));
                            self.gone.push((o / 2, m.sid, false));
                            m.sid = sid;
                            m.access |= access;
                            m.deny |= deny;
                        }
                        None => {
                            prop_assert_eq!(sid.seqid, 1);
                            self.opens.insert((o, f), MOpen { sid, access, deny });
                        }
                    }
                }
                Op::Close { owner: o, file: f } => {
                    let Some(m) = self.opens.remove(&(o, f)) else {
                        return Ok(());
                    };
                    prop_assert_eq!(self.state.close(self.client(o), m.sid), Ok(()));
                    self.gone.push((o / 2, m.sid, false));
                    if let Some(l) = self.locks.remove(&(o, f)) {
                        self.gone.push((o / 2, l.sid, true));
                    }
                }
                Op::Lock {
                    owner: o,
                    file: f,
                    write,
                } => {
                    let Some(m) = self.opens.get(&(o, f)) else {
                        return Ok(());
                    };
                    let needed = if write { share::WRITE } else { share::READ };
                    let owner = lock_owner(o);
                    let locker = match self.locks.get(&(o, f)) {
                        Some(l) => Locker::Existing(l.sid),
                        None => Locker::New {
                            open: m.sid,
                            owner: &owner,
                        },
                    };
                    let fh = FileHandle(FILES[f].to_vec());
                    let got = self
                        .state
                        .lock_range(self.client(o), &fh, locker, write, WHOLE);
                    if m.access & needed == 0 {
                        prop_assert_eq!(got, Err(LockError::State(StateError::OpenMode)));
                        return Ok(());
                    }
                    if self.lock_conflict(o, f, write) {
                        prop_assert!(matches!(got, Err(LockError::Denied(_))), "{:?}", got);
                        return Ok(());
                    }
                    let sid = got.map_err(|e| TestCaseError::fail(format!("LOCK: {e:?}")))?;
                    match self.locks.get_mut(&(o, f)) {
                        Some(l) => {
                            prop_assert_eq!((sid.other, sid.seqid), (l.sid.other, l.sid.seqid + 1));
                            self.gone.push((o / 2, l.sid, true));
                            l.sid = sid;
                            l.write = Some(write);
                        }
                        None => {
                            prop_assert_eq!(sid.seqid, 1);
                            self.locks.insert(
                                (o, f),
                                MLock {
                                    sid,
                                    write: Some(write),
                                },
                            );
                        }
                    }
                }
                Op::Unlock { owner: o, file: f } => {
                    let client = self.client(o);
                    let Some(l) = self.locks.get_mut(&(o, f)) else {
                        return Ok(());
                    };
                    let fh = FileHandle(FILES[f].to_vec());
                    let sid = self
                        .state
                        .unlock_range(client, &fh, l.sid, WHOLE)
                        .map_err(|e| TestCaseError::fail(format!("LOCKU: {e:?}")))?;
                    prop_assert_eq!((sid.other, sid.seqid), (l.sid.other, l.sid.seqid + 1));
                    self.gone.push((o / 2, l.sid, true));
                    l.sid = sid;
                    l.write = None;
                }
                Op::Replay { pick, with } => {
                    if self.gone.is_empty() {
                        return Ok(());
                    }
                    let (c, sid, is_lock) = self.gone[pick.index(self.gone.len())];
                    let client = self.clients[c].0;
                    // The seqid check comes first for a stateid of the
                    // operation's own kind: OLD when a newer one lives.
                    let old_or_bad = if self.replaced(sid) {
                        StateError::OldStateid
                    } else {
                        StateError::BadStateid
                    };
                    // Any file: a replay fails before the handle is looked at.
                    let fh = FileHandle(FILES[0].to_vec());
                    let (got, want) = match with {
                        Replay::Io => (self.state.open_for_io(client, sid).map(|_| ()), old_or_bad),
                        Replay::Close => (
                            self.state.close(client, sid),
                            if is_lock {
                                StateError::BadStateid
                            } else {
                                old_or_bad
                            },
                        ),
                        Replay::Lock => {
                            let owner = lock_owner(c * 2);
                            let locker = if is_lock {
                                Locker::Existing(sid)
                            } else {
                                Locker::New {
                                    open: sid,
                                    owner: &owner,
                                }
                            };
                            let got = match self.state.lock_range(client, &fh, locker, true, WHOLE)
                            {
                                Ok(s) => Ok(s),
                                Err(LockError::State(e)) => Err(e),
                                Err(e) => {
                                    return Err(TestCaseError::fail(format!(
                                        "replayed LOCK with {sid:?}: {e:?}"
                                    )));
                                }
                            };
                            (got.map(|_| ()), old_or_bad)
                        }
                        Replay::Unlock => (
                            self.state.unlock_range(client, &fh, sid, WHOLE).map(|_| ()),
                            if is_lock {
                                old_or_bad
                            } else {
                                StateError::BadStateid
                            },
                        ),
                    };
                    prop_assert_eq!(got, Err(want), "{:?} with {:?}", with, sid);
                }
                Op::ExpireB => {
                    self.renew_a()?;
                    self.clock.advance(LEASE + Duration::from_secs(1));
                    self.renew_a()?;
                    prop_assert_eq!(self.state.reap_expired().clients, 1);
                    let keys: Vec<_> = self
                        .opens
                        .keys()
                        .filter(|k| k.0 / 2 == 1)
                        .copied()
                        .collect();
                    for key in keys {
                        if let Some(m) = self.opens.remove(&key) {
                            self.gone.push((1, m.sid, false));
                        }
                    }
                    let keys: Vec<_> = self
                        .locks
                        .keys()
                        .filter(|k| k.0 / 2 == 1)
                        .copied()
                        .collect();
                    for key in keys {
                        if let Some(l) = self.locks.remove(&key) {
                            self.gone.push((1, l.sid, true));
                        }
                    }
                    self.incarnation += 1;
                    self.clients[1] = Self::connect_as(&self.state, b"b", self.incarnation);
                }
            }
            Ok(())
        }

        /// What must hold after every step: live stateids work for I/O with
        /// the model's access, replays of replaced, closed or expired ones
        /// do not, and LOCKT agrees with the model's locks.
        fn check(&self) -> Result<(), TestCaseError> {
            for (&(o, _), m) in &self.opens {
                let io = self
                    .state
                    .open_for_io(self.client(o), m.sid)
                    .map_err(|e| TestCaseError::fail(format!("live open {:?}: {e:?}", m.sid)))?;
                prop_assert_eq!(io.access, m.access);
            }
            for (&(o, _), l) in &self.locks {
                prop_assert!(self.state.open_for_io(self.client(o), l.sid).is_ok());
            }
            for &(c, sid, _) in &self.gone {
                let want = if self.replaced(sid) {
                    StateError::OldStateid
                } else {
                    StateError::BadStateid
                };
                let got = self.state.open_for_io(self.clients[c].0, sid);
                prop_assert_eq!(got.map(|_| ()), Err(want), "{:?}", sid);
            }
            for o in 0..4 {
                for (f, name) in FILES.iter().enumerate() {
                    for write in [false, true] {
                        let fh = FileHandle(name.to_vec());
                        let got =
                            self.state
                                .test_lock(self.client(o), &lock_owner(o), &fh, write, WHOLE);
                        prop_assert_eq!(got.is_err(), self.lock_conflict(o, f, write));
                    }
                }
            }
            Ok(())
        }
    }

    use proptest::prelude::{TestCaseError, prop_assert, prop_assert_eq};

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 256,
            // A failure prints its shrunk sequence; nothing is written
            // into the source tree.
            failure_persistence: None,
            ..Default::default()
        })]

        /// Generated OPEN/CLOSE/LOCK/LOCKU sequences of four owners (two
        /// per client) on two files, with replays of old, closed and
        /// expired stateids and lease expiry of one client, against a
        /// model of share reservations, whole-file locks and stateid
        /// seqids: the same verdict at every step, and the same state
        /// after it.
        #[test]
        fn opens_and_locks_match_a_model(ops in proptest::collection::vec(op_strategy(), 1..80)) {
            let mut model = Model::new();
            for op in &ops {
                model.step(op)?;
                model.check()?;
            }
        }
    }
}
