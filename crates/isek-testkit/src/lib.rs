//! Shared test support for the isek workspace.
//!
//! - [`agents`]: realistic A2A agent cards, generated deterministically (filter tests,
//!   benchmarks), and the one-field [`agents::card`] of most tests.
//! - [`condition`]: waiting until a condition holds (bounded, never a sleep as an
//!   assertion), and following a node runtime's state.
//! - [`cluster`]: a real etcd cluster of several members on free loopback ports,
//!   whose members can be killed, paused and restarted; which one leads.
//! - [`conformance`]: `check_registry`, the one suite every `Registry` backend must pass.
//! - [`etcd`]: starts a real etcd server on free loopback ports in a temporary
//!   directory and stops it on drop.
//! - [`sse`]: a raw reader of a center's change stream over a socket of its own.
//! - [`center`] (feature `center`): a real center served on a loopback socket.
//! - [`fuzzing`] (feature `center`): the center's fuzz targets as plain functions, for
//!   `fuzz/` and for the test that replays their seeds.
//! - [`router`] (feature `center`): a center behind its router, requests without a
//!   socket.
//! - [`signed`] (feature `center`): signed nodes on that router, the victim scene of
//!   the security tests.
//!
//! The `center` feature builds `isek-center`; crates whose tests do not need a center
//! leave it off and do not build it.

pub mod agents;
#[cfg(feature = "center")]
pub mod center;
pub mod cluster;
pub mod condition;
pub mod conformance;
pub mod etcd;
#[cfg(feature = "center")]
pub mod fuzzing;
#[cfg(feature = "center")]
pub mod router;
#[cfg(feature = "center")]
pub mod signed;
pub mod sse;
