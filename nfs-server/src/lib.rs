//! openefs-nfsd: the openefs data plane, an NFSv4.1, NFSv4.0 and NFSv3
//! server over a local directory.
//!
//! Layers, outermost first: [`transport`] (TCP, record marking, concurrent
//! calls per connection) → [`rpc`] (ONC RPC dispatch, credentials) →
//! [`compound`] (the COMPOUND loop, SEQUENCE and the slot reply cache) →
//! [`ops`] (one function per operation) → [`state`] (clients, sessions,
//! opens, leases, the grace period) with [`stable`] (the client records
//! that survive a restart), and the `openefs-vfs` storage backend. NFSv3
//! calls go from [`rpc`] to [`v3`] (one function per procedure) and MOUNT v3
//! calls to [`mount`], over the same vfs; [`dirwalk`] pages directories for
//! both versions' READDIR. [`tls`] decides how a connection starts (TLS,
//! RFC 9289 STARTTLS or plain RPC) before [`transport`] reads its records.
//! [`throughput`] meters READ/WRITE data and metadata operations and delays
//! replies to keep to the throughput mode's rate; [`usage`] keeps the vfs's
//! stored-bytes ledger across restarts. [`performance`] is the performance
//! mode: where blocking vfs calls run. [`encryption`] keeps the data key
//! the vfs encrypts file contents with, wrapped by a key-encryption key.

pub mod admin;
pub mod attrs;
pub mod client;
pub mod compound;
pub mod config;
pub mod dirwalk;
pub mod encryption;
mod errors;
pub mod metrics;
pub mod mount;
pub mod ops;
pub mod performance;
pub mod rpc;
pub mod server;
pub mod settings;
pub mod stable;
pub mod state;
pub mod throughput;
pub mod tls;
pub mod transport;
pub mod usage;
pub mod v3;

pub use config::{Config, ServeArgs};
pub use server::{Server, run, run_with_keys, serve_on};
