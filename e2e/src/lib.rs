//! Harnesses that run openefs against real peers nobody here wrote.
pub mod apiserver;
pub mod bench;
pub mod binaries;
pub mod command;
pub mod fio;
pub mod ganesha;
pub mod libnfs;
pub mod locks;
pub mod nfsd;
pub mod qemu;
pub mod tls_proxy;
