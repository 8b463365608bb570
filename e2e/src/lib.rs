//! Harnesses that run openefs against real peers nobody here wrote.
pub mod apiserver;
pub mod binaries;
pub mod ganesha;
pub mod locks;
pub mod nfsd;
pub mod qemu;
