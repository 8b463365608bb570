//! openefs-nfsd: the openefs data plane, an NFSv4.1 server over a local
//! directory.
//!
//! Layers, outermost first: [`transport`] (TCP, record marking, concurrent
//! calls per connection) → [`rpc`] (ONC RPC dispatch, credentials) →
//! [`compound`] (the COMPOUND loop, SEQUENCE and the slot reply cache) →
//! [`ops`] (one function per operation) → [`state`] (clients, sessions,
//! opens, leases, the grace period) with [`stable`] (the client records
//! that survive a restart), and the `openefs-vfs` storage backend.

pub mod attrs;
pub mod client;
pub mod compound;
pub mod config;
mod errors;
pub mod metrics;
pub mod ops;
pub mod rpc;
pub mod server;
pub mod stable;
pub mod state;
pub mod transport;

pub use config::{Config, ServeArgs};
pub use server::{Server, run, serve_on};
