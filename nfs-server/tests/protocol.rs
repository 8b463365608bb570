//! Protocol tests over a real loopback socket against the server with the
//! real `LocalVfs` on a temporary directory (needs root, as the server does).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openefs_nfs_wire::nfs4::attr::{FATTR4_SIZE, FATTR4_TYPE};
use openefs_nfs_wire::nfs4::ops::*;
use openefs_nfs_wire::nfs4::types::*;
use openefs_nfs_wire::nfs4::*;
use openefs_nfs_wire::rpc::{AcceptedBody, AuthStat, MismatchInfo, RejectedReply, ReplyStat};
use openefs_nfs_wire::xdr::{Decoder, Opaque, XdrDecode};
use openefs_nfsd::client::{Client, ClientError};
use openefs_nfsd::performance::PerformanceMode;
use openefs_nfsd::stable::StableStore;
use openefs_nfsd::state::{ManualClock, SystemClock};
use tokio::net::TcpListener;

mod common;
use common::{TestServer, accepted};

#[tokio::test]
async fn rpc_level_errors() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let (h, _) = c
        .call(NFS4_PROGRAM, NFS_V4, NFSPROC4_NULL, &[])
        .await
        .unwrap();
    assert_eq!(accepted(&h.stat), &AcceptedBody::Success);
    // NLM is not served (NFSv3 mounts use nolock).
    let (h, _) = c.call(100021, 4, 0, &[]).await.unwrap();
    assert_eq!(accepted(&h.stat), &AcceptedBody::ProgUnavail);
    let (h, _) = c.call(NFS4_PROGRAM, 2, 0, &[]).await.unwrap();
    assert_eq!(
        accepted(&h.stat),
        &AcceptedBody::ProgMismatch(MismatchInfo { low: 3, high: 4 })
    );
    let (h, _) = c.call(NFS4_PROGRAM, NFS_V4, 7, &[]).await.unwrap();
    assert_eq!(accepted(&h.stat), &AcceptedBody::ProcUnavail);
    // A COMPOUND whose header is cut short.
    let (h, _) = c
        .call(NFS4_PROGRAM, NFS_V4, NFSPROC4_COMPOUND, &[0, 0])
        .await
        .unwrap();
    assert_eq!(accepted(&h.stat), &AcceptedBody::GarbageArgs);
    // A malformed AUTH_SYS body.
    let (xid, mut rec) = c.encode_call(NFS4_PROGRAM, NFS_V4, NFSPROC4_NULL, &[]);
    let mut raw = rec.to_vec();
    // cred: flavor AUTH_SYS (offset 24), length (28) claims 8 bytes of garbage.
    raw[28..32].copy_from_slice(&8u32.to_be_bytes());
    raw.truncate(32);
    raw.extend_from_slice(&[0xff; 8]);
    raw.extend_from_slice(&[0; 8]); // verifier AUTH_NONE
    rec = Bytes::from(raw);
    c.send_record(rec).await.unwrap();
    let reply = c.recv_record().await.unwrap().unwrap();
    let h = openefs_nfs_wire::rpc::ReplyHeader::decode(&mut Decoder::new(reply)).unwrap();
    assert_eq!(h.xid, xid);
    assert_eq!(
        h.stat,
        ReplyStat::Denied(RejectedReply::AuthError(AuthStat::BadCred))
    );
    s.stop().await;
}

#[tokio::test]
async fn minor_versions_above_one_mismatch() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    for minor in [2, 3] {
        let res = c
            .compound_raw(minor, vec![ArgOp::Putrootfh, ArgOp::Getfh])
            .await
            .unwrap();
        assert_eq!(res.status, Err(Nfs4Error::MinorVersMismatch));
        assert!(res.results.is_empty());
    }
    s.stop().await;
}

#[tokio::test]
async fn position_rules_and_illegal_ops() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let res = c.compound_raw(1, vec![ArgOp::Putrootfh]).await.unwrap();
    assert_eq!(res.status, Err(Nfs4Error::OpNotInSession));
    // An undefined op number (hand-encoded: the wire types cannot express it).
    let mut args = Client::compound_args(1, vec![]).to_vec();
    let n = args.len();
    args[n - 4..].copy_from_slice(&1u32.to_be_bytes());
    args.extend_from_slice(&9999u32.to_be_bytes());
    let (_, body) = c
        .call(NFS4_PROGRAM, NFS_V4, NFSPROC4_COMPOUND, &args)
        .await
        .unwrap();
    let res = Compound4Res::decode(&mut Decoder::new(body)).unwrap();
    assert_eq!(res.status, Err(Nfs4Error::OpIllegal));
    assert_eq!(res.results[0].opnum(), OP_ILLEGAL);

    c.establish(b"position-test").await.unwrap();
    let seq = c.sequence_op().unwrap();
    let seq2 = c.sequence_op().unwrap();
    let res = c
        .compound_raw(1, vec![seq, ArgOp::Putrootfh, seq2])
        .await
        .unwrap();
    assert_eq!(res.status, Err(Nfs4Error::SequencePos));
    s.stop().await;
}

#[tokio::test]
async fn malformed_records_close_only_that_connection() {
    let s = TestServer::start().await;
    // An absurd fragment length: the connection is closed, nothing allocated.
    let mut c = s.client().await;
    c.send_raw(&0xffff_fff0u32.to_be_bytes()).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), c.recv_record())
        .await
        .expect("server reacts");
    assert!(matches!(r, Ok(None) | Err(_)), "connection closed: {r:?}");

    // A record too short for an xid is dropped; the connection lives on.
    let mut c = s.client().await;
    c.send_raw(&[0x80, 0, 0, 2, 1, 2]).await.unwrap();
    let (h, _) = c
        .call(NFS4_PROGRAM, NFS_V4, NFSPROC4_NULL, &[])
        .await
        .unwrap();
    assert_eq!(accepted(&h.stat), &AcceptedBody::Success);

    // A truncated header followed by EOF: that connection just ends.
    let mut c = s.client().await;
    c.send_raw(&[0x80, 0]).await.unwrap();
    drop(c);

    let mut c = s.client().await;
    let (h, _) = c
        .call(NFS4_PROGRAM, NFS_V4, NFSPROC4_NULL, &[])
        .await
        .unwrap();
    assert_eq!(accepted(&h.stat), &AcceptedBody::Success);
    s.stop().await;
}

fn create_dir(name: &str) -> ArgOp {
    ArgOp::Create(Create4Args {
        objtype: CreateType4::Dir,
        objname: Utf8Str::from(name),
        createattrs: Fattr4::default(),
    })
}

#[tokio::test]
async fn replayed_slot_returns_cached_reply_without_executing() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    c.establish(b"replay-test").await.unwrap();
    let seq = c.sequence_op().unwrap();
    let args = Client::compound_args(1, vec![seq, ArgOp::Putrootfh, create_dir("once")]);
    let (_, record) = c.encode_call(NFS4_PROGRAM, NFS_V4, NFSPROC4_COMPOUND, &args);
    c.send_record(record.clone()).await.unwrap();
    let first = c.recv_record().await.unwrap().unwrap();
    c.send_record(record).await.unwrap();
    let second = c.recv_record().await.unwrap().unwrap();
    assert_eq!(first, second, "a retransmission gets the identical reply");
    let mut dec = Decoder::new(first);
    openefs_nfs_wire::rpc::ReplyHeader::decode(&mut dec).unwrap();
    let res = Compound4Res::decode(&mut dec).unwrap();
    assert_eq!(res.status, Ok(()), "{res:?}");
    assert!(s.dir.path().join("once").is_dir());

    // The next request does execute: the directory now exists.
    let err = c
        .compound(vec![ArgOp::Putrootfh, create_dir("once")])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Op {
                op: OP_CREATE,
                status: Nfs4Error::Exist
            }
        ),
        "{err}"
    );

    // A sequence id neither the current nor the next one.
    c.seqid += 5;
    let err = c.compound(vec![ArgOp::Putrootfh]).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Op {
                op: OP_SEQUENCE,
                status: Nfs4Error::SeqMisordered
            }
        ),
        "{err}"
    );
    s.stop().await;
}

fn getattr(bits: &[u32]) -> ArgOp {
    ArgOp::Getattr(Bitmap4::from_bits(bits))
}

fn attrs_of(res: &ResOp) -> FileAttrs {
    match res {
        ResOp::Getattr(Ok(f)) => FileAttrs::decode(f).unwrap(),
        other => panic!("not a GETATTR result: {other:?}"),
    }
}

#[tokio::test]
async fn session_create_write_read_readdir_round_trip() {
    round_trip(TestServer::start().await).await;
}

// On a multi-thread runtime the performance modes really differ: vfs calls
// run on the RPC's worker thread (general-purpose) or on the blocking pool
// (max-io); every operation must work either way, with the caller's identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_in_general_purpose_mode() {
    round_trip(TestServer::start_with_mode(PerformanceMode::GeneralPurpose).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_in_max_io_mode() {
    round_trip(TestServer::start_with_mode(PerformanceMode::MaxIo).await).await;
}

async fn round_trip(s: TestServer) {
    let mut c = s.client().await;
    c.establish(b"round-trip").await.unwrap();

    let mode = FileAttrs {
        mode: Some(0o640),
        ..Default::default()
    }
    .encode_requested(&Bitmap4::from_bits(&[
        openefs_nfs_wire::nfs4::attr::FATTR4_MODE,
    ]));
    let open = ArgOp::Open(Open4Args {
        seqid: 0,
        share_access: OPEN4_SHARE_ACCESS_BOTH,
        share_deny: OPEN4_SHARE_DENY_NONE,
        owner: StateOwner4 {
            clientid: c.clientid.unwrap(),
            owner: Opaque::from("owner-1"),
        },
        openhow: OpenFlag4::Create(CreateHow4::Guarded(mode)),
        claim: OpenClaim4::Null(Utf8Str::from("data.bin")),
    });
    let r = c
        .compound(vec![ArgOp::Putrootfh, open, ArgOp::Getfh])
        .await
        .unwrap();
    let ResOp::Open(Ok(opened)) = &r[1] else {
        panic!("{r:?}")
    };
    let ResOp::Getfh(Ok(fh)) = &r[2] else {
        panic!("{r:?}")
    };
    let stateid = opened.stateid;
    assert!(!opened.cinfo.atomic);
    assert_ne!(opened.cinfo.before, opened.cinfo.after, "directory changed");

    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let r = c
        .compound(vec![
            ArgOp::Putfh(fh.clone()),
            ArgOp::Write(Write4Args {
                stateid,
                offset: 0,
                stable: StableHow::FileSync,
                data: Opaque(Bytes::from(data.clone())),
            }),
            getattr(&[FATTR4_SIZE, FATTR4_TYPE]),
        ])
        .await
        .unwrap();
    let ResOp::Write(Ok(w)) = &r[1] else {
        panic!("{r:?}")
    };
    assert_eq!(w.count as usize, data.len());
    assert_eq!(w.committed, StableHow::FileSync);
    let a = attrs_of(&r[2]);
    assert_eq!(a.size, Some(data.len() as u64));
    assert_eq!(a.file_type, Some(FileType::Reg));

    let mut back = Vec::new();
    loop {
        let r = c
            .compound(vec![
                ArgOp::Putfh(fh.clone()),
                ArgOp::Read(Read4Args {
                    stateid,
                    offset: back.len() as u64,
                    count: 128 * 1024,
                }),
            ])
            .await
            .unwrap();
        let ResOp::Read(Ok(rd)) = &r[1] else {
            panic!("{r:?}")
        };
        back.extend_from_slice(rd.data.as_bytes());
        if rd.eof {
            break;
        }
        assert!(back.len() <= data.len(), "read past the end");
    }
    assert_eq!(back, data);
    assert_eq!(
        std::fs::read(s.dir.path().join("data.bin")).unwrap(),
        data,
        "the bytes are in the backing directory"
    );

    c.compound(vec![
        ArgOp::Putfh(fh.clone()),
        ArgOp::Close(Close4Args {
            seqid: 0,
            open_stateid: stateid,
        }),
    ])
    .await
    .unwrap();
    let err = c
        .compound(vec![
            ArgOp::Putfh(fh.clone()),
            ArgOp::Read(Read4Args {
                stateid,
                offset: 0,
                count: 1,
            }),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Op {
                status: Nfs4Error::BadStateid,
                ..
            }
        ),
        "{err}"
    );

    // Many entries, read in small pages: every name once, cookies advance.
    for i in 0..40 {
        c.compound(vec![ArgOp::Putrootfh, create_dir(&format!("dir-{i:02}"))])
            .await
            .unwrap();
    }
    let mut names = Vec::new();
    let mut cookie = 0;
    let mut cookieverf = [0; 8];
    for _ in 0..100 {
        let r = c
            .compound(vec![
                ArgOp::Putrootfh,
                ArgOp::Readdir(Readdir4Args {
                    cookie,
                    cookieverf,
                    dircount: 512,
                    maxcount: 1024,
                    attr_request: Bitmap4::from_bits(&[FATTR4_TYPE]),
                }),
            ])
            .await
            .unwrap();
        let ResOp::Readdir(Ok(page)) = &r[1] else {
            panic!("{r:?}")
        };
        for e in &page.entries {
            names.push(String::from_utf8(e.name.as_bytes().to_vec()).unwrap());
            let t = FileAttrs::decode(&e.attrs).unwrap().file_type;
            assert!(matches!(t, Some(FileType::Dir | FileType::Reg)));
            cookie = e.cookie;
        }
        cookieverf = page.cookieverf;
        if page.eof {
            break;
        }
    }
    names.sort();
    let mut want: Vec<String> = (0..40).map(|i| format!("dir-{i:02}")).collect();
    want.push("data.bin".into());
    want.sort();
    assert_eq!(names, want);

    // maxcount too small for a single entry.
    let err = c
        .compound(vec![
            ArgOp::Putrootfh,
            ArgOp::Readdir(Readdir4Args {
                cookie: 0,
                cookieverf: [0; 8],
                dircount: 10,
                maxcount: 20,
                attr_request: Bitmap4::new(),
            }),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Op {
                status: Nfs4Error::Toosmall,
                ..
            }
        ),
        "{err}"
    );
    s.stop().await;
}

#[tokio::test]
async fn pipelined_calls_all_get_replies() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let mut xids = Vec::new();
    for _ in 0..50 {
        let (xid, rec) = c.encode_call(NFS4_PROGRAM, NFS_V4, NFSPROC4_NULL, &[]);
        xids.push(xid);
        c.send_record(rec).await.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..50 {
        let rec = c.recv_record().await.unwrap().unwrap();
        let h = openefs_nfs_wire::rpc::ReplyHeader::decode(&mut Decoder::new(rec)).unwrap();
        got.push(h.xid);
    }
    got.sort();
    assert_eq!(got, xids);
    s.stop().await;
}

#[tokio::test]
async fn metrics_endpoint_counts_operations() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start().await;
    let mut c = s.client().await;
    c.establish(b"metrics-test").await.unwrap();
    c.compound(vec![ArgOp::Putrootfh, getattr(&[FATTR4_SIZE])])
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let http = tokio::spawn(openefs_nfsd::metrics::serve_metrics(
        listener,
        s.server.metrics().clone(),
        s.shutdown.clone(),
    ));
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    conn.read_to_string(&mut page).await.unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains(r#"openefs_nfsd_operations_total{op="GETATTR",status="NFS4_OK"} 1"#),
        "{page}"
    );
    assert!(page.contains("openefs_nfsd_connections 1"), "{page}");
    assert!(
        page.contains(r#"openefs_nfsd_operation_duration_seconds_bucket{"#),
        "{page}"
    );
    drop(c);
    s.stop().await;
    http.await.unwrap().unwrap();
}

fn open_args(c: &Client, owner: &str, access: u32, how: OpenFlag4, claim: OpenClaim4) -> ArgOp {
    ArgOp::Open(Open4Args {
        seqid: 0,
        share_access: access,
        share_deny: OPEN4_SHARE_DENY_NONE,
        owner: StateOwner4 {
            clientid: c.clientid.unwrap(),
            owner: Opaque::from(owner),
        },
        openhow: how,
        claim,
    })
}

fn op_error(r: Result<Vec<ResOp>, ClientError>) -> (u32, Nfs4Error) {
    match r {
        Err(ClientError::Op { op, status }) => (op, status),
        other => panic!("expected an operation error, got {other:?}"),
    }
}

#[tokio::test]
async fn open_rules() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    c.establish(b"open-rules").await.unwrap();
    std::fs::create_dir(s.dir.path().join("sub")).unwrap();
    std::os::unix::fs::symlink("sub", s.dir.path().join("link")).unwrap();
    std::fs::write(s.dir.path().join("f"), b"hello").unwrap();
    let null = |n: &str| OpenClaim4::Null(Utf8Str::from(n));
    let read = OPEN4_SHARE_ACCESS_READ;

    let o = open_args(&c, "o", read, OpenFlag4::NoCreate, null("sub"));
    assert_eq!(
        op_error(c.compound(vec![ArgOp::Putrootfh, o]).await),
        (OP_OPEN, Nfs4Error::Isdir)
    );
    let o = open_args(&c, "o", read, OpenFlag4::NoCreate, null("link"));
    assert_eq!(
        op_error(c.compound(vec![ArgOp::Putrootfh, o]).await),
        (OP_OPEN, Nfs4Error::Symlink)
    );
    let o = open_args(&c, "o", read, OpenFlag4::NoCreate, null("missing"));
    assert_eq!(
        op_error(c.compound(vec![ArgOp::Putrootfh, o]).await),
        (OP_OPEN, Nfs4Error::Noent)
    );
    let guarded = OpenFlag4::Create(CreateHow4::Guarded(Fattr4::default()));
    let o = open_args(&c, "o", read, guarded, null("f"));
    assert_eq!(
        op_error(c.compound(vec![ArgOp::Putrootfh, o]).await),
        (OP_OPEN, Nfs4Error::Exist)
    );
    let o = open_args(
        &c,
        "o",
        read,
        OpenFlag4::NoCreate,
        OpenClaim4::Previous(OpenDelegationType::None),
    );
    assert_eq!(
        op_error(c.compound(vec![ArgOp::Putrootfh, o]).await),
        (OP_OPEN, Nfs4Error::NoGrace)
    );

    // EXCLUSIVE4_1: a retransmission with the same verifier succeeds, another
    // verifier finds the file taken.
    let excl = |verf| {
        OpenFlag4::Create(CreateHow4::Exclusive41(CreatVerfAttr {
            verf,
            attrs: Fattr4::default(),
        }))
    };
    let o = open_args(&c, "o", OPEN4_SHARE_ACCESS_BOTH, excl([1; 8]), null("x"));
    c.compound(vec![ArgOp::Putrootfh, o]).await.unwrap();
    let o = open_args(&c, "o", OPEN4_SHARE_ACCESS_BOTH, excl([1; 8]), null("x"));
    c.compound(vec![ArgOp::Putrootfh, o]).await.unwrap();
    let o = open_args(&c, "o", OPEN4_SHARE_ACCESS_BOTH, excl([2; 8]), null("x"));
    assert_eq!(
        op_error(c.compound(vec![ArgOp::Putrootfh, o]).await),
        (OP_OPEN, Nfs4Error::Exist)
    );

    // A read-only open cannot write or truncate.
    let o = open_args(&c, "ro", read, OpenFlag4::NoCreate, null("f"));
    let r = c.compound(vec![ArgOp::Putrootfh, o]).await.unwrap();
    let ResOp::Open(Ok(opened)) = &r[1] else {
        panic!("{r:?}")
    };
    let write = ArgOp::Write(Write4Args {
        stateid: opened.stateid,
        offset: 0,
        stable: StableHow::Unstable,
        data: Opaque::from("x"),
    });
    let lookup = ArgOp::Lookup(Utf8Str::from("f"));
    assert_eq!(
        op_error(
            c.compound(vec![ArgOp::Putrootfh, lookup.clone(), write])
                .await
        ),
        (OP_WRITE, Nfs4Error::Openmode)
    );
    let truncate = ArgOp::Setattr(Setattr4Args {
        stateid: opened.stateid,
        obj_attributes: FileAttrs {
            size: Some(0),
            ..Default::default()
        }
        .encode_requested(&Bitmap4::from_bits(&[FATTR4_SIZE])),
    });
    assert_eq!(
        op_error(c.compound(vec![ArgOp::Putrootfh, lookup, truncate]).await),
        (OP_SETATTR, Nfs4Error::Openmode)
    );
    assert_eq!(std::fs::read(s.dir.path().join("f")).unwrap(), b"hello");
    s.stop().await;
}

#[tokio::test]
async fn expired_lease_frees_session_and_opens() {
    let clock = Arc::new(ManualClock::default());
    let s = TestServer::start_with_clock(clock.clone()).await;
    let mut c = s.client().await;
    c.establish(b"lease-test").await.unwrap();
    let how = OpenFlag4::Create(CreateHow4::Unchecked(Fattr4::default()));
    let o = open_args(
        &c,
        "o",
        OPEN4_SHARE_ACCESS_BOTH,
        how,
        OpenClaim4::Null(Utf8Str::from("l")),
    );
    let r = c.compound(vec![ArgOp::Putrootfh, o]).await.unwrap();
    let ResOp::Open(Ok(opened)) = &r[1] else {
        panic!("{r:?}")
    };
    let stateid = opened.stateid;

    // Renewed by SEQUENCE within the lease: still there.
    clock.advance(Duration::from_secs(80));
    c.compound(vec![ArgOp::TestStateid(vec![stateid])])
        .await
        .unwrap();
    clock.advance(Duration::from_secs(80));
    assert_eq!(s.server.state().reap_expired().clients, 0);
    let r = c
        .compound(vec![ArgOp::TestStateid(vec![stateid])])
        .await
        .unwrap();
    assert_eq!(r[0], ResOp::TestStateid(Ok(vec![Ok(())])));

    clock.advance(Duration::from_secs(91));
    assert_eq!(s.server.state().reap_expired().clients, 1);
    assert_eq!(
        op_error(c.compound(vec![ArgOp::Putrootfh]).await),
        (OP_SEQUENCE, Nfs4Error::Badsession)
    );
    // A new client incarnation does not see the old open.
    c.establish(b"lease-test").await.unwrap();
    let r = c
        .compound(vec![ArgOp::TestStateid(vec![stateid])])
        .await
        .unwrap();
    assert_eq!(
        r[0],
        ResOp::TestStateid(Ok(vec![Err(Nfs4Error::BadStateid)]))
    );
    s.stop().await;
}

fn fh_of(res: &ResOp) -> NfsFh4 {
    match res {
        ResOp::Getfh(Ok(fh)) => fh.clone(),
        other => panic!("not a GETFH result: {other:?}"),
    }
}

fn owner_attr(owner: &str) -> Fattr4 {
    FileAttrs {
        owner: Some(Utf8Str::from(owner)),
        ..Default::default()
    }
    .encode_requested(&Bitmap4::from_bits(&[
        openefs_nfs_wire::nfs4::attr::FATTR4_OWNER,
    ]))
}

#[tokio::test]
async fn directory_ops_attributes_and_stale_handles() {
    use openefs_nfs_wire::nfs4::attr::{FATTR4_NUMLINKS, FATTR4_OWNER};
    let s = TestServer::start().await;
    let root = s.dir.path();
    let mut c = s.client().await;
    c.establish(b"dir-ops").await.unwrap();
    std::fs::write(root.join("f"), b"data").unwrap();

    let r = c
        .compound(vec![ArgOp::Putrootfh, create_dir("a"), ArgOp::Getfh])
        .await
        .unwrap();
    let dir_a = fh_of(&r[2]);
    let link = ArgOp::Create(Create4Args {
        objtype: CreateType4::Link(Utf8Str::from("some/target")),
        objname: Utf8Str::from("l"),
        createattrs: Fattr4::default(),
    });
    let r = c
        .compound(vec![ArgOp::Putrootfh, link, ArgOp::Readlink])
        .await
        .unwrap();
    assert_eq!(r[2], ResOp::Readlink(Ok(Utf8Str::from("some/target"))));

    // LINK root/f as a/f2: SAVEFH holds the file, the current fh the directory.
    let r = c
        .compound(vec![
            ArgOp::Putrootfh,
            ArgOp::Lookup(Utf8Str::from("f")),
            ArgOp::Savefh,
            ArgOp::Putfh(dir_a.clone()),
            ArgOp::Link(Utf8Str::from("f2")),
            ArgOp::Restorefh,
            getattr(&[FATTR4_NUMLINKS]),
        ])
        .await
        .unwrap();
    let ResOp::Link(Ok(ci)) = &r[4] else {
        panic!("{r:?}")
    };
    assert_ne!(ci.before, ci.after);
    assert_eq!(attrs_of(&r[6]).numlinks, Some(2));

    // RENAME root/f to a/g.
    let r = c
        .compound(vec![
            ArgOp::Putrootfh,
            ArgOp::Savefh,
            ArgOp::Putfh(dir_a.clone()),
            ArgOp::Rename(Rename4Args {
                oldname: Utf8Str::from("f"),
                newname: Utf8Str::from("g"),
            }),
        ])
        .await
        .unwrap();
    let ResOp::Rename(Ok(rn)) = &r[3] else {
        panic!("{r:?}")
    };
    assert_ne!(rn.source_cinfo.before, rn.source_cinfo.after);
    assert_eq!(std::fs::read(root.join("a/g")).unwrap(), b"data");
    assert!(!root.join("f").exists());

    let rm = |name: &str| ArgOp::Remove(Utf8Str::from(name));
    assert_eq!(
        op_error(c.compound(vec![ArgOp::Putrootfh, rm("a")]).await),
        (OP_REMOVE, Nfs4Error::Notempty)
    );
    assert_eq!(
        op_error(c.compound(vec![ArgOp::Putrootfh, ArgOp::Lookupp]).await),
        (OP_LOOKUPP, Nfs4Error::Noent)
    );
    let r = c
        .compound(vec![
            ArgOp::Putfh(dir_a.clone()),
            ArgOp::Lookupp,
            ArgOp::Getfh,
        ])
        .await
        .unwrap();
    let r0 = c
        .compound(vec![ArgOp::Putrootfh, ArgOp::Getfh])
        .await
        .unwrap();
    assert_eq!(fh_of(&r[2]), fh_of(&r0[1]));

    // VERIFY / NVERIFY against the server's own encoding.
    let r = c
        .compound(vec![
            ArgOp::Putfh(dir_a.clone()),
            getattr(&[FATTR4_NUMLINKS]),
        ])
        .await
        .unwrap();
    let ResOp::Getattr(Ok(mine)) = &r[1] else {
        panic!("{r:?}")
    };
    c.compound(vec![
        ArgOp::Putfh(dir_a.clone()),
        ArgOp::Verify(mine.clone()),
    ])
    .await
    .unwrap();
    assert_eq!(
        op_error(
            c.compound(vec![
                ArgOp::Putfh(dir_a.clone()),
                ArgOp::Nverify(mine.clone())
            ])
            .await
        ),
        (OP_NVERIFY, Nfs4Error::Same)
    );

    // Owners are numeric strings.
    let set = |owner: &str| {
        ArgOp::Setattr(Setattr4Args {
            stateid: Stateid4::ANONYMOUS,
            obj_attributes: owner_attr(owner),
        })
    };
    let r = c
        .compound(vec![
            ArgOp::Putfh(dir_a.clone()),
            set("1000"),
            getattr(&[FATTR4_OWNER]),
        ])
        .await
        .unwrap();
    assert_eq!(attrs_of(&r[2]).owner, Some(Utf8Str::from("1000")));
    assert_eq!(
        op_error(
            c.compound(vec![ArgOp::Putfh(dir_a.clone()), set("bob")])
                .await
        ),
        (OP_SETATTR, Nfs4Error::Badowner)
    );

    // A non-root caller on a 0700 root-owned directory.
    std::fs::create_dir(root.join("private")).unwrap();
    std::fs::set_permissions(
        root.join("private"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    std::fs::write(root.join("private/x"), b"").unwrap();
    c.set_identity(1000, 1000, &[]);
    let look = |n: &str| ArgOp::Lookup(Utf8Str::from(n));
    assert_eq!(
        op_error(
            c.compound(vec![ArgOp::Putrootfh, look("private"), look("x")])
                .await
        ),
        (OP_LOOKUP, Nfs4Error::Access)
    );
    c.set_identity(0, 0, &[]);

    // A handle whose object is gone is STALE.
    let r = c
        .compound(vec![ArgOp::Putfh(dir_a.clone()), look("g"), ArgOp::Getfh])
        .await
        .unwrap();
    let g = fh_of(&r[2]);
    std::fs::remove_file(root.join("a/g")).unwrap();
    std::fs::remove_file(root.join("a/f2")).unwrap();
    assert_eq!(
        op_error(
            c.compound(vec![ArgOp::Putfh(g), getattr(&[FATTR4_SIZE])])
                .await
        ),
        (OP_GETATTR, Nfs4Error::Stale)
    );
    s.stop().await;
}

/// OPEN (creating) `name` for reading and writing as `owner`; returns the
/// file handle and the open stateid.
async fn open_rw(c: &mut Client, owner: &str, name: &str) -> (NfsFh4, Stateid4) {
    let how = OpenFlag4::Create(CreateHow4::Unchecked(Fattr4::default()));
    let claim = OpenClaim4::Null(Utf8Str::from(name));
    let o = open_args(c, owner, OPEN4_SHARE_ACCESS_BOTH, how, claim);
    let r = c
        .compound(vec![ArgOp::Putrootfh, o, ArgOp::Getfh])
        .await
        .unwrap();
    let ResOp::Open(Ok(opened)) = &r[1] else {
        panic!("{r:?}")
    };
    (fh_of(&r[2]), opened.stateid)
}

fn lock_args(write: bool, offset: u64, length: u64, locker: Locker4) -> ArgOp {
    ArgOp::Lock(Lock4Args {
        locktype: if write {
            LockType::WriteW
        } else {
            LockType::Read
        },
        reclaim: false,
        offset,
        length,
        locker,
    })
}

fn new_locker(clientid: ClientId4, open: Stateid4, owner: &str) -> Locker4 {
    Locker4::New(OpenToLockOwner4 {
        open_seqid: 0,
        open_stateid: open,
        lock_seqid: 0,
        lock_owner: StateOwner4 {
            clientid,
            owner: Opaque::from(owner),
        },
    })
}

/// SEQUENCE, PUTFH `fh`, `op`: the result of `op`, whatever its status.
async fn on_file(c: &mut Client, fh: &NfsFh4, op: ArgOp) -> ResOp {
    let seq = c.sequence_op().unwrap();
    let mut res = c
        .compound_raw(1, vec![seq, ArgOp::Putfh(fh.clone()), op])
        .await
        .unwrap();
    assert_eq!(res.results.len(), 3, "{res:?}");
    res.results.pop().unwrap()
}

#[tokio::test]
async fn byte_range_locks_between_two_clients() {
    let s = TestServer::start().await;
    let mut a = s.client().await;
    a.establish(b"lock-client-a").await.unwrap();
    let mut b = s.client().await;
    b.establish(b"lock-client-b").await.unwrap();
    let (ida, idb) = (a.clientid.unwrap(), b.clientid.unwrap());
    let (fh, open_a) = open_rw(&mut a, "oa", "shared").await;
    let (_, open_b) = open_rw(&mut b, "ob", "shared").await;

    // A takes a write lock on the whole file.
    let r = on_file(
        &mut a,
        &fh,
        lock_args(true, 0, u64::MAX, new_locker(ida, open_a, "la")),
    )
    .await;
    let ResOp::Lock(Lock4Res::Ok(lock_a)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(lock_a.seqid, 1);

    // B is refused, and told whose lock is in the way.
    let a_lock = Lock4Denied {
        offset: 0,
        length: u64::MAX,
        locktype: LockType::Write,
        owner: StateOwner4 {
            clientid: ida,
            owner: Opaque::from("la"),
        },
    };
    let r = on_file(
        &mut b,
        &fh,
        lock_args(false, 100, 10, new_locker(idb, open_b, "lb")),
    )
    .await;
    assert_eq!(r, ResOp::Lock(Lock4Res::Denied(a_lock.clone())));
    let lockt = |owner: &str, clientid| {
        ArgOp::Lockt(Lockt4Args {
            locktype: LockType::Read,
            offset: 4096,
            length: 1,
            owner: StateOwner4 {
                clientid,
                owner: Opaque::from(owner),
            },
        })
    };
    let r = on_file(&mut b, &fh, lockt("lb", idb)).await;
    assert_eq!(r, ResOp::Lockt(Lockt4Res::Denied(a_lock)));
    // A's own owner does not conflict with itself.
    let r = on_file(&mut a, &fh, lockt("la", ida)).await;
    assert_eq!(r, ResOp::Lockt(Lockt4Res::Ok));

    // A writes with its lock stateid (as the Linux client does).
    let write = ArgOp::Write(Write4Args {
        stateid: lock_a,
        offset: 0,
        stable: StableHow::FileSync,
        data: Opaque::from("locked"),
    });
    let r = on_file(&mut a, &fh, write).await;
    assert!(r.status().is_ok(), "{r:?}");

    // Argument and stateid errors.
    let r = on_file(
        &mut a,
        &fh,
        lock_args(
            true,
            0,
            0,
            Locker4::Exist(ExistLockOwner4 {
                lock_stateid: lock_a,
                lock_seqid: 0,
            }),
        ),
    )
    .await;
    assert_eq!(r, ResOp::Lock(Lock4Res::Err(Nfs4Error::Inval)));
    let mut reclaim = lock_args(true, 0, 1, new_locker(ida, open_a, "la"));
    if let ArgOp::Lock(l) = &mut reclaim {
        l.reclaim = true;
    }
    let r = on_file(&mut a, &fh, reclaim).await;
    assert_eq!(r, ResOp::Lock(Lock4Res::Err(Nfs4Error::NoGrace)));
    let r = on_file(
        &mut b,
        &fh,
        lock_args(
            false,
            0,
            1,
            Locker4::Exist(ExistLockOwner4 {
                lock_stateid: lock_a,
                lock_seqid: 0,
            }),
        ),
    )
    .await;
    assert_eq!(r, ResOp::Lock(Lock4Res::Err(Nfs4Error::BadStateid)));
    let release = ArgOp::ReleaseLockowner(StateOwner4 {
        clientid: ida,
        owner: Opaque::from("la"),
    });
    let r = on_file(&mut a, &fh, release).await;
    assert_eq!(r.status(), Err(Nfs4Error::Notsupp));

    // A unlocks; a stale seqid is refused, the current one works.
    let unlock = |stateid| {
        ArgOp::Locku(Locku4Args {
            locktype: LockType::Write,
            seqid: 0,
            lock_stateid: stateid,
            offset: 0,
            length: u64::MAX,
        })
    };
    let r = on_file(&mut a, &fh, unlock(lock_a)).await;
    let ResOp::Locku(Ok(unlocked)) = r else {
        panic!("{r:?}")
    };
    assert_eq!((unlocked.other, unlocked.seqid), (lock_a.other, 2));
    let r = on_file(&mut a, &fh, unlock(lock_a)).await;
    assert_eq!(r, ResOp::Locku(Err(Nfs4Error::OldStateid)));

    // Now B gets its lock, and A is the one refused.
    let r = on_file(
        &mut b,
        &fh,
        lock_args(false, 100, 10, new_locker(idb, open_b, "lb")),
    )
    .await;
    assert!(matches!(r, ResOp::Lock(Lock4Res::Ok(_))), "{r:?}");
    let r = on_file(
        &mut a,
        &fh,
        lock_args(
            true,
            105,
            1,
            Locker4::Exist(ExistLockOwner4 {
                lock_stateid: unlocked,
                lock_seqid: 0,
            }),
        ),
    )
    .await;
    let ResOp::Lock(Lock4Res::Denied(d)) = r else {
        panic!("{r:?}")
    };
    assert_eq!((d.offset, d.length, d.locktype), (100, 10, LockType::Read));
    assert_eq!(d.owner.clientid, idb);

    // A's lock stateid holds no lock any more: FREE_STATEID lets it go.
    let r = a
        .compound(vec![ArgOp::FreeStateid(unlocked)])
        .await
        .unwrap();
    assert_eq!(r[0], ResOp::FreeStateid(Ok(())));
    let r = a
        .compound(vec![ArgOp::TestStateid(vec![unlocked])])
        .await
        .unwrap();
    assert_eq!(
        r[0],
        ResOp::TestStateid(Ok(vec![Err(Nfs4Error::BadStateid)]))
    );

    // LOCKT on a directory is refused by type.
    let r = a.compound(vec![ArgOp::Putrootfh, lockt("la", ida)]).await;
    assert_eq!(op_error(r), (OP_LOCKT, Nfs4Error::Isdir));
    s.stop().await;
}

/// EXCHANGE_ID alone, for the server owner and scope it answers with.
async fn server_identity(c: &mut Client) -> (Vec<u8>, Vec<u8>) {
    let res = c
        .compound_raw(
            1,
            vec![ArgOp::ExchangeId(ExchangeId4Args {
                clientowner: ClientOwner4 {
                    verifier: [1; 8],
                    ownerid: Opaque::from("identity-probe"),
                },
                flags: 0,
                state_protect: StateProtect4A::None,
                client_impl_id: None,
            })],
        )
        .await
        .unwrap();
    let Some(ResOp::ExchangeId(Ok(ex))) = res.results.first() else {
        panic!("{res:?}")
    };
    (
        ex.server_owner.major_id.as_bytes().to_vec(),
        ex.server_scope.as_bytes().to_vec(),
    )
}

fn reclaim_lock(open: Stateid4, clientid: ClientId4, owner: &str) -> ArgOp {
    let mut lock = lock_args(true, 0, u64::MAX, new_locker(clientid, open, owner));
    if let ArgOp::Lock(l) = &mut lock {
        l.reclaim = true;
    }
    lock
}

/// OPEN with CLAIM_PREVIOUS of the current filehandle, as a client
/// reclaiming after a server restart.
fn reclaim_open(c: &Client, owner: &str) -> ArgOp {
    open_args(
        c,
        owner,
        OPEN4_SHARE_ACCESS_BOTH,
        OpenFlag4::NoCreate,
        OpenClaim4::Previous(OpenDelegationType::None),
    )
}

#[tokio::test]
async fn restart_grace_and_reclaim() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let state = tempfile::tempdir().unwrap();
    let s1 =
        TestServer::start_with_store(dir.clone(), state.path(), Arc::new(SystemClock::default()))
            .await;
    assert!(!s1.server.state().in_grace(), "a first start has no grace");
    let mut a = s1.client().await;
    a.establish(b"reclaimer").await.unwrap();
    let ida = a.clientid.unwrap();
    let (fh, open_a) = open_rw(&mut a, "oa", "f").await;
    let r = on_file(
        &mut a,
        &fh,
        lock_args(true, 0, u64::MAX, new_locker(ida, open_a, "la")),
    )
    .await;
    assert!(matches!(r, ResOp::Lock(Lock4Res::Ok(_))), "{r:?}");
    let identity = server_identity(&mut s1.client().await).await;
    let verifier = s1.server.write_verifier();
    // Stopping drops all in-memory state, as a crash would; the record of
    // the client was on disk before its OPEN returned.
    s1.stop().await;

    let clock = Arc::new(ManualClock::default());
    let s2 = TestServer::start_with_store(dir.clone(), state.path(), clock.clone()).await;
    assert_eq!(server_identity(&mut s2.client().await).await, identity);
    assert_ne!(s2.server.write_verifier(), verifier);
    assert!(s2.server.state().in_grace());
    assert!(
        s2.server
            .metrics()
            .encode()
            .unwrap()
            .contains("openefs_nfsd_grace_active 1")
    );

    // A client the previous instance did not know: no new state, no
    // reclaims, no removal of a file whose open may be reclaimed.
    let mut b = s2.client().await;
    b.establish(b"newcomer").await.unwrap();
    let idb = b.clientid.unwrap();
    let how = OpenFlag4::Create(CreateHow4::Unchecked(Fattr4::default()));
    let o = open_args(
        &b,
        "ob",
        OPEN4_SHARE_ACCESS_BOTH,
        how,
        OpenClaim4::Null(Utf8Str::from("g")),
    );
    assert_eq!(
        op_error(b.compound(vec![ArgOp::Putrootfh, o]).await),
        (OP_OPEN, Nfs4Error::Grace)
    );
    let reclaim = reclaim_open(&b, "ob");
    let r = on_file(&mut b, &fh, reclaim).await;
    assert_eq!(r.status(), Err(Nfs4Error::NoGrace));
    assert_eq!(
        op_error(
            b.compound(vec![ArgOp::Putrootfh, ArgOp::Remove(Utf8Str::from("f"))])
                .await
        ),
        (OP_REMOVE, Nfs4Error::Grace)
    );
    let anonymous_write = ArgOp::Write(Write4Args {
        stateid: Stateid4::ANONYMOUS,
        offset: 0,
        stable: StableHow::FileSync,
        data: Opaque::from("x"),
    });
    let r = on_file(&mut b, &fh, anonymous_write).await;
    assert_eq!(r.status(), Err(Nfs4Error::Grace));
    let lockt = ArgOp::Lockt(Lockt4Args {
        locktype: LockType::Read,
        offset: 0,
        length: 1,
        owner: StateOwner4 {
            clientid: idb,
            owner: Opaque::from("lb"),
        },
    });
    let r = on_file(&mut b, &fh, lockt.clone()).await;
    assert_eq!(r, ResOp::Lockt(Lockt4Res::Err(Nfs4Error::Grace)));

    // The old client comes back and reclaims its open and its lock.
    let mut a = s2.client().await;
    a.establish_for_reclaim(b"reclaimer").await.unwrap();
    let ida = a.clientid.unwrap();
    let reclaim = reclaim_open(&a, "oa");
    let r = on_file(&mut a, &fh, reclaim).await;
    let ResOp::Open(Ok(reopened)) = r else {
        panic!("{r:?}")
    };
    let r = on_file(&mut a, &fh, reclaim_lock(reopened.stateid, ida, "la")).await;
    let ResOp::Lock(Lock4Res::Ok(lock_a)) = r else {
        panic!("{r:?}")
    };
    // Not a reclaim: refused while in grace.
    let more = lock_args(
        true,
        0,
        1,
        Locker4::Exist(ExistLockOwner4 {
            lock_stateid: lock_a,
            lock_seqid: 0,
        }),
    );
    let r = on_file(&mut a, &fh, more).await;
    assert_eq!(r, ResOp::Lock(Lock4Res::Err(Nfs4Error::Grace)));

    // Its RECLAIM_COMPLETE ends grace at once: it was the only one.
    clock.advance(Duration::from_secs(3));
    a.compound(vec![ArgOp::ReclaimComplete(false)])
        .await
        .unwrap();
    assert!(!s2.server.state().in_grace());
    let page = s2.server.metrics().encode().unwrap();
    assert!(page.contains("openefs_nfsd_grace_active 0"), "{page}");
    assert!(
        page.contains(r#"openefs_nfsd_reclaims_total{kind="open"} 1"#),
        "{page}"
    );
    assert!(
        page.contains(r#"openefs_nfsd_reclaims_total{kind="lock"} 1"#),
        "{page}"
    );
    let r = on_file(&mut a, &fh, reclaim_lock(reopened.stateid, ida, "la2")).await;
    assert_eq!(r, ResOp::Lock(Lock4Res::Err(Nfs4Error::NoGrace)));

    // The reclaimed lock excludes the other client.
    let o = open_args(
        &b,
        "ob",
        OPEN4_SHARE_ACCESS_BOTH,
        OpenFlag4::NoCreate,
        OpenClaim4::Null(Utf8Str::from("f")),
    );
    let r = b.compound(vec![ArgOp::Putrootfh, o]).await.unwrap();
    let ResOp::Open(Ok(open_b)) = &r[1] else {
        panic!("{r:?}")
    };
    let r = on_file(
        &mut b,
        &fh,
        lock_args(false, 100, 1, new_locker(idb, open_b.stateid, "lb")),
    )
    .await;
    let ResOp::Lock(Lock4Res::Denied(d)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(d.owner.clientid, ida);
    s2.stop().await;

    // The reclaimer holds state, so it is still recorded: the next start
    // has a grace period again, which runs out in time when it stays away,
    // and then forgets it.
    let clock = Arc::new(ManualClock::default());
    let s3 = TestServer::start_with_store(dir.clone(), state.path(), clock.clone()).await;
    assert!(s3.server.state().in_grace());
    clock.advance(Duration::from_secs(89));
    assert!(s3.server.state().in_grace());
    clock.advance(Duration::from_secs(1));
    assert!(!s3.server.state().in_grace());
    s3.server.end_grace_if_over().await;
    s3.stop().await;
    let s4 = TestServer::start_with_store(dir, state.path(), clock).await;
    assert!(!s4.server.state().in_grace());
    s4.stop().await;
}

#[tokio::test]
async fn destroyed_client_is_forgotten() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let state = tempfile::tempdir().unwrap();
    let clock = Arc::new(SystemClock::default());
    let s1 = TestServer::start_with_store(dir.clone(), state.path(), clock.clone()).await;
    let mut a = s1.client().await;
    a.establish(b"leaves-cleanly").await.unwrap();
    open_rw(&mut a, "oa", "f").await;
    assert_eq!(
        StableStore::open(state.path()).unwrap().previous_clients(),
        &[b"leaves-cleanly".to_vec()]
    );
    // An unmount: the session goes, then the client.
    let session = a.session.unwrap();
    let clientid = a.clientid.unwrap();
    let r = a
        .compound_raw(1, vec![ArgOp::DestroySession(session)])
        .await
        .unwrap();
    assert_eq!(r.status, Ok(()));
    let r = a
        .compound_raw(1, vec![ArgOp::DestroyClientid(clientid)])
        .await
        .unwrap();
    assert_eq!(r.status, Ok(()));
    assert!(
        StableStore::open(state.path())
            .unwrap()
            .previous_clients()
            .is_empty()
    );
    s1.stop().await;
    let s2 = TestServer::start_with_store(dir, state.path(), clock).await;
    assert!(!s2.server.state().in_grace(), "nothing to reclaim");
    s2.stop().await;
}

async fn on_root(c: &mut Client, op: ArgOp) -> Result<Vec<ResOp>, ClientError> {
    c.compound(vec![ArgOp::Putrootfh, op]).await
}

/// The read-only policy and root squashing, switched while clients are
/// connected: the next COMPOUND follows the new settings.
#[tokio::test]
async fn policy_changes_apply_to_the_next_compound() {
    use openefs_nfs_wire::nfs4::attr::FATTR4_OWNER;
    let s = TestServer::start().await;
    let mut c = s.client().await;
    c.establish(b"policy").await.unwrap();
    let (fh, stateid) = open_rw(&mut c, "o", "f").await;
    let write = |data: &'static [u8]| {
        ArgOp::Write(Write4Args {
            stateid,
            offset: 0,
            stable: StableHow::FileSync,
            data: Opaque(Bytes::from_static(data)),
        })
    };
    assert!(matches!(
        on_file(&mut c, &fh, write(b"one")).await,
        ResOp::Write(Ok(_))
    ));

    let mut settings = (*s.server.settings()).clone();
    settings.policy.read_only = true;
    s.server.apply_settings(settings.clone()).unwrap();
    // Writes through an open made before the change are refused too.
    assert_eq!(
        on_file(&mut c, &fh, write(b"two")).await,
        ResOp::error(OP_WRITE, Nfs4Error::Rofs)
    );
    assert_eq!(
        op_error(on_root(&mut c, create_dir("d")).await),
        (OP_CREATE, Nfs4Error::Rofs)
    );
    assert_eq!(
        op_error(on_root(&mut c, ArgOp::Remove(Utf8Str::from("f"))).await),
        (OP_REMOVE, Nfs4Error::Rofs)
    );
    let null = || OpenClaim4::Null(Utf8Str::from("f"));
    let o = open_args(
        &c,
        "o2",
        OPEN4_SHARE_ACCESS_BOTH,
        OpenFlag4::NoCreate,
        null(),
    );
    assert_eq!(
        op_error(on_root(&mut c, o).await),
        (OP_OPEN, Nfs4Error::Rofs)
    );
    let o = open_args(
        &c,
        "o2",
        OPEN4_SHARE_ACCESS_READ,
        OpenFlag4::NoCreate,
        null(),
    );
    let r = on_root(&mut c, o).await.unwrap();
    assert!(matches!(r[1], ResOp::Open(Ok(_))), "{r:?}");
    let all = ACCESS4_READ | ACCESS4_MODIFY | ACCESS4_EXTEND | ACCESS4_DELETE;
    let ResOp::Access(Ok(a)) =
        on_file(&mut c, &fh, ArgOp::Access(Access4Args { access: all })).await
    else {
        panic!("ACCESS failed")
    };
    assert_eq!((a.supported, a.access), (all, ACCESS4_READ));
    assert_eq!(std::fs::read(s.dir.path().join("f")).unwrap(), b"one");

    // Root squashing: root's new files belong to the anonymous ids, which
    // may only create where anyone may.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    settings.policy.read_only = false;
    settings.policy.root_squash = true;
    s.server.apply_settings(settings).unwrap();
    assert!(matches!(
        on_file(&mut c, &fh, write(b"two")).await,
        ResOp::Write(Ok(_))
    ));
    assert_eq!(
        op_error(on_root(&mut c, create_dir("denied")).await),
        (OP_CREATE, Nfs4Error::Access)
    );
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = c
        .compound(vec![
            ArgOp::Putrootfh,
            create_dir("squashed"),
            getattr(&[FATTR4_OWNER]),
        ])
        .await
        .unwrap();
    assert_eq!(attrs_of(&r[2]).owner, Some(Utf8Str::from("65534")));
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(s.dir.path().join("squashed")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    s.stop().await;
}
