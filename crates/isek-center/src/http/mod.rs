//! The HTTP layer (level 4, the top): everything that knows HTTP.
//!
//! - [`request`]: bodies and queries parsed into [`crate::command`] values, with the
//!   original center's messages;
//! - [`Rejection`]: a refusal with a status; the single map from the lower layers'
//!   kinds ([`crate::policy::RefusalKind`], [`crate::WriteError`]) to statuses;
//! - [`handlers`]: the axum router and handlers;
//! - [`operator`]: `/healthz`, `/readyz` (Kubernetes probes) and `/metrics` (Prometheus);
//! - [`transport`]: the accept loop (plain HTTP or rustls), timeouts, drain;
//! - [`server`]: [`app`] and [`run`], the center wired to a listener;
//! - [`ui`]: the operators' dashboard at `/ui/`, static files embedded in the binary.
//!
//! axum, hyper, tower and rustls types appear only below this module; nothing under
//! `crate::http` is imported by a lower layer.

pub mod handlers;
pub mod operator;
mod rejection;
pub mod request;
pub mod server;
pub mod transport;
pub mod ui;

pub use rejection::{Rejection, status_of};
pub use server::{app, run, run_announced};
