//! Encode → decode round trips for every type, and the behaviour of the
//! helpers (compound decoding, attributes, READDIR budget, records).

mod common;

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use common::*;
use openefs_nfs_wire::nfs4::attr::*;
use openefs_nfs_wire::nfs4::ops::*;
use openefs_nfs_wire::nfs4::types::*;
use openefs_nfs_wire::nfs4::*;
use openefs_nfs_wire::rpc::*;
use openefs_nfs_wire::xdr::{self, Decoder, Encoder, Opaque, XdrDecode, XdrEncode, XdrError};

fn round_trip<T: XdrEncode + XdrDecode + PartialEq + std::fmt::Debug>(v: &T) {
    let bytes = xdr::to_bytes(v);
    assert_eq!(bytes.len() % 4, 0, "{v:?} is not 4-byte aligned");
    let back: T = xdr::from_bytes(bytes).unwrap_or_else(|e| panic!("{v:?}: {e}"));
    assert_eq!(&back, v);
}

fn compound(ops: Vec<ArgOp>) -> Compound4Args {
    Compound4Args {
        tag: s("tag"),
        minorversion: 1,
        declared_ops: ops.len() as u32,
        ops,
        error: None,
    }
}

fn decode_compound(bytes: Bytes) -> Compound4Args {
    Compound4Args::decode(&mut Decoder::new(bytes)).expect("header decodes")
}

#[test]
fn every_arg_op_round_trips() {
    let ops = sample_arg_ops();
    let covered: BTreeSet<u32> = ops.iter().map(ArgOp::opnum).collect();
    let expected: BTreeSet<u32> = (3..=58).filter(|op| !is_known_unsupported(*op)).collect();
    assert_eq!(covered, expected, "samples must cover every operation");
    for op in &ops {
        let args = compound(vec![op.clone()]);
        assert_eq!(decode_compound(xdr::to_bytes(&args)), args, "{op:?}");
    }
    // And all of them in one COMPOUND (below the op cap in chunks).
    for chunk in ops.chunks(MAX_COMPOUND_OPS) {
        let args = compound(chunk.to_vec());
        assert_eq!(decode_compound(xdr::to_bytes(&args)), args);
    }
}

#[test]
fn every_res_op_round_trips() {
    let results = sample_res_ops();
    for r in &results {
        round_trip(r);
    }
    let res = Compound4Res::new(s("t"), results[..20].to_vec());
    assert_eq!(res.status, Ok(()));
    round_trip(&res);
}

#[test]
fn error_results_carry_the_right_op_and_status() {
    for op in 3..=58 {
        let r = ResOp::error(op, Nfs4Error::Delay);
        assert_eq!(r.opnum(), op);
        assert_eq!(r.status(), Err(Nfs4Error::Delay));
    }
    let r = ResOp::error(9999, Nfs4Error::OpIllegal);
    assert_eq!(r.opnum(), OP_ILLEGAL);
    // SETATTR's error result still carries an (empty) attrsset.
    let bytes = xdr::to_bytes(&ResOp::error(OP_SETATTR, Nfs4Error::Perm));
    assert_eq!(&bytes[..], &[0, 0, 0, 34, 0, 0, 0, 1, 0, 0, 0, 0]);
    // Compound status is the last result's.
    let res = Compound4Res::new(
        s(""),
        vec![
            ResOp::Putrootfh(Ok(())),
            ResOp::error(OP_LOOKUP, Nfs4Error::Noent),
        ],
    );
    assert_eq!(res.status, Err(Nfs4Error::Noent));
}

#[test]
fn every_status_code_round_trips() {
    for code in 1..=10094u32 {
        if let Ok(e) = Nfs4Error::try_from(code) {
            assert_eq!(e.code(), code);
            round_trip(&e);
            round_trip(&Err::<(), _>(e));
        }
    }
    assert_eq!(Nfs4Error::MinorVersMismatch.code(), 10021);
    assert_eq!(Nfs4Error::SeqMisordered.code(), 10063);
    assert_eq!(Nfs4Error::OffloadNoReqs.code(), 10094);
    assert!(Nfs4Error::try_from(10073).is_err(), "10073 is unassigned");
    assert!(Nfs4Error::try_from(19).is_err());
    round_trip(&Ok::<(), Nfs4Error>(()));
}

#[test]
fn unknown_op_stops_with_op_illegal() {
    let mut enc = Encoder::new();
    s("").encode(&mut enc);
    enc.put_u32(1);
    enc.put_u32(3);
    ArgOp::Putrootfh.encode(&mut enc);
    enc.put_u32(9999);
    ArgOp::Getfh.encode(&mut enc);
    let args = decode_compound(enc.into_bytes());
    assert_eq!(args.ops, vec![ArgOp::Putrootfh]);
    let err = args.error.expect("stopped");
    assert_eq!(
        (err.index, err.resop, err.status),
        (1, OP_ILLEGAL, Nfs4Error::OpIllegal)
    );
    assert_eq!(
        xdr::to_bytes(&err.result())[..],
        [0, 0, 0x27, 0x3c, 0, 0, 0x27, 0x3c]
    );
}

#[test]
fn malformed_op_stops_with_badxdr_for_that_op() {
    let mut enc = Encoder::new();
    s("").encode(&mut enc);
    enc.put_u32(1);
    enc.put_u32(2);
    ArgOp::Putrootfh.encode(&mut enc);
    enc.put_u32(OP_LOOKUP);
    enc.put_u32(5000); // name longer than the cap
    let args = decode_compound(enc.into_bytes());
    assert_eq!(args.ops, vec![ArgOp::Putrootfh]);
    let err = args.error.expect("stopped");
    assert_eq!(
        (err.index, err.resop, err.status),
        (1, OP_LOOKUP, Nfs4Error::Badxdr)
    );
    assert_eq!(err.result(), ResOp::Lookup(Err(Nfs4Error::Badxdr)));
}

#[test]
fn known_unsupported_op_is_the_last_decoded() {
    let mut enc = Encoder::new();
    s("").encode(&mut enc);
    enc.put_u32(2);
    enc.put_u32(3);
    ArgOp::Putrootfh.encode(&mut enc);
    enc.put_u32(OP_SEEK);
    enc.put_u32(0xdead_beef); // SEEK's arguments, never decoded
    ArgOp::Getfh.encode(&mut enc);
    let args = decode_compound(enc.into_bytes());
    assert_eq!(
        args.ops,
        vec![ArgOp::Putrootfh, ArgOp::Unsupported(OP_SEEK)]
    );
    assert_eq!(args.error, None);
    let r = ResOp::error(OP_SEEK, Nfs4Error::Notsupp);
    assert_eq!(r.opnum(), OP_SEEK);
    round_trip(&r);
}

#[test]
fn huge_op_count_decodes_no_op() {
    let mut enc = Encoder::new();
    s("").encode(&mut enc);
    enc.put_u32(1);
    enc.put_u32(u32::MAX);
    ArgOp::Putrootfh.encode(&mut enc);
    let args = decode_compound(enc.into_bytes());
    assert_eq!(args.declared_ops, u32::MAX);
    assert!(args.ops.is_empty());
}

#[test]
fn op_count_beyond_input_stops_with_badxdr() {
    let mut enc = Encoder::new();
    s("").encode(&mut enc);
    enc.put_u32(1);
    enc.put_u32(3);
    ArgOp::Putrootfh.encode(&mut enc);
    let args = decode_compound(enc.into_bytes());
    assert_eq!(args.ops, vec![ArgOp::Putrootfh]);
    let err = args.error.expect("stopped");
    assert_eq!(
        (err.index, err.resop, err.status),
        (1, OP_ILLEGAL, Nfs4Error::Badxdr)
    );
}

#[test]
fn lengths_are_checked_against_caps_and_input() {
    // opaque longer than its cap
    let mut d = Decoder::new(Bytes::from_static(&[0, 0, 0, 129]));
    assert!(matches!(
        NfsFh4::decode(&mut d),
        Err(XdrError::TooLong {
            len: 129,
            max: 128,
            ..
        })
    ));
    // opaque longer than the input
    let mut d = Decoder::new(Bytes::from_static(&[0, 0, 0, 8, 1, 2, 3, 4]));
    assert!(matches!(
        NfsFh4::decode(&mut d),
        Err(XdrError::Truncated { .. })
    ));
    // array count 2^32-1 against a 1024 cap
    let mut d = Decoder::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]));
    assert!(matches!(
        Vec::<Stateid4>::decode(&mut d),
        Err(XdrError::TooLong { .. })
    ));
    // array count within the cap but above what the input can hold
    let mut d = Decoder::new(Bytes::from_static(&[0, 0, 0, 100, 0, 0, 0, 0]));
    assert!(matches!(
        Vec::<u32>::decode(&mut d),
        Err(XdrError::Truncated { .. })
    ));
    // bitmap of more than 8 words
    let mut enc = Encoder::new();
    vec![0u32; 9].encode(&mut enc);
    let e = xdr::from_bytes::<Bitmap4>(enc.into_bytes()).unwrap_err();
    assert!(matches!(
        e,
        XdrError::TooLong {
            what: "bitmap4",
            ..
        }
    ));
    // 17 AUTH_SYS gids
    let mut sys = auth_sys();
    sys.gids = vec![0; 17];
    let e = xdr::from_bytes::<AuthSys>(xdr::to_bytes(&sys)).unwrap_err();
    assert!(matches!(e, XdrError::TooLong { max: 16, .. }));
    // WRITE data above 1 MiB
    let mut enc = Encoder::new();
    enc.put_u32((MAX_DATA + 1) as u32);
    let e = xdr::from_bytes::<Data>(enc.into_bytes()).unwrap_err();
    assert!(matches!(e, XdrError::TooLong { .. }));
    // booleans are 0 or 1
    let e = xdr::from_bytes::<bool>(Bytes::from_static(&[0, 0, 0, 2])).unwrap_err();
    assert!(matches!(
        e,
        XdrError::BadDiscriminant {
            what: "bool",
            value: 2
        }
    ));
    // trailing bytes
    let e = xdr::from_bytes::<u32>(Bytes::from_static(&[0, 0, 0, 2, 0])).unwrap_err();
    assert!(matches!(e, XdrError::TrailingBytes { len: 1, .. }));
}

#[test]
fn write_data_is_not_copied() {
    let args = compound(vec![ArgOp::Write(Write4Args {
        stateid: stateid(1),
        offset: 0,
        stable: StableHow::Unstable,
        data: data(8192),
    })]);
    let wire = xdr::to_bytes(&args);
    let decoded = decode_compound(wire.clone());
    let ArgOp::Write(w) = &decoded.ops[0] else {
        panic!("not a write")
    };
    let range = wire.as_ptr_range();
    assert!(
        range.contains(&w.data.0.as_ptr()),
        "WRITE data must point into the request"
    );
}

#[test]
fn read_data_is_a_separate_chunk() {
    let payload = data(65536).0;
    let mut enc = Encoder::new();
    ResOp::Read(Ok(Read4ResOk {
        eof: false,
        data: Opaque(payload.clone()),
    }))
    .encode(&mut enc);
    assert_eq!(enc.len(), 4 + 4 + 4 + 4 + 65536);
    let chunks = enc.into_chunks();
    assert!(
        chunks.iter().any(|c| c.as_ptr() == payload.as_ptr()),
        "payload referenced"
    );
    // Small payloads are copied inline, with padding.
    let mut enc = Encoder::new();
    enc.put_opaque_bytes(&Bytes::from_static(b"abcde"));
    assert_eq!(&enc.into_bytes()[..], b"\0\0\0\x05abcde\0\0\0");
}

#[test]
fn encoder_append_keeps_order() {
    let mut a = Encoder::new();
    a.put_u32(1);
    let mut b = Encoder::new();
    b.put_opaque_bytes(&data(2000).0);
    b.put_u32(2);
    a.append(b);
    let bytes = a.into_bytes();
    assert_eq!(bytes.len(), 4 + 4 + 2000 + 4);
    let mut d = Decoder::new(bytes);
    assert_eq!(d.u32().unwrap(), 1);
    assert_eq!(d.opaque("x", 4096).unwrap(), data(2000).0);
    assert_eq!(d.u32().unwrap(), 2);
}

#[test]
fn file_attrs_encode_only_requested_and_present_in_order() {
    let attrs = FileAttrs {
        file_type: Some(FileType::Dir),
        size: Some(4096),
        fsid: Some(Fsid4 { major: 1, minor: 2 }),
        owner: Some(s("1000")),
        mounted_on_fileid: Some(77),
        ..Default::default()
    };
    let requested = Bitmap4::from_bits(&[
        FATTR4_MOUNTED_ON_FILEID,
        FATTR4_TYPE,
        FATTR4_SIZE,
        FATTR4_OWNER,
        FATTR4_CHANGE, // requested, not present
        FATTR4_ACL,    // requested, unknown to FileAttrs
    ]);
    let f = attrs.encode_requested(&requested);
    assert_eq!(
        f.attrmask,
        Bitmap4::from_bits(&[
            FATTR4_TYPE,
            FATTR4_SIZE,
            FATTR4_OWNER,
            FATTR4_MOUNTED_ON_FILEID
        ])
    );
    let mut expect = Encoder::new();
    expect.put_u32(2);
    expect.put_u64(4096);
    expect.put_opaque(b"1000");
    expect.put_u64(77);
    assert_eq!(f.attr_vals.0, expect.into_bytes());
    let back = FileAttrs::decode(&f).unwrap();
    assert_eq!(back.present(), f.attrmask);
    assert_eq!(back.size, Some(4096));
    assert_eq!(back.fsid, None, "not requested");
}

#[test]
fn every_typed_attribute_round_trips() {
    let all = FileAttrs {
        supported_attrs: Some(Bitmap4::from_bits(&[0, 1, 75])),
        file_type: Some(FileType::Lnk),
        fh_expire_type: Some(FH4_PERSISTENT),
        change: Some(1),
        size: Some(2),
        link_support: Some(true),
        symlink_support: Some(true),
        named_attr: Some(false),
        fsid: Some(Fsid4::default()),
        unique_handles: Some(true),
        lease_time: Some(90),
        rdattr_error: Some(Err(Nfs4Error::Stale)),
        aclsupport: Some(0),
        cansettime: Some(true),
        case_insensitive: Some(false),
        case_preserving: Some(true),
        chown_restricted: Some(true),
        filehandle: Some(NfsFh4::from(&[1u8; 9][..])),
        fileid: Some(3),
        files_avail: Some(4),
        files_free: Some(5),
        files_total: Some(6),
        homogeneous: Some(true),
        maxfilesize: Some(u64::MAX),
        maxlink: Some(255),
        maxname: Some(255),
        maxread: Some(1 << 20),
        maxwrite: Some(1 << 20),
        mode: Some(0o4755),
        no_trunc: Some(true),
        numlinks: Some(2),
        owner: Some(s("0")),
        owner_group: Some(s("100")),
        rawdev: Some(SpecData4 {
            specdata1: 1,
            specdata2: 3,
        }),
        space_avail: Some(7),
        space_free: Some(8),
        space_total: Some(9),
        space_used: Some(10),
        time_access: Some(NfsTime4 {
            seconds: -1,
            nseconds: 999_999_999,
        }),
        time_access_set: Some(SetTime4::ServerTime),
        time_create: Some(NfsTime4::default()),
        time_delta: Some(NfsTime4 {
            seconds: 0,
            nseconds: 1,
        }),
        time_metadata: Some(NfsTime4::default()),
        time_modify: Some(NfsTime4::default()),
        time_modify_set: Some(SetTime4::ClientTime(NfsTime4 {
            seconds: 5,
            nseconds: 6,
        })),
        mounted_on_fileid: Some(11),
        suppattr_exclcreat: Some(Bitmap4::from_bits(&[4, 33])),
    };
    let everything = Bitmap4::from_words(vec![u32::MAX; 3]);
    let f = all.encode_requested(&everything);
    assert_eq!(f.attrmask, all.present());
    assert_eq!(FileAttrs::decode(&f).unwrap(), all);
    round_trip(&f);
}

#[test]
fn setattr_with_unknown_attribute_names_it() {
    let mut enc = Encoder::new();
    enc.put_u32(0o600);
    let f = Fattr4 {
        attrmask: Bitmap4::from_bits(&[FATTR4_MODE, FATTR4_HIDDEN]),
        attr_vals: Opaque(enc.into_bytes()),
    };
    let e = FileAttrs::decode(&f).unwrap_err();
    assert_eq!(e, AttrError::Unsupported(FATTR4_HIDDEN));
    assert_eq!(e.status(), Nfs4Error::Attrnotsupp);
    // Values shorter or longer than the mask says are BADXDR.
    let short = Fattr4 {
        attrmask: Bitmap4::from_bits(&[FATTR4_SIZE]),
        attr_vals: Opaque(Bytes::from_static(&[0, 0, 0, 1])),
    };
    assert_eq!(
        FileAttrs::decode(&short).unwrap_err().status(),
        Nfs4Error::Badxdr
    );
    let long = Fattr4 {
        attrmask: Bitmap4::from_bits(&[FATTR4_MODE]),
        attr_vals: Opaque(Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 0])),
    };
    assert_eq!(
        FileAttrs::decode(&long).unwrap_err().status(),
        Nfs4Error::Badxdr
    );
    assert!(WRITABLE_ATTRS.contains(&FATTR4_MODE));
    assert!(!WRITABLE_ATTRS.contains(&FATTR4_TYPE));
}

#[test]
fn bitmap_operations() {
    let mut b = Bitmap4::new();
    assert!(b.is_empty());
    b.set(75);
    b.set(1);
    assert_eq!(b.words(), &[2, 0, 1 << 11]);
    assert!(b.contains(75) && b.contains(1) && !b.contains(2) && !b.contains(500));
    assert_eq!(b.iter().collect::<Vec<_>>(), vec![1, 75]);
    let other = Bitmap4::from_bits(&[1, 3]);
    assert_eq!(b.intersection(&other), Bitmap4::from_words(vec![2]));
    assert_eq!(b.difference(&other).iter().collect::<Vec<_>>(), vec![75]);
    b.clear(75);
    b.clear(1);
    assert!(b.is_empty());
    round_trip(&Bitmap4::from_bits(&[0, 31, 32, 255]));
}

#[test]
fn readdir_builder_respects_maxcount_exactly() {
    let entry = |i: u64| Entry4 {
        cookie: i,
        name: s(&format!("file-{i}")),
        attrs: FileAttrs {
            fileid: Some(i),
            ..Default::default()
        }
        .encode_requested(&Bitmap4::from_bits(&[FATTR4_FILEID])),
    };
    for maxcount in [16u32, 40, 60, 100, 1000, 4096] {
        let mut b = ReaddirBuilder::new(maxcount);
        let mut i = 0;
        let rejected = loop {
            match b.push(entry(i)) {
                Ok(()) => i += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(rejected.cookie, i);
        let len = b.encoded_len();
        let reply = b.finish([1; 8], false);
        let bytes = xdr::to_bytes(&reply);
        assert_eq!(bytes.len(), len, "builder's size is the encoded size");
        assert!(bytes.len() <= maxcount as usize);
        assert!(bytes.len() + ReaddirBuilder::entry_len(&rejected) > maxcount as usize);
        round_trip(&reply);
    }
    assert!(ReaddirBuilder::new(16).is_empty());
}

#[test]
fn rpc_call_and_replies_round_trip() {
    let call = CallHeader {
        xid: 0x1234_5678,
        prog: NFS4_PROGRAM,
        vers: NFS_V4,
        proc_: NFSPROC4_COMPOUND,
        cred: OpaqueAuth {
            flavor: AUTH_SYS,
            body: Opaque(xdr::to_bytes(&auth_sys())),
        },
        verf: OpaqueAuth::none(),
    };
    let mut enc = Encoder::new();
    call.encode(&mut enc);
    enc.put_u32(0xfeed);
    let mut dec = Decoder::new(enc.into_bytes());
    let back = CallHeader::decode(&mut dec).unwrap();
    assert_eq!(back, call);
    assert_eq!(dec.into_rest()[..], [0, 0, 0xfe, 0xed]);
    assert_eq!(
        Credential::parse(&back.cred),
        Ok(Credential::Sys(auth_sys()))
    );
    for reply in [
        ReplyHeader::success(1),
        ReplyHeader::prog_unavail(2),
        ReplyHeader::prog_mismatch(3, 4, 4),
        ReplyHeader::proc_unavail(4),
        ReplyHeader::garbage_args(5),
        ReplyHeader::system_err(6),
        ReplyHeader::rpc_mismatch(7),
        ReplyHeader::auth_error(8, AuthStat::TooWeak),
        ReplyHeader::accepted(
            9,
            OpaqueAuth {
                flavor: AUTH_NONE,
                body: Opaque::from(STARTTLS_VERIFIER),
            },
            AcceptedBody::Success,
        ),
    ] {
        round_trip(&reply);
    }
    // RFC 5531 layout of a GARBAGE_ARGS reply.
    assert_eq!(
        xdr::to_bytes(&ReplyHeader::garbage_args(0x0a0b0c0d))[..],
        // xid, REPLY, MSG_ACCEPTED, verifier AUTH_NONE + empty body, GARBAGE_ARGS
        [
            0xa, 0xb, 0xc, 0xd, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4
        ]
    );
}

#[test]
fn credentials_are_interpreted() {
    let cred = |flavor, body: &'static [u8]| OpaqueAuth {
        flavor,
        body: Opaque(Bytes::from_static(body)),
    };
    assert_eq!(
        Credential::parse(&cred(AUTH_NONE, b"")),
        Ok(Credential::None)
    );
    assert_eq!(Credential::parse(&cred(AUTH_TLS, b"")), Ok(Credential::Tls));
    assert!(matches!(
        Credential::parse(&cred(RPCSEC_GSS, b"abcd")),
        Ok(Credential::Gss(_))
    ));
    assert!(matches!(
        Credential::parse(&cred(AUTH_DH, b"")),
        Ok(Credential::Other(_))
    ));
    assert_eq!(
        Credential::parse(&cred(AUTH_SYS, b"\0\0")),
        Err(AuthStat::BadCred)
    );
}

#[test]
fn bad_call_headers_say_how_to_answer() {
    let words =
        |w: &[u32]| Bytes::from(w.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>());
    let decode = |b| CallHeader::decode(&mut Decoder::new(b)).unwrap_err();
    assert_eq!(decode(Bytes::from_static(&[1, 2])), CallError::NoXid);
    assert_eq!(
        decode(words(&[7, 1])),
        CallError::NotACall {
            xid: 7,
            msg_type: 1
        }
    );
    assert_eq!(
        decode(words(&[7, 0, 3])),
        CallError::RpcVersion { xid: 7, vers: 3 }
    );
    assert!(matches!(
        decode(words(&[7, 0, 2, 100003, 4, 1, 1, 500])),
        CallError::Garbage { xid: 7, .. }
    ));
}

#[test]
fn record_decoder_reassembles_fragments() {
    let mut stream = BytesMut::new();
    stream.extend_from_slice(&fragment_header(3, false));
    stream.extend_from_slice(b"abc");
    stream.extend_from_slice(&fragment_header(2, true));
    stream.extend_from_slice(b"de");
    stream.extend_from_slice(&fragment_header(4, true));
    stream.extend_from_slice(b"wxyz");
    stream.extend_from_slice(&fragment_header(8, true));
    stream.extend_from_slice(b"part");
    // Fed one byte at a time, records come out whole and in order.
    let mut dec = RecordDecoder::new(1024);
    let mut buf = BytesMut::new();
    let mut records = Vec::new();
    for b in stream {
        buf.extend_from_slice(&[b]);
        while let Some(r) = dec.decode(&mut buf).unwrap() {
            records.push(r);
        }
    }
    assert_eq!(
        records,
        vec![Bytes::from_static(b"abcde"), Bytes::from_static(b"wxyz")]
    );
    assert_eq!(
        &buf[..],
        b"\x80\0\0\x08part",
        "incomplete fragment stays buffered"
    );
    assert_eq!(
        parse_fragment_header(fragment_header(MAX_FRAGMENT_LEN, true)),
        (MAX_FRAGMENT_LEN, true)
    );
}

#[test]
fn record_decoder_rejects_oversized_records_before_buffering() {
    let mut dec = RecordDecoder::new(100);
    let mut buf = BytesMut::from(&fragment_header(60, false)[..]);
    buf.extend_from_slice(&[0; 60]);
    assert_eq!(dec.decode(&mut buf), Ok(None));
    buf.extend_from_slice(&fragment_header(41, true));
    assert_eq!(
        dec.decode(&mut buf),
        Err(RecordError::TooLarge { len: 101, max: 100 })
    );
    let mut dec = RecordDecoder::new(1 << 20);
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
    assert!(dec.decode(&mut buf).is_err());
    assert!(
        buf.capacity() < 1 << 20,
        "nothing reserved for a rejected record"
    );
}
