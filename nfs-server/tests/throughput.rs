//! Throughput modes against the server over a real loopback socket (needs
//! root, as the server does): a provisioned rate delivered to clients that
//! ask for more, shared fairly between them; reads metered at a third; mode
//! changes at runtime; burst credits kept across a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openefs_nfs_wire::mount::*;
use openefs_nfs_wire::nfs3::ops::*;
use openefs_nfs_wire::nfs3::types::*;
use openefs_nfs_wire::nfs3::*;
use openefs_nfs_wire::nfs4::ops::*;
use openefs_nfs_wire::nfs4::types::*;
use openefs_nfs_wire::nfs4::{ArgOp, ResOp};
use openefs_nfs_wire::xdr::Opaque;
use openefs_nfsd::client::Client;
use openefs_nfsd::settings::{Settings, ThroughputMode};
use openefs_nfsd::state::SystemClock;
use openefs_nfsd::throughput::{self, GIB, INITIAL_CREDITS, IoKind};

mod common;
use common::{TestServer, rpc};

const MIB: usize = 1 << 20;

/// A new connection with a new empty file `name` to write to.
async fn writer(s: &TestServer, name: &str) -> (Client, NfsFh3) {
    let mut c = s.client().await;
    let root: MountRes = rpc(
        &mut c,
        MOUNT_PROGRAM,
        MOUNT_V3,
        MOUNTPROC3_MNT,
        &DirPath::from("/"),
    )
    .await;
    let args = Create3Args {
        where_: DirOpArgs3 {
            dir: root.expect("MNT /").fhandle,
            name: Filename3::from(name),
        },
        how: CreateHow3::Unchecked(Sattr3::default()),
    };
    let made: DirOp3Res = rpc(&mut c, NFS3_PROGRAM, NFS_V3, NFSPROC3_CREATE, &args).await;
    let fh = made.expect("CREATE").obj.expect("handle");
    (c, fh)
}

/// Writes 1 MiB after 1 MiB until `until`; the bytes whose replies came by
/// then.
async fn write_until(mut c: Client, fh: NfsFh3, until: Instant) -> usize {
    let data = Bytes::from(vec![7u8; MIB]);
    let mut done = 0;
    let mut offset = 0u64;
    while Instant::now() < until {
        let w: Write3Res = rpc(
            &mut c,
            NFS3_PROGRAM,
            NFS_V3,
            NFSPROC3_WRITE,
            &Write3Args {
                file: fh.clone(),
                offset,
                count: MIB as u32,
                stable: StableHow::Unstable,
                data: Opaque(data.clone()),
            },
        )
        .await;
        assert_eq!(w.expect("WRITE").count as usize, MIB);
        offset += MIB as u64;
        if Instant::now() <= until {
            done += MIB;
        }
    }
    done
}

/// Four clients writing as fast as they can for `secs`: MiB/s each.
async fn four_writers(s: &TestServer, secs: u64, round: &str) -> Vec<f64> {
    let mut clients = Vec::new();
    for i in 0..4 {
        clients.push(writer(s, &format!("{round}-{i}")).await);
    }
    let began = Instant::now();
    let until = began + Duration::from_secs(secs);
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(c, fh)| tokio::spawn(write_until(c, fh, until)))
        .collect();
    let mut rates = Vec::new();
    for t in tasks {
        rates.push(t.await.expect("writer") as f64 / MIB as f64 / secs as f64);
    }
    rates
}

fn with_mode(mode: ThroughputMode) -> Settings {
    Settings {
        throughput: mode,
        ..Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_20_mibps_is_delivered_and_shared_fairly() {
    let s = TestServer::start().await;
    // A runtime change from the default (elastic), as SIGHUP makes it.
    s.server
        .apply_settings(with_mode(ThroughputMode::Provisioned { mibps: 20 }))
        .unwrap();
    // The throttle bounds the rate from above, so over 8 s one request
    // more or less is the only slack: 1 MiB in 160.
    let rates = four_writers(&s, 8, "provisioned").await;
    let total: f64 = rates.iter().sum();
    if total < 18.0 {
        s.server
            .apply_settings(with_mode(ThroughputMode::Elastic))
            .unwrap();
        let unthrottled: f64 = four_writers(&s, 2, "elastic").await.iter().sum();
        panic!(
            "provisioned 20 MiB/s delivered {total:.1} MiB/s; this machine does {unthrottled:.1} MiB/s unthrottled"
        );
    }
    assert!(total <= 22.0, "{total:.2} MiB/s ({rates:?})");
    // Each of the four equally eager clients gets about a quarter.
    for r in &rates {
        assert!((3.5..=6.5).contains(r), "{rates:?}");
    }
    eprintln!("provisioned 20 MiB/s: {total:.2} MiB/s in all, per client {rates:.2?}");
    s.stop().await;
}

#[tokio::test]
async fn nfs41_reads_count_a_third_and_mode_changes_apply_at_once() {
    let s = TestServer::start().await;
    std::fs::write(s.dir.path().join("data"), vec![1u8; 2 * MIB]).unwrap();
    let mut c = s.client().await;
    c.establish(b"throughput-read").await.unwrap();
    let r = c
        .compound(vec![
            ArgOp::Putrootfh,
            ArgOp::Lookup(Utf8Str::from("data")),
            ArgOp::Getfh,
        ])
        .await
        .unwrap();
    let ResOp::Getfh(Ok(fh)) = &r[2] else {
        panic!("{r:?}")
    };
    let read = |fh: NfsFh4| {
        vec![
            ArgOp::Putfh(fh),
            ArgOp::Read(Read4Args {
                stateid: Stateid4::ANONYMOUS,
                offset: 0,
                count: MIB as u32,
            }),
        ]
    };
    s.server
        .apply_settings(with_mode(ThroughputMode::Provisioned { mibps: 1 }))
        .unwrap();
    // Seven 1 MiB reads meter 7/3 MiB: at 1 MiB/s the seventh's turn comes
    // after 2 s (fully counted it would be 6 s).
    let began = Instant::now();
    for _ in 0..7 {
        c.compound(read(fh.clone())).await.unwrap();
    }
    let took = began.elapsed();
    assert!(
        (Duration::from_millis(1950)..Duration::from_millis(3500)).contains(&took),
        "{took:?}"
    );
    s.server
        .apply_settings(with_mode(ThroughputMode::Elastic))
        .unwrap();
    let began = Instant::now();
    for _ in 0..7 {
        c.compound(read(fh.clone())).await.unwrap();
    }
    // Elastic: no waiting; the reads take what the machine takes.
    assert!(
        began.elapsed() < Duration::from_millis(1500),
        "{:?}",
        began.elapsed()
    );
    let page = s.server.metrics().encode().unwrap();
    assert!(
        page.contains(&format!(
            "openefs_nfsd_data_read_io_bytes_total {}",
            14 * MIB
        )),
        "{page}"
    );
    // The upkeep task's walk counts the 2 MiB file into the stored bytes,
    // and the gauges follow the mode (each within a second).
    s.server
        .apply_settings(with_mode(ThroughputMode::Provisioned { mibps: 3 }))
        .unwrap();
    let gauge = |page: &str, name: &str| {
        page.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = s.server.metrics().encode().unwrap();
        let stored = gauge(&page, "openefs_nfsd_storage_bytes ");
        let permitted = gauge(&page, "openefs_nfsd_permitted_throughput_bytes_per_second ");
        if stored >= (2 * MIB) as f64 && permitted == (3 * MIB) as f64 {
            break;
        }
        assert!(Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn burst_credits_survive_a_restart() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let state = tempfile::tempdir().unwrap();
    let s =
        TestServer::start_with_store(dir.clone(), state.path(), Arc::new(SystemClock::default()))
            .await;
    // A new file system.
    assert_eq!(
        s.server
            .throttle()
            .snapshot(ThroughputMode::Elastic)
            .credits,
        INITIAL_CREDITS
    );
    s.stop().await;
    assert_eq!(
        throughput::load_credits(state.path()).unwrap(),
        Some(INITIAL_CREDITS)
    );

    throughput::save_credits(state.path(), 5.0 * GIB).unwrap();
    let s =
        TestServer::start_with_store(dir.clone(), state.path(), Arc::new(SystemClock::default()))
            .await;
    assert_eq!(
        s.server
            .throttle()
            .snapshot(ThroughputMode::Elastic)
            .credits,
        5.0 * GIB
    );
    // A gigabyte at the burst rate spends 0.99 GiB (the baseline's share
    // is earned back while it goes).
    s.server
        .throttle()
        .charge(IoKind::DataWrite, 1 << 30, ThroughputMode::Bursting);
    s.stop().await;
    let left = throughput::load_credits(state.path()).unwrap().unwrap() / GIB;
    // Plus what a second or so idle at 1 MiB/s earned.
    assert!((4.0..4.02).contains(&left), "{left}");
}
