//! Requests laid out by hand from the RFC XDR (not by this crate's
//! encoder), in the shapes the Linux 6.1 client sends, decoded and checked
//! field by field; then re-encoded to the same bytes.

mod common;

use bytes::BytesMut;
use common::wire::Wire;
use openefs_nfs_wire::nfs4::ops::*;
use openefs_nfs_wire::nfs4::types::*;
use openefs_nfs_wire::nfs4::*;
use openefs_nfs_wire::rpc::*;
use openefs_nfs_wire::xdr::{self, Decoder, XdrDecode};

const SESSION: [u8; 16] = *b"0123456789abcdef";

fn rpc_call(body: Wire) -> Wire {
    let auth_sys_body = Wire::default()
        .u32(0) // stamp
        .opaque(b"guest") // machinename
        .u32(0) // uid
        .u32(0) // gid
        .u32(0) // gids<16>
        .bytes();
    let mut w = Wire::default()
        .u32(0x6a3f_0001) // xid
        .u32(0) // CALL
        .u32(2) // rpcvers
        .u32(100003)
        .u32(4)
        .u32(1) // COMPOUND
        .u32(1)
        .opaque(&auth_sys_body)
        .u32(0)
        .u32(0);
    w.0.extend_from_slice(&body.0);
    w
}

#[test]
fn linux_exchange_id() {
    let body = Wire::default()
        .opaque(b"") // tag
        .u32(1) // minorversion
        .u32(1) // one op
        .u32(42) // OP_EXCHANGE_ID
        .fixed(&[0x65, 0x4e, 0x1a, 0x2b, 0, 0, 0, 1]) // co_verifier
        .opaque(b"Linux NFSv4.1 guest")
        .u32(0x0000_0101) // SUPP_MOVED_REFER | BIND_PRINC_STATEID
        .u32(0) // SP4_NONE
        .u32(1) // eia_client_impl_id<1>
        .opaque(b"kernel.org")
        .opaque(b"Linux 6.1.0-21-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.90-1 x86_64")
        .u64(0)
        .u32(0);
    let wire = rpc_call(body).bytes();
    let mut dec = Decoder::new(wire.clone());
    let call = CallHeader::decode(&mut dec).unwrap();
    assert_eq!(
        (call.xid, call.prog, call.vers, call.proc_),
        (0x6a3f_0001, NFS4_PROGRAM, 4, 1)
    );
    let Ok(Credential::Sys(sys)) = Credential::parse(&call.cred) else {
        panic!("AUTH_SYS expected")
    };
    assert_eq!(
        (sys.uid, sys.gid, sys.machinename.as_str()),
        (0, 0, Ok("guest"))
    );
    let header_len = wire.len() - dec.remaining();
    let args = Compound4Args::decode(&mut dec).unwrap();
    assert!(dec.is_empty());
    assert_eq!(
        (args.tag.len(), args.minorversion, args.error.clone()),
        (0, 1, None)
    );
    let [ArgOp::ExchangeId(ex)] = &args.ops[..] else {
        panic!("{:?}", args.ops)
    };
    assert_eq!(ex.clientowner.ownerid.as_str(), Ok("Linux NFSv4.1 guest"));
    assert_eq!(
        ex.clientowner.verifier,
        [0x65, 0x4e, 0x1a, 0x2b, 0, 0, 0, 1]
    );
    assert_eq!(
        ex.flags,
        EXCHGID4_FLAG_SUPP_MOVED_REFER | EXCHGID4_FLAG_BIND_PRINC_STATEID
    );
    assert_eq!(ex.state_protect, StateProtect4A::None);
    let id = ex.client_impl_id.as_ref().expect("impl id");
    assert_eq!(id.domain.as_str(), Ok("kernel.org"));
    assert!(id.name.as_str().unwrap().starts_with("Linux 6.1.0"));
    assert_eq!(xdr::to_bytes(&args), wire.slice(header_len..));
}

#[test]
fn linux_create_session() {
    let chan = |w: Wire, maxreq, maxresp, cached, ops, reqs| {
        w.u32(0)
            .u32(maxreq)
            .u32(maxresp)
            .u32(cached)
            .u32(ops)
            .u32(reqs)
            .u32(0)
    };
    let mut body = Wire::default()
        .opaque(b"")
        .u32(1)
        .u32(1)
        .u32(43) // OP_CREATE_SESSION
        .u64(0x6650_5a2b_0000_0001) // clientid
        .u32(1) // sequence
        .u32(3); // PERSIST | CONN_BACK_CHAN
    body = chan(body, 1_049_620, 1_049_480, 3_428, 8, 64);
    body = chan(body, 4_096, 4_096, 0, 2, 16);
    body = body
        .u32(0x4000_0000) // cb_program
        .u32(1) // one callback_sec_parms4
        .u32(1) // AUTH_SYS
        .u32(0)
        .opaque(b"guest")
        .u32(0)
        .u32(0)
        .u32(0);
    let wire = body.bytes();
    let args = Compound4Args::decode(&mut Decoder::new(wire.clone())).unwrap();
    let [ArgOp::CreateSession(cs)] = &args.ops[..] else {
        panic!("{:?}", args.ops)
    };
    assert_eq!(cs.clientid, 0x6650_5a2b_0000_0001);
    assert_eq!(
        cs.flags,
        CREATE_SESSION4_FLAG_PERSIST | CREATE_SESSION4_FLAG_CONN_BACK_CHAN
    );
    assert_eq!(cs.fore_chan_attrs.maxrequestsize, 1_049_620);
    assert_eq!(cs.fore_chan_attrs.maxresponsesize_cached, 3_428);
    assert_eq!(cs.fore_chan_attrs.maxrequests, 64);
    assert_eq!(cs.back_chan_attrs.maxoperations, 2);
    assert_eq!(cs.back_chan_attrs.rdma_ird, None);
    assert_eq!(cs.cb_program, 0x4000_0000);
    let [CallbackSecParms4::Sys(sys)] = &cs.sec_parms[..] else {
        panic!("{:?}", cs.sec_parms)
    };
    assert_eq!(sys.machinename.as_str(), Ok("guest"));
    assert_eq!(xdr::to_bytes(&args), wire);
}

#[test]
fn linux_sequence_putrootfh_getfh_getattr() {
    let wire = Wire::default()
        .opaque(b"")
        .u32(1)
        .u32(4)
        .u32(53) // SEQUENCE
        .fixed(&SESSION)
        .u32(1) // sequenceid
        .u32(0) // slotid
        .u32(0) // highest_slotid
        .u32(0) // cachethis
        .u32(24) // PUTROOTFH
        .u32(10) // GETFH
        .u32(9) // GETATTR
        .u32(2) // bitmap words
        .u32(0x0010_011a) // type, change, size, fsid, fileid
        .u32(0x00b0_a23a) // mode, numlinks, owner, owner_group, rawdev, space_used, times, mounted_on_fileid
        .bytes();
    let args = Compound4Args::decode(&mut Decoder::new(wire.clone())).unwrap();
    let [
        ArgOp::Sequence(seq),
        ArgOp::Putrootfh,
        ArgOp::Getfh,
        ArgOp::Getattr(bm),
    ] = &args.ops[..]
    else {
        panic!("{:?}", args.ops)
    };
    assert_eq!(seq.sessionid, SESSION);
    assert!(!seq.cachethis);
    for attr in [1, 3, 4, 8, 20, 33, 35, 36, 37, 45, 47, 52, 53, 55] {
        assert!(bm.contains(attr), "attribute {attr}");
    }
    assert_eq!(xdr::to_bytes(&args), wire);
}

#[test]
fn linux_open_create_exclusive41() {
    let wire = Wire::default()
        .opaque(b"")
        .u32(1)
        .u32(1)
        .u32(18) // OPEN
        .u32(0) // seqid
        .u32(0x0000_0002 | 0x0000_0400) // ACCESS_WRITE | WANT_NO_DELEG
        .u32(0) // DENY_NONE
        .u64(0x6650_5a2b_0000_0001)
        .opaque(b"open id:\x00\x00\x00\x26\x00\x00\x00\x00\x00\x00\x01\x5c")
        .u32(1) // OPEN4_CREATE
        .u32(3) // EXCLUSIVE4_1
        .fixed(&[1, 2, 3, 4, 5, 6, 7, 8])
        .u32(2) // attrmask words
        .u32(0)
        .u32(1 << 1) // mode (33)
        .opaque(&0o644u32.to_be_bytes())
        .u32(0) // CLAIM_NULL
        .opaque(b"newfile")
        .bytes();
    let args = Compound4Args::decode(&mut Decoder::new(wire.clone())).unwrap();
    let [ArgOp::Open(open)] = &args.ops[..] else {
        panic!("{:?}", args.ops)
    };
    assert_eq!(
        open.share_access & OPEN4_SHARE_ACCESS_BOTH,
        OPEN4_SHARE_ACCESS_WRITE
    );
    assert_eq!(
        open.share_access & OPEN4_SHARE_ACCESS_WANT_DELEG_MASK,
        OPEN4_SHARE_ACCESS_WANT_NO_DELEG
    );
    let OpenFlag4::Create(CreateHow4::Exclusive41(cva)) = &open.openhow else {
        panic!("{:?}", open.openhow)
    };
    assert_eq!(cva.verf, [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(FileAttrs::decode(&cva.attrs).unwrap().mode, Some(0o644));
    assert_eq!(open.claim, OpenClaim4::Null(Utf8Str::from("newfile")));
    assert_eq!(xdr::to_bytes(&args), wire);
}

#[test]
fn write_request_in_a_record() {
    let payload: Vec<u8> = (0..4099u32).map(|i| (i * 7) as u8).collect();
    let body = Wire::default()
        .opaque(b"")
        .u32(1)
        .u32(2)
        .u32(22) // PUTFH
        .opaque(&[0xab; 28])
        .u32(38) // WRITE
        .u32(1)
        .fixed(&[0xcd; 12])
        .u64(1 << 32)
        .u32(2) // FILE_SYNC4
        .opaque(&payload);
    let record = rpc_call(body).bytes();
    // Two fragments on the wire.
    let mut stream = BytesMut::new();
    stream.extend_from_slice(&fragment_header(100, false));
    stream.extend_from_slice(&record[..100]);
    stream.extend_from_slice(&fragment_header(record.len() - 100, true));
    stream.extend_from_slice(&record[100..]);
    let got = RecordDecoder::new(2 << 20)
        .decode(&mut stream)
        .unwrap()
        .expect("record");
    assert_eq!(got, record);
    let mut dec = Decoder::new(got);
    CallHeader::decode(&mut dec).unwrap();
    let args = Compound4Args::decode(&mut dec).unwrap();
    let [ArgOp::Putfh(fh), ArgOp::Write(w)] = &args.ops[..] else {
        panic!("{:?}", args.ops)
    };
    assert_eq!(fh.as_bytes(), &[0xab; 28]);
    assert_eq!(
        (w.stateid.seqid, w.offset, w.stable),
        (1, 1 << 32, StableHow::FileSync)
    );
    assert_eq!(w.data.as_bytes(), &payload[..]);
}

/// NFSv4.0's own operations and the owner seqids inside OPEN_CONFIRM,
/// CLOSE, LOCK, LOCKU and OPEN_DOWNGRADE (RFC 7531), one COMPOUND of
/// minor version 0 laid out by hand.
#[test]
fn v40_client_and_owner_seqid_ops() {
    let stateid = |w: Wire, seqid: u32, fill: u8| w.u32(seqid).fixed(&[fill; 12]);
    let w = Wire::default()
        .opaque(b"")
        .u32(0) // minorversion
        .u32(9)
        .u32(35) // SETCLIENTID
        .fixed(&[0, 0, 0, 0, 0x65, 0x4e, 0x1a, 0x2b]) // verifier
        .opaque(b"Linux NFSv4.0 10.0.2.15/10.0.2.100 tcp")
        .u32(0x4000_0000) // cb_program
        .opaque(b"tcp")
        .opaque(b"10.0.2.15.141.205")
        .u32(1) // callback_ident
        .u32(36) // SETCLIENTID_CONFIRM
        .u64(0x6650_5a2b_0000_0001)
        .fixed(&[9; 8])
        .u32(30) // RENEW
        .u64(0x6650_5a2b_0000_0001)
        .u32(20); // OPEN_CONFIRM
    let w = stateid(w, 1, 0xa1).u32(2); // open_stateid, seqid
    let w = stateid(w.u32(4).u32(3), 2, 0xa1); // CLOSE seqid 3
    let w = w
        .u32(12) // LOCK
        .u32(2) // WRITE_LT
        .u32(0) // reclaim
        .u64(0)
        .u64(u64::MAX)
        .u32(1) // new_lock_owner
        .u32(4); // open_seqid
    let w = stateid(w, 2, 0xa1)
        .u32(0) // lock_seqid
        .u64(0x6650_5a2b_0000_0001)
        .opaque(b"lock id:\x00\x00\x00\x01")
        .u32(14) // LOCKU
        .u32(2)
        .u32(1); // seqid
    let w = stateid(w, 1, 0xb2).u64(0).u64(u64::MAX).u32(21); // OPEN_DOWNGRADE
    let w = stateid(w, 2, 0xa1)
        .u32(5) // seqid
        .u32(1) // ACCESS_READ
        .u32(0)
        .u32(39) // RELEASE_LOCKOWNER
        .u64(0x6650_5a2b_0000_0001)
        .opaque(b"lock id:\x00\x00\x00\x01");
    let wire = w.bytes();
    let args = Compound4Args::decode(&mut Decoder::new(wire.clone())).unwrap();
    assert_eq!((args.minorversion, args.error.clone()), (0, None));
    let [
        ArgOp::Setclientid(sc),
        ArgOp::SetclientidConfirm(scc),
        ArgOp::Renew(renewed),
        ArgOp::OpenConfirm(oc),
        ArgOp::Close(close),
        ArgOp::Lock(lock),
        ArgOp::Locku(locku),
        ArgOp::OpenDowngrade(od),
        ArgOp::ReleaseLockowner(rl),
    ] = &args.ops[..]
    else {
        panic!("{:?}", args.ops)
    };
    assert_eq!(
        sc.client.ownerid.as_str(),
        Ok("Linux NFSv4.0 10.0.2.15/10.0.2.100 tcp")
    );
    assert_eq!(sc.client.verifier, [0, 0, 0, 0, 0x65, 0x4e, 0x1a, 0x2b]);
    assert_eq!(sc.callback.cb_program, 0x4000_0000);
    assert_eq!(
        sc.callback.cb_location.addr.as_str(),
        Ok("10.0.2.15.141.205")
    );
    assert_eq!(sc.callback_ident, 1);
    assert_eq!(
        (scc.clientid, scc.setclientid_confirm),
        (0x6650_5a2b_0000_0001, [9; 8])
    );
    assert_eq!(*renewed, 0x6650_5a2b_0000_0001);
    assert_eq!(
        (oc.open_stateid.seqid, oc.open_stateid.other, oc.seqid),
        (1, [0xa1; 12], 2)
    );
    assert_eq!((close.seqid, close.open_stateid.seqid), (3, 2));
    let Locker4::New(new) = &lock.locker else {
        panic!("{:?}", lock.locker)
    };
    assert_eq!(
        (new.open_seqid, new.open_stateid.seqid, new.lock_seqid),
        (4, 2, 0)
    );
    assert_eq!(new.lock_owner.owner.as_bytes(), b"lock id:\x00\x00\x00\x01");
    assert_eq!((locku.seqid, locku.lock_stateid.other), (1, [0xb2; 12]));
    assert_eq!((od.seqid, od.share_access, od.share_deny), (5, 1, 0));
    assert_eq!(rl.clientid, 0x6650_5a2b_0000_0001);
    assert_eq!(xdr::to_bytes(&args), wire);
}

/// SETCLIENTID4res: the ok arm, and CLID_INUSE carrying the address in use.
#[test]
fn v40_setclientid_results() {
    let ok = Wire::default()
        .u32(35) // SETCLIENTID
        .u32(0) // NFS4_OK
        .u64(0x6650_5a2b_0000_0002)
        .fixed(&[3; 8])
        .bytes();
    let res = ResOp::decode(&mut Decoder::new(ok.clone())).unwrap();
    assert_eq!(
        res,
        ResOp::Setclientid(Setclientid4Res::Ok(Setclientid4ResOk {
            clientid: 0x6650_5a2b_0000_0002,
            setclientid_confirm: [3; 8],
        }))
    );
    assert_eq!(xdr::to_bytes(&res), ok);
    let inuse = Wire::default()
        .u32(35)
        .u32(10017) // NFS4ERR_CLID_INUSE
        .opaque(b"tcp")
        .opaque(b"10.0.2.15.141.205")
        .bytes();
    let res = ResOp::decode(&mut Decoder::new(inuse.clone())).unwrap();
    let ResOp::Setclientid(Setclientid4Res::ClidInuse(addr)) = &res else {
        panic!("{res:?}")
    };
    assert_eq!(addr.addr.as_str(), Ok("10.0.2.15.141.205"));
    assert_eq!(res.status(), Err(Nfs4Error::ClidInuse));
    assert_eq!(xdr::to_bytes(&res), inuse);
}
