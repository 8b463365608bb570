//! XDR (RFC 4506), ONC RPC (RFC 5531), NFSv4.1 (RFC 8881), NFSv3 and
//! MOUNT v3 (RFC 1813) wire types for openefs. No I/O: fuzzable, and usable by tests as a client.
//!
//! Layout:
//! - [`xdr`]: [`xdr::Decoder`] (bounded, zero-copy over `Bytes`),
//!   [`xdr::Encoder`] (chunked, large payloads referenced), the
//!   [`xdr::XdrEncode`]/[`xdr::XdrDecode`] traits, [`xdr::Opaque`] (`opaque<MAX>`),
//!   [`xdr::XdrError`].
//! - [`rpc`]: record marking ([`rpc::RecordDecoder`], [`rpc::fragment_header`]),
//!   [`rpc::CallHeader`] (+ [`rpc::CallError`] saying how to answer a bad
//!   one), credentials ([`rpc::Credential`], [`rpc::AuthSys`]), reply headers
//!   ([`rpc::ReplyHeader`] with one constructor per accept/reject status).
//! - [`nfs4`]: program constants; [`nfs4::Compound4Args`] (decoded op by op,
//!   with [`nfs4::OpDecodeError`] for OP_ILLEGAL/BADXDR) and
//!   [`nfs4::Compound4Res`]; [`nfs4::ArgOp`]/[`nfs4::ResOp`] with one variant
//!   per operation and the `OP_*` numbers; [`nfs4::ResOp::error`] builds
//!   any op's error result.
//!   - [`nfs4::ops`]: per-operation argument/result structs, flag constants,
//!     [`nfs4::ops::ReaddirBuilder`] (entries within `maxcount`).
//!   - [`nfs4::types`]: shared types (stateid, filehandle, times, owners,
//!     channel attributes, delegations, …) and size constants.
//!   - [`nfs4::attr`]: [`nfs4::Bitmap4`], [`nfs4::Fattr4`], the `FATTR4_*`
//!     numbers and [`nfs4::FileAttrs`] (typed values: encode what was
//!     requested, decode SETATTR/CREATE/OPEN/VERIFY input).
//!   - [`nfs4::status`]: [`nfs4::Nfs4Error`] (every `nfsstat4` but OK) and
//!     [`nfs4::Nfs4Status`] = `Result<(), Nfs4Error>`.
//! - [`nfs3`]: program and procedure numbers, [`nfs3::Res3`] (`resok` or a
//!   status with its `resfail` arm), [`nfs3::Nfs3Error`].
//!   - [`nfs3::types`]: `fattr3`, `wcc_data`, `sattr3`, `post_op_*`, …
//!   - [`nfs3::ops`]: every procedure's arguments and results, and
//!     [`nfs3::ops::DirListBuilder`] (entries within `count`/`dircount`).
//! - [`mount`]: MOUNT v3 (MNT, DUMP, UMNT, UMNTALL, EXPORT).

pub mod mount;
pub mod nfs3;
pub mod nfs4;
pub mod rpc;
pub mod xdr;
