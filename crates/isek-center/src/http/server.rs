//! Serving: [`app`] builds the router and its [`Center`]; [`run`] serves it on a
//! listener until a shutdown signal, then stops cleanly (the center's life cycle is the
//! center's; this only orders it around the accept loop).

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

use crate::center::Center;
use crate::config::Config;
use crate::error::Result;

/// Starts a center (store opened and loaded, writer and reaper running) and returns
/// its router, for serving or for driving with `tower::ServiceExt::oneshot` in tests.
pub async fn app(config: Config) -> Result<(Router, Center)> {
    let center = Center::start(config).await?;
    Ok((super::handlers::router(center.clone()), center))
}

/// Serves a center on `listener` until `shutdown` completes, then stops accepting,
/// lets in-flight requests finish, flushes and closes the store.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    run_announced(listener, config, shutdown, |_| {}).await
}

/// [`run`], calling `ready` with the bound address once the center takes every
/// request, signed ones included: the store is loaded and the replay floor set. Why:
/// whoever announces the address (the CLI's "listening" line) must not do it before,
/// or a node that signs as soon as it reads the line is refused as "signed before this
/// center started".
pub async fn run_announced(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<()> {
    // Certificate problems are configuration errors, found before the store opens.
    let tls = config
        .tls
        .as_ref()
        .map(|files| super::transport::tls_acceptor(&files.cert, &files.key))
        .transpose()?;
    let timeouts = config.timeouts;
    let limits = config.connections;
    let mut config = config;
    if let (Some(cluster), Ok(addr)) = (&mut config.cluster, listener.local_addr()) {
        // The other centers of a cluster reach this one where it listens, unless told.
        let scheme = if tls.is_some() { "https" } else { "http" };
        cluster
            .advertise
            .get_or_insert_with(|| format!("{scheme}://{addr}"));
    }
    let (router, center) = app(config).await?;
    let (stop_forwarding, forwarding_stopped) = tokio::sync::oneshot::channel::<()>();
    let forwarder = tokio::spawn(super::peers::forward(center.clone(), async move {
        let _ = forwarding_stopped.await;
    }));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "isek center listening");
        ready(addr);
    }
    // Change streams never end on their own: close them when shutdown starts, or the
    // graceful shutdown would wait for every watcher to hang up.
    let watched = center.clone();
    let shutdown = async move {
        shutdown.await;
        watched.close_watchers();
    };
    let metrics = std::sync::Arc::clone(center.metrics());
    let served =
        super::transport::serve(listener, router, tls, timeouts, limits, metrics, shutdown).await;
    tracing::info!("no longer accepting; closing the store");
    let _ = stop_forwarding.send(());
    let _ = forwarder.await;
    let closed = center.shutdown().await;
    served.and(closed)
}
