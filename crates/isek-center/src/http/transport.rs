//! How connections are accepted and served: plain HTTP or HTTPS (rustls), with
//! timeouts against slow and half-open clients, and a graceful shutdown.
//!
//! One accept loop serves both: each connection gets its own task running hyper's
//! HTTP/1 + HTTP/2 server over the axum router. Abuse bounds:
//!
//! - the TLS handshake must finish within [`Timeouts::handshake`];
//! - HTTP/1 request headers must arrive within [`Timeouts::header_read`] (hyper's
//!   `header_read_timeout`), so a client trickling headers is cut off;
//! - each request must be answered (body read included) within [`Timeouts::request`],
//!   else 408 with the JSON envelope; streaming bodies (`/v1/watch`) only count until
//!   their response head;
//! - on shutdown the listener closes, in-flight requests finish, idle connections close;
//!   connections still open after [`Timeouts::drain`] are closed.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tower::ServiceExt;

use crate::config::Timeouts;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::render::envelope_without_data;

/// A TLS acceptor from a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1
/// or SEC1), serving HTTP/2 and HTTP/1.1 by ALPN.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        Error::Config(format!("{what} {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("cannot read the TLS certificate", cert, &e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad("invalid TLS certificate", cert, &e))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "no certificate in {}",
            cert.display()
        )));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| bad("cannot read the TLS private key", key, &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| Error::Config(format!("TLS certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// An accepted connection, counted in the metrics until it is dropped (whichever way
/// its task ends).
struct OpenConnection(Arc<Metrics>);

impl OpenConnection {
    /// Counts a connection just accepted.
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.connection_opened();
        Self(metrics)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

/// The 408 answer of a request that took too long.
fn request_timeout() -> Response {
    let mut response = (
        StatusCode::REQUEST_TIMEOUT,
        envelope_without_data(408, "The request took too long."),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown`
/// completes, then lets open requests finish (at most [`Timeouts::drain`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    timeouts: Timeouts,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    // Turned true at the drain timeout: every connection task still running drops its
    // connection (closing the socket). Each task holds a receiver, so the receiver
    // count says how many are left.
    let (force_close, closing) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let router = router.clone();
            async move {
                let request = request.map(Body::new);
                match tokio::time::timeout(timeouts.request, router.oneshot(request)).await {
                    Ok(Ok(response)) => Ok::<_, std::convert::Infallible>(response),
                    Ok(Err(never)) => match never {},
                    Err(_) => Ok(request_timeout()),
                }
            }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let open = OpenConnection::new(Arc::clone(&metrics));
        let mut closing = closing.clone();
        tokio::spawn(async move {
            let _open = open;
            let serving = async move {
                match tls {
                    None => {
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        watcher.watch(conn.into_owned()).await
                    }
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(timeouts.handshake, acceptor.accept(stream)).await;
                        let stream = match handshake {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return Ok(());
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return Ok(());
                            }
                        };
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        watcher.watch(conn.into_owned()).await
                    }
                }
            };
            tokio::select! {
                served = serving => {
                    if let Err(e) = served {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                _ = closing.wait_for(|closed| *closed) => {
                    tracing::debug!(%peer, "connection closed at the drain timeout");
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(timeouts.drain, graceful.shutdown())
        .await
        .is_err()
    {
        drop(closing);
        let open = force_close.receiver_count();
        tracing::warn!(
            connections = open,
            drain_ms = timeouts.drain.as_millis(),
            "connections still open after the drain timeout; closing them"
        );
        let _ = force_close.send(true);
        // Each task drops its receiver as it drops its connection; bounded, since a
        // task blocked outside the runtime's reach must not hold the shutdown.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while force_close.receiver_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(())
}
