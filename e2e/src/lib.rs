//! Harnesses that run openefs against real peers nobody here wrote.
pub mod apiserver;
pub mod bench;
pub mod binaries;
pub mod command;
pub mod csi_guest;
pub mod demo;
pub mod fio;
pub mod ganesha;
pub mod libnfs;
pub mod locks;
pub mod netns;
pub mod nfsd;
/// Throwaway CAs (rcgen), shared with nfsd's TLS tests.
#[path = "../../nfs-server/tests/common/pki.rs"]
pub mod pki;
pub mod progress;
pub mod qemu;
pub mod stunnel;
pub mod tls_proxy;
