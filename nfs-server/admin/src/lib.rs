//! The admin API of `openefs-nfsd` (`proto/admin.proto`): the operator
//! applies settings and reads usage and clients through it. Generated code
//! only; the server side lives in `openefs-nfsd`, the client side is used by
//! the operator and the tests.

pub mod v1 {
    tonic::include_proto!("openefs.admin.v1");
}
