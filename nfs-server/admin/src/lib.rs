//! The admin API of `openefs-nfsd` (`proto/admin.proto`): the operator
//! applies settings and reads usage and clients through it. Generated code,
//! and the one other contract between nfsd and the operator; the server
//! side lives in `openefs-nfsd`, the client side is used by the operator and
//! the tests.

/// How nfsd's termination message (`/dev/termination-log`) starts when it
/// refuses to serve over its keys (a wrong, missing or unreachable KEK, a
/// record it cannot use); the operator turns such a message into the
/// condition `EncryptionReady=False, DataKeyUnavailable`.
pub const KEY_ERROR_PREFIX: &str = "encryption at rest:";

pub mod v1 {
    tonic::include_proto!("openefs.admin.v1");
}
