//! Integration tests of the center as a library: handlers through the router without a
//! socket, lease expiry with short TTLs, restart durability on a real SQLite store, and
//! `run` on a real socket with graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod durability;
mod handlers;
mod leases;
mod server;
