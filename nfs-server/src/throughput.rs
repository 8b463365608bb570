//! Throughput modes and I/O metering, by Amazon EFS's published rules.
//!
//! Every request is *metered*: data and metadata requests count at least
//! 4 KiB each, and reads (data and metadata) count one third of their size.
//! The metered bytes are what the throughput limit applies to:
//!
//! - `bursting`: a baseline of 50 KiB/s per GiB stored (at least 1 MiB/s)
//!   and bursts of 100 MiB/s per TiB stored (at least 100 MiB/s) while burst
//!   credits last. Credits are earned at the baseline rate all the time and
//!   spent by every metered byte, so they grow by the difference while usage
//!   is below the baseline and shrink by it above. A new file system starts
//!   with 2.1 TiB; the balance is capped at 2.1 TiB, or 2.1 TiB per TiB
//!   stored above 1 TiB.
//! - `provisioned`: a fixed rate.
//! - `elastic`: no limit.
//!
//! [`Bucket`] is the pure arithmetic, driven by times passed in; [`Throttle`]
//! applies it to requests: each one reserves its share of the rate in arrival
//! order and its reply waits until its turn, so a client with many requests
//! in flight queues behind the requests that came before, not ahead of them.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::stable::{RecordError, load_record, save_record};

pub const KIB: f64 = 1024.0;
pub const MIB: f64 = 1024.0 * KIB;
pub const GIB: f64 = 1024.0 * MIB;
pub const TIB: f64 = 1024.0 * GIB;

/// The burst credit balance of a new file system, and the cap below 1 TiB
/// stored.
pub const INITIAL_CREDITS: f64 = 2.1 * TIB;
/// The smallest metered size of a request.
pub const MIN_METERED: u64 = 4096;

/// How a file system's throughput is limited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThroughputMode {
    /// Baseline and burst rates from the stored bytes, with burst credits.
    Bursting,
    /// A fixed rate of metered MiB/s.
    Provisioned { mibps: u32 },
    /// No limit (EFS's default for new file systems).
    #[default]
    Elastic,
}

/// What a request does, for metering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoKind {
    DataRead,
    DataWrite,
    MetadataRead,
    MetadataWrite,
}

impl IoKind {
    pub fn is_read(self) -> bool {
        matches!(self, Self::DataRead | Self::MetadataRead)
    }
}

/// Metered bytes of one request of `bytes` bytes (metadata requests: 0).
pub fn metered(kind: IoKind, bytes: u64) -> f64 {
    let counted = bytes.max(MIN_METERED) as f64;
    if kind.is_read() {
        counted / 3.0
    } else {
        counted
    }
}

/// The metadata I/O an operation does, by its name in the metrics (NFSv4
/// operation or `NFSPROC3_*` procedure). Operations that read or change the
/// namespace or attributes count; data I/O (READ, WRITE, COMMIT) is metered
/// by its bytes instead, and session, state and lock plumbing is not
/// metered, as EFS does not meter it.
pub fn metadata_kind(op: &str) -> Option<IoKind> {
    match op.strip_prefix("NFSPROC3_").unwrap_or(op) {
        "GETATTR" | "LOOKUP" | "LOOKUPP" | "ACCESS" | "READLINK" | "READDIR" | "READDIRPLUS"
        | "FSSTAT" | "FSINFO" | "PATHCONF" | "VERIFY" | "NVERIFY" | "OPEN" | "OPENATTR"
        | "SECINFO" | "SECINFO_NO_NAME" => Some(IoKind::MetadataRead),
        "SETATTR" | "CREATE" | "MKDIR" | "SYMLINK" | "MKNOD" | "REMOVE" | "RMDIR" | "RENAME"
        | "LINK" => Some(IoKind::MetadataWrite),
        _ => None,
    }
}

/// Bursting baseline in bytes/s: 50 KiB/s per GiB stored, at least 1 MiB/s.
pub fn baseline(stored: u64) -> f64 {
    (stored as f64 / GIB * 50.0 * KIB).max(MIB)
}

/// Bursting burst rate in bytes/s: 100 MiB/s per TiB stored, at least
/// 100 MiB/s.
pub fn burst(stored: u64) -> f64 {
    (stored as f64 / TIB * 100.0 * MIB).max(100.0 * MIB)
}

/// Largest burst credit balance: 2.1 TiB, or 2.1 TiB per TiB stored.
pub fn max_credits(stored: u64) -> f64 {
    INITIAL_CREDITS * (stored as f64 / TIB).max(1.0)
}

/// The throughput limit's arithmetic. Times are offsets from any fixed
/// origin, passed in by the caller.
#[derive(Clone, Debug)]
pub struct Bucket {
    /// Burst credits in metered bytes.
    credits: f64,
    stored: u64,
    mode: ThroughputMode,
    /// Until when the rate is taken by requests already admitted; credits
    /// are accounted up to here.
    busy_until: Duration,
}

impl Bucket {
    /// A bucket with `credits`, which may exceed the cap for `stored` (a
    /// recorded balance before the stored bytes are known); only
    /// [`Bucket::set_stored`] trims it.
    pub fn new(credits: f64, stored: u64, mode: ThroughputMode, now: Duration) -> Self {
        Self {
            credits: credits.max(0.0),
            stored,
            mode,
            busy_until: now,
        }
    }

    pub fn credits(&self) -> f64 {
        self.credits
    }

    pub fn stored(&self) -> u64 {
        self.stored
    }

    pub fn mode(&self) -> ThroughputMode {
        self.mode
    }

    /// The metered bytes/s allowed now; `None`: no limit.
    pub fn permitted(&self) -> Option<f64> {
        match self.mode {
            ThroughputMode::Elastic => None,
            ThroughputMode::Provisioned { mibps } => Some(f64::from(mibps) * MIB),
            ThroughputMode::Bursting if self.credits > 0.0 => Some(burst(self.stored)),
            ThroughputMode::Bursting => Some(baseline(self.stored)),
        }
    }

    /// Earns credits for the idle time up to `now`. Only bursting earns:
    /// the other modes keep the balance as it was, for a switch back.
    pub fn advance(&mut self, now: Duration) {
        if now <= self.busy_until {
            return;
        }
        if self.mode == ThroughputMode::Bursting {
            let idle = (now - self.busy_until).as_secs_f64();
            self.credits = self.capped(self.credits + baseline(self.stored) * idle);
        }
        self.busy_until = now;
    }

    /// Earning stops at the cap; a balance above it is kept until spent.
    fn capped(&self, credits: f64) -> f64 {
        credits.min(max_credits(self.stored).max(self.credits))
    }

    pub fn set_stored(&mut self, stored: u64, now: Duration) {
        self.advance(now);
        self.stored = stored;
        self.credits = self.credits.min(max_credits(stored));
    }

    /// Switches the mode; requests admitted under the old one keep their
    /// turn, new ones get the new rate from `now` on.
    pub fn set_mode(&mut self, mode: ThroughputMode, now: Duration) {
        if mode == self.mode {
            return;
        }
        self.advance(now);
        self.busy_until = self.busy_until.min(now);
        self.mode = mode;
    }

    /// Admits a request of `metered` bytes arriving at `now`: returns how
    /// long it waits for its turn. Under bursting it goes at the burst rate
    /// while there are credits, spending what it takes above the baseline
    /// (the last one may leave a debt of less than its size, repaid before
    /// the next burst), else at the baseline, which spends nothing.
    pub fn admit(&mut self, metered: f64, now: Duration) -> Duration {
        self.advance(now);
        let start = self.busy_until;
        let takes = match self.mode {
            ThroughputMode::Elastic => 0.0,
            ThroughputMode::Provisioned { mibps } => metered / (f64::from(mibps.max(1)) * MIB),
            ThroughputMode::Bursting => {
                let (base, fast) = (baseline(self.stored), burst(self.stored));
                if self.credits > 0.0 {
                    let at_burst = metered / fast;
                    self.credits = self.capped(self.credits + base * at_burst - metered);
                    at_burst
                } else {
                    metered / base
                }
            }
        };
        self.busy_until = start + Duration::from_secs_f64(takes);
        start.saturating_sub(now)
    }
}

/// A [`Bucket`] shared by every connection, on tokio's clock (so tests can
/// pause time). Admission is under one lock, in arrival order.
#[derive(Debug)]
pub struct Throttle {
    bucket: Mutex<Bucket>,
    origin: tokio::time::Instant,
    /// Metered bytes admitted so far, for the utilisation gauge.
    metered_total: Mutex<f64>,
}

impl Throttle {
    pub fn new(credits: f64, stored: u64, mode: ThroughputMode) -> Self {
        Self {
            bucket: Mutex::new(Bucket::new(credits, stored, mode, Duration::ZERO)),
            origin: tokio::time::Instant::now(),
            metered_total: Mutex::new(0.0),
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        // The bucket is plain numbers, consistent after any panic.
        self.bucket.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Meters a request under `mode` and returns its metered bytes and how
    /// long its reply waits.
    pub fn charge(&self, kind: IoKind, bytes: u64, mode: ThroughputMode) -> (f64, Duration) {
        let m = metered(kind, bytes);
        let now = self.now();
        let wait = {
            let mut b = self.bucket();
            b.set_mode(mode, now);
            b.admit(m, now)
        };
        *self.metered_total.lock().unwrap_or_else(|e| e.into_inner()) += m;
        (m, wait)
    }

    /// Meters a data request and waits for its turn.
    pub async fn data(&self, kind: IoKind, bytes: u64, mode: ThroughputMode) -> f64 {
        let (m, wait) = self.charge(kind, bytes, mode);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        m
    }

    pub fn set_stored(&self, stored: u64) {
        let now = self.now();
        self.bucket().set_stored(stored, now);
    }

    /// Credits earned up to now under `mode` (the mode in force, which an
    /// idle bucket has not seen yet), permitted rate, stored bytes and the
    /// metered bytes admitted so far.
    pub fn snapshot(&self, mode: ThroughputMode) -> Snapshot {
        let now = self.now();
        let mut b = self.bucket();
        b.set_mode(mode, now);
        b.advance(now);
        Snapshot {
            // A debt of less than one request shows as none.
            credits: b.credits().max(0.0),
            permitted: b.permitted(),
            stored: b.stored(),
            metered_total: *self.metered_total.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Snapshot {
    pub credits: f64,
    pub permitted: Option<f64>,
    pub stored: u64,
    pub metered_total: f64,
}

/// The burst credit record's name in the state directory.
pub const CREDITS_FILE: &str = "throughput.json";
const CREDITS_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct CreditRecord {
    version: u32,
    burst_credit_bytes: f64,
}

impl crate::stable::Record for CreditRecord {
    const FILE: &'static str = CREDITS_FILE;
    const WHAT: &'static str = "burst credits";
    const VERSION: u32 = CREDITS_VERSION;
    fn version(&self) -> u32 {
        self.version
    }
}

/// The burst credit balance recorded in `dir`; `None` when there is no
/// record, which means a new file system.
pub fn load_credits(dir: &Path) -> Result<Option<f64>, RecordError> {
    Ok(load_record::<CreditRecord>(dir)?.map(|r| r.burst_credit_bytes.max(0.0)))
}

pub fn save_credits(dir: &Path, credits: f64) -> Result<(), RecordError> {
    let record = CreditRecord {
        version: CREDITS_VERSION,
        burst_credit_bytes: credits,
    };
    save_record(dir, &record)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 1e-9 + 1e-6
    }

    #[test]
    fn metering_counts_reads_at_a_third_and_at_least_4_kib() {
        assert_eq!(metered(IoKind::DataWrite, 1 << 20), MIB);
        assert!(close(metered(IoKind::DataRead, 3 << 20), MIB));
        assert_eq!(metered(IoKind::DataWrite, 100), 4096.0);
        assert!(close(metered(IoKind::DataRead, 0), 4096.0 / 3.0));
        assert_eq!(metered(IoKind::MetadataWrite, 0), 4096.0);
        assert!(close(metered(IoKind::MetadataRead, 0), 4096.0 / 3.0));
        assert_eq!(metadata_kind("NFSPROC3_LOOKUP"), Some(IoKind::MetadataRead));
        assert_eq!(metadata_kind("RENAME"), Some(IoKind::MetadataWrite));
        assert_eq!(metadata_kind("READ"), None);
        assert_eq!(metadata_kind("SEQUENCE"), None);
    }

    #[test]
    fn rates_follow_the_stored_bytes() {
        // Small file systems get the minimums.
        assert_eq!(baseline(0), MIB);
        assert_eq!(burst(0), 100.0 * MIB);
        assert_eq!(max_credits(0), 2.1 * TIB);
        // 20 GiB: 20 × 50 KiB/s is still under the 1 MiB/s minimum.
        assert_eq!(baseline(20 << 30), MIB);
        // 100 GiB: 5000 KiB/s baseline, burst still the minimum.
        assert!(close(baseline(100 << 30), 5000.0 * KIB));
        assert_eq!(burst(100 << 30), 100.0 * MIB);
        // 1 TiB: 50 MiB/s baseline, 100 MiB/s burst.
        assert!(close(baseline(1 << 40), 50.0 * MIB));
        assert!(close(burst(1 << 40), 100.0 * MIB));
        // 10 TiB: 500 MiB/s and 1000 MiB/s; up to 21 TiB of credits.
        assert!(close(baseline(10 << 40), 500.0 * MIB));
        assert!(close(burst(10 << 40), 1000.0 * MIB));
        assert!(close(max_credits(10 << 40), 21.0 * TIB));
    }

    /// Admits `n` requests of `size` metered bytes back to back, each
    /// arriving when the previous one's turn came; returns the time taken.
    fn drive(b: &mut Bucket, mut now: Duration, n: usize, size: f64) -> Duration {
        let began = now;
        for _ in 0..n {
            now += b.admit(size, now);
        }
        // The last request's turn came; its own share ends a share later.
        now + b.admit(0.0, now) - began
    }

    #[test]
    fn provisioned_is_a_fixed_rate_and_elastic_none() {
        let mut b = Bucket::new(0.0, 0, ThroughputMode::Provisioned { mibps: 20 }, S);
        assert_eq!(b.permitted(), Some(20.0 * MIB));
        // 200 MiB at 20 MiB/s: 10 s.
        let took = drive(&mut b, S, 200, MIB);
        assert!(close(took.as_secs_f64(), 10.0), "{took:?}");
        // Requests arriving together queue in order: the third waits two
        // shares (100 ms at 20 MiB/s for 1 MiB each).
        let now = S * 100;
        assert_eq!(b.admit(MIB, now), Duration::ZERO);
        assert!(close(b.admit(MIB, now).as_secs_f64(), 0.05));
        assert!(close(b.admit(MIB, now).as_secs_f64(), 0.10));
        b.set_mode(ThroughputMode::Elastic, now);
        assert_eq!(b.permitted(), None);
        assert_eq!(b.admit(1e12, now), Duration::ZERO);
        assert_eq!(b.admit(1e12, now), Duration::ZERO);
    }

    #[test]
    fn bursting_spends_credits_above_the_baseline_then_falls_to_it() {
        // An empty file system with 1 GiB of credits: burst 100 MiB/s,
        // baseline 1 MiB/s; each burst MiB spends 1 - 1/100 MiB.
        let mut b = Bucket::new(GIB, 0, ThroughputMode::Bursting, Duration::ZERO);
        assert_eq!(b.permitted(), Some(100.0 * MIB));
        let took = drive(&mut b, Duration::ZERO, 100, MIB);
        assert!(close(took.as_secs_f64(), 1.0), "{took:?}");
        assert!(close(b.credits(), GIB - 100.0 * MIB * 0.99));
        // Burst until the credits are gone: 1024 MiB / 0.99 MiB per MiB
        // is 1034.3, so the 1035th MiB still bursts, into a small debt;
        // then the baseline.
        let mut now = took;
        let mut fast = 100;
        loop {
            let before = b.credits();
            let wait = b.admit(MIB, now);
            now += wait;
            if b.credits() == before {
                break;
            }
            fast += 1;
        }
        assert_eq!(fast, 1035);
        assert!(b.credits() < 0.0 && b.credits() > -MIB);
        assert_eq!(b.permitted(), Some(MIB));
        // At the baseline: 10 MiB take 10 s and the balance stays.
        let credits = b.credits();
        let turn = now + b.admit(0.0, now);
        let took = drive(&mut b, turn, 10, MIB);
        assert!(close(took.as_secs_f64(), 10.0), "{took:?}");
        assert_eq!(b.credits(), credits);
        // A second idle repays the debt and bursting resumes.
        b.advance(now + S * 12);
        assert!(b.credits() > 0.0);
        assert_eq!(b.permitted(), Some(100.0 * MIB));
    }

    #[test]
    fn idle_time_earns_the_baseline_up_to_the_cap() {
        let mut b = Bucket::new(0.0, 0, ThroughputMode::Bursting, Duration::ZERO);
        assert_eq!(b.permitted(), Some(MIB));
        // An hour idle at 1 MiB/s baseline: 3600 MiB.
        b.advance(S * 3600);
        assert!(close(b.credits(), 3600.0 * MIB));
        // Using half the baseline for an hour earns the other half.
        let mut b = Bucket::new(0.0, 0, ThroughputMode::Bursting, Duration::ZERO);
        for i in 0..3600 {
            b.admit(MIB / 2.0, S * i);
        }
        b.advance(S * 3600);
        // Each second at the baseline costs nothing; each idle half
        // second earns half a MiB.
        assert!(close(b.credits(), 1800.0 * MIB), "{}", b.credits());
        // The balance stops at 2.1 TiB below 1 TiB stored ...
        let mut b = Bucket::new(2.0 * TIB, 0, ThroughputMode::Bursting, Duration::ZERO);
        b.advance(S * 86_400 * 30);
        assert!(close(b.credits(), 2.1 * TIB));
        // ... and at 2.1 TiB per TiB above; shrinking the file system
        // trims it.
        let mut b = Bucket::new(4.0 * TIB, 2 << 40, ThroughputMode::Bursting, Duration::ZERO);
        b.advance(S * 86_400 * 30);
        assert!(close(b.credits(), 4.2 * TIB));
        b.set_stored(1 << 30, S * 86_400 * 31);
        assert!(close(b.credits(), 2.1 * TIB));
        // Other modes keep the balance untouched.
        let mut b = Bucket::new(GIB, 0, ThroughputMode::Elastic, Duration::ZERO);
        b.admit(10.0 * GIB, S);
        b.advance(S * 3600);
        assert_eq!(b.credits(), GIB);
    }

    #[test]
    fn a_greedy_client_queues_behind_earlier_requests() {
        let mode = ThroughputMode::Provisioned { mibps: 20 };
        let t = Throttle::new(0.0, 0, mode);
        // The greedy client has eight 1 MiB writes in flight; the polite
        // one sends one after them, and the greedy one eight more after.
        let mut waits = Vec::new();
        for (who, n) in [("greedy", 8), ("polite", 1), ("greedy", 8)] {
            for _ in 0..n {
                waits.push((t.charge(IoKind::DataWrite, 1 << 20, mode).1, who));
            }
        }
        // Each waits one 50 ms share per request before it (less the
        // moments between the calls), whoever sent them.
        for (i, (wait, _)) in waits.iter().enumerate() {
            let share = 0.05 * i as f64;
            assert!(
                (share - 0.04..=share).contains(&wait.as_secs_f64()),
                "{i}: {wait:?}"
            );
        }
        waits.sort();
        assert_eq!(waits.iter().position(|(_, w)| *w == "polite"), Some(8));
        let s = t.snapshot(mode);
        assert_eq!(s.permitted, Some(20.0 * MIB));
        assert_eq!(s.metered_total, 17.0 * MIB);
    }

    #[tokio::test]
    async fn replies_wait_for_their_turn() {
        let mode = ThroughputMode::Provisioned { mibps: 10 };
        let t = Throttle::new(0.0, 0, mode);
        let began = tokio::time::Instant::now();
        // 1 MiB at 10 MiB/s: the second reply waits 100 ms, the third 200.
        for _ in 0..3 {
            t.data(IoKind::DataWrite, 1 << 20, mode).await;
        }
        assert!(began.elapsed() >= Duration::from_millis(195));
        // Elastic lets them all go at once.
        let began = tokio::time::Instant::now();
        for _ in 0..3 {
            t.data(IoKind::DataWrite, 1 << 20, ThroughputMode::Elastic)
                .await;
        }
        assert!(began.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn credits_survive_in_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_credits(dir.path()).unwrap(), None);
        save_credits(dir.path(), 12345.5).unwrap();
        assert_eq!(load_credits(dir.path()).unwrap(), Some(12345.5));
        std::fs::write(dir.path().join(CREDITS_FILE), "{").unwrap();
        assert!(matches!(
            load_credits(dir.path()),
            Err(RecordError::Parse { .. })
        ));
    }
}
