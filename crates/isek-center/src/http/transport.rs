//! How connections are accepted and served: plain HTTP or HTTPS (rustls), with
//! timeouts against slow and half-open clients, and a graceful shutdown.
//!
//! One accept loop serves both: each connection gets its own task running hyper's
//! HTTP/1 + HTTP/2 server over the axum router. Abuse bounds:
//!
//! - at most `--max-connections` are open; at the cap the oldest connection that never
//!   completed a request, else the oldest idle one, is closed to make room
//!   ([`crate::admission`]); only when all are busy is a newcomer refused (503
//!   envelope). Accept errors (EMFILE: out of descriptors) reclaim a connection the
//!   same way and back off, never spin, never stop serving;
//! - the TLS handshake must finish within [`Timeouts::handshake`];
//! - the first bytes, and a whole HTTP/2 preface, within [`Timeouts::preface`]; a write
//!   may make no progress for at most [`Timeouts::write_stall`] ([`crate::socket`]);
//! - HTTP/1 request headers must arrive within [`Timeouts::header_read`] (hyper's
//!   `header_read_timeout`), so a client trickling headers is cut off; HTTP/2
//!   connections are pinged every [`Timeouts::keepalive_interval`] and closed when a
//!   ping goes unanswered;
//! - a connection with no request in flight for [`Timeouts::idle`] is closed (HTTP/2
//!   with a GOAWAY);
//! - a request body may go [`Timeouts::body_progress`] without a byte, else 408;
//! - each request must be answered (body read included) within [`Timeouts::request`],
//!   else 408 with the JSON envelope; streaming bodies (`/v1/watch`) only count until
//!   their response head;
//! - on shutdown the listener closes, in-flight requests finish, idle connections close;
//!   connections still open after [`Timeouts::drain`] are closed.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tower::ServiceExt;

use crate::admission::{ClientAddr, Connections, InFlight, Slot};
use crate::config::{ConnectionLimits, Timeouts};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::render::envelope_without_data;
use crate::socket::{Deadlines, Socket};

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

/// The phase of the server, which every connection task follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Serving.
    Serving,
    /// Shutting down: finish the requests in flight, then close.
    Draining,
    /// The drain timeout passed: close now.
    Closing,
}

/// A request body that fails when no byte arrives for a while (see
/// [`Timeouts::body_progress`]).
struct Progressing {
    /// The body.
    inner: Incoming,
    /// Longest wait for the next frame.
    limit: Duration,
    /// Runs out `limit` after the last frame.
    timer: Pin<Box<tokio::time::Sleep>>,
}

/// The error of a body that stopped arriving; the handlers answer 408.
#[derive(Debug, thiserror::Error)]
#[error("no request body bytes for {} ms", .0.as_millis())]
pub struct BodyStalled(Duration);

impl HttpBody for Progressing {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let limit = this.limit;
                this.timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + limit);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled(this.limit))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request counted as in flight until it is dropped
/// (a change stream's body lives as long as the stream).
struct Answered {
    /// The body.
    inner: Body,
    /// The request it answers.
    _in_flight: InFlight,
}

impl HttpBody for Answered {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The 503 answer written straight to a socket refused at the connection cap.
fn full_answer(limit: usize) -> Vec<u8> {
    let body = envelope_without_data(
        503,
        &format!("The center serves its maximum of {limit} connections, all busy; retry later."),
    );
    let mut answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(body.as_bytes());
    answer
}

/// Whether an accept error means the process or system is out of a resource
/// (descriptors, buffers, memory), as opposed to one failed connection.
fn out_of_resources(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        matches!(
            Errno::from_io_error(e),
            Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
        )
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        true
    }
}

/// Connections closed per accept that failed for lack of descriptors.
const RECLAIM_BATCH: usize = 16;

/// First and longest pause after an accept error for lack of resources.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown`
/// completes, then lets open requests finish (at most [`Timeouts::drain`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    timeouts: Timeouts,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(timeouts.keepalive_interval)
        .keep_alive_timeout(timeouts.keepalive_timeout);
    let limit = limits
        .max_connections
        .unwrap_or_else(crate::admission::default_max_connections);
    tracing::info!(max_connections = limit, "connection cap");
    let connections = Connections::new(limit);
    // Every connection task holds a receiver: the sender learns when all have ended.
    let (phase, phases) = watch::channel(Phase::Serving);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff = ACCEPT_BACKOFF.0;
                    accepted
                }
                Err(e) if out_of_resources(&e) => {
                    // Out of descriptors: close the oldest idle connection to free
                    // one, pause (doubling, bounded), keep serving.
                    // A batch: each freed descriptor takes one accept.
                    let reclaimed = (0..RECLAIM_BATCH).take_while(|_| connections.reclaim()).count();
                    tracing::warn!(error = %e, reclaimed, pause_ms = backoff.as_millis(), "accept failed");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = &mut shutdown => break,
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = connections.admit() else {
            metrics.connection_refused();
            refuse(stream, tls.is_some(), limit);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let task = Connection {
            builder: builder.clone(),
            router: router.clone(),
            tls: tls.clone(),
            timeouts,
            slot,
            phases: phases.clone(),
            open: OpenConnection::new(Arc::clone(&metrics)),
        };
        tokio::spawn(task.run(stream, peer));
    }
    drop(listener);
    drop(phases);
    let _ = phase.send(Phase::Draining);
    if tokio::time::timeout(timeouts.drain, phase.closed())
        .await
        .is_err()
    {
        let open = phase.receiver_count();
        tracing::warn!(
            connections = open,
            drain_ms = timeouts.drain.as_millis(),
            "connections still open after the drain timeout; closing them"
        );
        let _ = phase.send(Phase::Closing);
        // Each task drops its receiver as it drops its connection; bounded, since a
        // task blocked outside the runtime's reach must not hold the shutdown.
        let _ = tokio::time::timeout(Duration::from_secs(1), phase.closed()).await;
    }
    Ok(())
}

/// Answers a connection refused at the cap with a 503 envelope (plain HTTP only: it
/// fits in the empty send buffer of a new socket, so it never waits) and closes it.
fn refuse(stream: TcpStream, tls: bool, limit: usize) {
    tracing::warn!(
        max_connections = limit,
        "connection refused: every connection is busy"
    );
    if !tls {
        let _ = stream.try_write(&full_answer(limit));
    }
}

/// Completes when the connection has had no request in flight for `idle`.
async fn idle_for(mut in_flight: watch::Receiver<usize>, idle: Duration) {
    loop {
        if in_flight.wait_for(|n| *n == 0).await.is_err() {
            return std::future::pending().await;
        }
        tokio::select! {
            () = tokio::time::sleep(idle) => {
                if *in_flight.borrow() == 0 {
                    return;
                }
            }
            changed = in_flight.changed() => {
                if changed.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

/// One accepted connection and what serving it needs.
struct Connection {
    /// hyper's HTTP/1 + HTTP/2 server settings.
    builder: auto::Builder<TokioExecutor>,
    /// The application.
    router: Router,
    /// The TLS acceptor of an HTTPS center.
    tls: Option<TlsAcceptor>,
    /// The time limits.
    timeouts: Timeouts,
    /// Its place in the connection table.
    slot: Slot,
    /// The server's phase.
    phases: watch::Receiver<Phase>,
    /// Counted in the metrics while open.
    open: OpenConnection,
}

impl Connection {
    /// Serves the connection until it ends, is reclaimed, idles out or is closed by
    /// the shutdown.
    async fn run(self, stream: TcpStream, peer: std::net::SocketAddr) {
        let Connection {
            builder,
            router,
            tls,
            timeouts,
            slot,
            phases,
            open,
        } = self;
        let slot = Arc::new(slot);
        let deadlines = Deadlines {
            preface: timeouts.preface,
            write_stall: timeouts.write_stall,
        };
        let served = match tls {
            None => {
                let socket = Socket::new(stream, deadlines);
                serve_http(&builder, socket, router, timeouts, &slot, phases, peer).await
            }
            Some(acceptor) => {
                let handshake = tokio::select! {
                    handshake = tokio::time::timeout(timeouts.handshake, acceptor.accept(stream)) => handshake,
                    () = slot.reclaimed() => {
                        open.0.connections_reclaimed(1);
                        return;
                    }
                };
                match handshake {
                    Ok(Ok(stream)) => {
                        let socket = Socket::new(stream, deadlines);
                        serve_http(&builder, socket, router, timeouts, &slot, phases, peer).await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                }
            }
        };
        match served {
            Ok(Ended::Done) => {}
            Ok(Ended::Reclaimed) => {
                open.0.connections_reclaimed(1);
                tracing::debug!(%peer, "connection closed to make room for a new one");
            }
            Ok(Ended::Closed) => {
                tracing::debug!(%peer, "connection closed at the drain timeout");
            }
            Err(e) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
        }
    }
}

/// How serving a connection ended without an error.
enum Ended {
    /// The connection finished (peer closed, idle or graceful close).
    Done,
    /// Closed to make room at the cap.
    Reclaimed,
    /// Closed at the drain timeout.
    Closed,
}

/// Runs hyper on `socket` until the connection ends, following the server's phase,
/// the idle limit and the reclaim signal of its slot.
async fn serve_http<T>(
    builder: &auto::Builder<TokioExecutor>,
    socket: Socket<T>,
    router: Router,
    timeouts: Timeouts,
    slot: &Arc<Slot>,
    mut phases: watch::Receiver<Phase>,
    peer: std::net::SocketAddr,
) -> std::result::Result<Ended, Box<dyn std::error::Error + Send + Sync>>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let requests = Arc::clone(slot);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let router = router.clone();
        let slot = Arc::clone(&requests);
        async move {
            let in_flight = slot.request();
            let mut request = request;
            request.extensions_mut().insert(ClientAddr(peer.ip()));
            let request = request.map(|body| {
                Body::new(Progressing {
                    inner: body,
                    limit: timeouts.body_progress,
                    timer: Box::pin(tokio::time::sleep(timeouts.body_progress)),
                })
            });
            let response =
                match tokio::time::timeout(timeouts.request, router.oneshot(request)).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => request_timeout(),
                };
            slot.completed();
            Ok::<_, std::convert::Infallible>(response.map(|body| {
                Body::new(Answered {
                    inner: body,
                    _in_flight: in_flight,
                })
            }))
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(socket), service);
    let mut conn = std::pin::pin!(conn);
    let idle = idle_for(slot.in_flight(), timeouts.idle);
    let mut idle = std::pin::pin!(idle);
    let mut closing = false;
    // After an idle close starts, the peer has this long to take the GOAWAY (an HTTP/2
    // graceful close waits for the answer to a PING, which a silent peer never sends).
    let grace = tokio::time::sleep(Duration::MAX);
    let mut grace = std::pin::pin!(grace);
    loop {
        tokio::select! {
            served = conn.as_mut() => return served.map(|()| Ended::Done),
            () = &mut idle, if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
                grace.as_mut().reset(tokio::time::Instant::now() + timeouts.keepalive_timeout);
            }
            () = &mut grace => return Ok(Ended::Done),
            changed = phases.wait_for(move |p| *p == Phase::Closing || (!closing && *p == Phase::Draining)) => {
                match changed.map(|p| *p) {
                    Ok(Phase::Draining) => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    // Closing, or the server is gone.
                    _ => return Ok(Ended::Closed),
                }
            }
            () = slot.reclaimed() => return Ok(Ended::Reclaimed),
        }
    }
}
