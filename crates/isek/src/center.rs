//! [`IsekCenterRegistry`]: the HTTP client of an Isek Center.
//!
//! Speaks the original protocol (see [`crate::wire::center`]), so it works against our
//! center and against the original Python one. One `reqwest` client per registry keeps
//! connections alive between calls; timeouts default to the original client's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::credentials::Credentials;
use crate::error::root_cause;
use crate::identity::NodeIdentity;
use crate::query::{Page, Query};
use crate::wire::center::{
    AVAILABLE_NODES_PATH, AvailableNodes, DEREGISTER_PATH, Envelope, ListedNode, NODES_PATH,
    NodesPage, REGISTER_PATH, RENEW_PATH,
};
use crate::wire::proof::{DEREGISTER_OP, ProofRequest, RENEW_OP, RegisterData};
use crate::{Error, Metadata, NodeInfo, Registry, Result};

/// How to reach a center.
#[derive(Debug, Clone)]
pub struct CenterConfig {
    /// Base URL, e.g. `http://127.0.0.1:8088` (a trailing `/` is ignored).
    pub url: String,
    /// Further centers of the same registry, tried in turn when the current one is
    /// [`Error::Unavailable`] (refused connection, timeout, 502/503/504/429); the change
    /// stream resumes on them too.
    pub fallback_urls: Vec<String>,
    /// Timeout of register, deregister and list calls (original: 10 s).
    pub timeout: Duration,
    /// Timeout of renew calls (original: 5 s), shorter so a heartbeat fails fast.
    pub renew_timeout: Duration,
    /// Timeout for establishing a TCP connection.
    pub connect_timeout: Duration,
    /// PEM file of an extra CA to trust for `https://` centers (e.g. a private CA
    /// or a self-signed center certificate), besides the system roots.
    pub ca_file: Option<PathBuf>,
}

impl CenterConfig {
    /// The original client's timeouts against `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            fallback_urls: Vec::new(),
            timeout: Duration::from_secs(10),
            renew_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            ca_file: None,
        }
    }
}

/// A [`Registry`] backed by an Isek Center over HTTP.
#[derive(Debug, Clone)]
pub struct IsekCenterRegistry {
    /// Timeouts and the base URL without its trailing slash.
    config: CenterConfig,
    /// Every center's base URL (the first is `config.url`), without trailing slashes.
    urls: Arc<[String]>,
    /// Index in `urls` of the center that answered last; shared by clones.
    current: Arc<AtomicUsize>,
    /// Shared connection pool; cloning the registry shares it.
    http: reqwest::Client,
    /// The identity registrations are signed with and the lease tokens received
    /// (see [`crate::credentials`]); shared by clones.
    credentials: Arc<Credentials>,
}

impl IsekCenterRegistry {
    /// A client of the center at `url` with the original timeouts.
    pub fn new(url: impl Into<String>) -> Result<Self> {
        Self::with_config(CenterConfig::new(url))
    }

    /// A client with explicit timeouts.
    pub fn with_config(mut config: CenterConfig) -> Result<Self> {
        let mut urls = Vec::new();
        for url in std::iter::once(&config.url).chain(&config.fallback_urls) {
            let trimmed = url.trim_end_matches('/').to_owned();
            if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
                return Err(Error::InvalidArgument(format!(
                    "center URL '{url}' must start with http:// or https://"
                )));
            }
            urls.push(trimmed);
        }
        config.url = urls.first().cloned().unwrap_or_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            // Below the center's 30 s idle cut (its header-read timeout), so a pooled
            // connection is never reused just as the center closes it.
            .pool_idle_timeout(Duration::from_secs(20));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                Error::InvalidArgument(format!("cannot read CA file {}: {e}", path.display()))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::InvalidArgument(format!("CA file {} is not PEM: {e}", path.display()))
            })?;
            if certificates.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "CA file {} holds no certificate",
                    path.display()
                )));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Error::Backend(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            config,
            urls: urls.into(),
            current: Arc::new(AtomicUsize::new(0)),
            http,
            credentials: Arc::new(Credentials::default()),
        })
    }

    /// This client signing registrations with `identity` and proving ownership on
    /// renew and deregister with the lease token it receives (or a fresh signature
    /// for nodes it has no token for, e.g. registered by another process).
    pub fn with_identity(mut self, identity: NodeIdentity) -> Self {
        self.credentials = Arc::new(Credentials::new(Some(Arc::new(identity))));
        self
    }

    /// The lease token the center gave for `node_id`'s signed registration, if any.
    pub fn lease_token(&self, node_id: &str) -> Option<String> {
        self.credentials.token(node_id)
    }

    /// Deregisters any node with the operator's admin token
    /// (`Authorization: Bearer`), whoever owns it.
    pub async fn admin_deregister(&self, node_id: &str, admin_token: &str) -> Result<()> {
        let body = ProofRequest {
            node_id: node_id.to_owned(),
            ..ProofRequest::default()
        };
        self.failover(|base| {
            let url = format!("{base}{DEREGISTER_PATH}");
            let request = self
                .http
                .post(&url)
                .bearer_auth(admin_token.trim())
                .json(&body)
                .timeout(self.config.timeout);
            async move {
                let _: Envelope<serde_json::Value> = self.send(&url, request).await?;
                Ok(())
            }
        })
        .await
    }

    /// Runs `call` against the current center, and on [`Error::Unavailable`] against
    /// each other one in turn (once each); the first that answers becomes current.
    async fn failover<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let count = self.urls.len().max(1);
        let start = self.current.load(Ordering::Relaxed) % count;
        let mut last = None;
        for step in 0..count {
            let index = (start + step) % count;
            let base = self.urls.get(index).cloned().unwrap_or_default();
            match call(base).await {
                Err(Error::Unavailable(message)) => {
                    if count > 1 {
                        tracing::info!(center = %self.urls.get(index).map_or("", |u| u.as_str()), %message, "center unavailable; trying the next");
                    }
                    last = Some(Error::Unavailable(message));
                }
                other => {
                    self.current.store(index, Ordering::Relaxed);
                    return other;
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Unavailable("no center configured".into())))
    }

    /// A renew or deregister: token first; when the proof is refused and an identity
    /// is set, once more with a fresh signature (the token is stale because the node
    /// was re-registered elsewhere, or another process with the same key signed in
    /// the same millisecond, so this timestamp was not newer than its).
    async fn operation(
        &self,
        path: &str,
        op: &str,
        node_id: &str,
        timeout: Duration,
    ) -> Result<()> {
        let body = self.credentials.operation_body(op, node_id, false);
        match self.post(path, &body, timeout).await {
            Err(Error::PermissionDenied(_)) if self.credentials.identity().is_some() => {
                let body = self.credentials.operation_body(op, node_id, true);
                self.post(path, &body, timeout).await.map(drop)
            }
            other => other.map(drop),
        }
    }

    /// The base URL this client talks to (with several centers: the one that
    /// answered last).
    pub fn url(&self) -> &str {
        let index = self.current.load(Ordering::Relaxed);
        self.urls
            .get(index)
            .map_or(&self.config.url, |u| u.as_str())
    }

    /// Every center this client may talk to, in the order given.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// POSTs `body` as JSON to `path` and decodes the envelope.
    async fn post<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        self.failover(|base| {
            let url = format!("{base}{path}");
            let request = self.http.post(&url).json(body).timeout(timeout);
            async move {
                let envelope: Envelope<serde_json::Value> = self.send(&url, request).await?;
                Ok(envelope.data)
            }
        })
        .await
    }

    /// Sends a request, maps transport failures and non-200 envelopes to [`Error`].
    async fn send<T: DeserializeOwned>(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Envelope<T>> {
        let (status, bytes) = exchange(url, request).await?;
        decode(url, status, &bytes)
    }

    /// The `GET /v1/nodes` URL of `query`, its parameters URL-encoded.
    fn query_url(base: &str, query: &Query) -> Result<reqwest::Url> {
        let mut url = reqwest::Url::parse(&format!("{base}{NODES_PATH}"))
            .map_err(|e| Error::InvalidArgument(format!("center URL {base}: {e}")))?;
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(filter) = &query.filter {
                pairs.append_pair("filter", filter.source());
            }
            if let Some(limit) = query.limit {
                pairs.append_pair("limit", &limit.to_string());
            }
            if let Some(cursor) = &query.cursor {
                pairs.append_pair("cursor", cursor);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }
}

/// Sends `request` and reads the whole answer: its status and body.
async fn exchange(
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, bytes::Bytes)> {
    let response = request.send().await.map_err(|e| transport_error(url, &e))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport_error(url, &e))?;
    Ok((status, bytes))
}

/// Decodes an answer: the envelope of a 200, else the [`Error`] its status means.
fn decode<T: DeserializeOwned>(
    url: &str,
    status: reqwest::StatusCode,
    bytes: &[u8],
) -> Result<Envelope<T>> {
    if status.is_success() {
        let envelope: Envelope<T> = serde_json::from_slice(bytes)
            .map_err(|e| Error::Backend(format!("{url}: unexpected response body ({e})")))?;
        if envelope.code == 200 {
            return Ok(envelope);
        }
        return Err(status_error(envelope.code, envelope.message));
    }
    // Error bodies are envelopes from ISEK centers, but a proxy or the original's
    // HTML error pages are not: fall back to the status line.
    let message = serde_json::from_slice::<Envelope<serde_json::Value>>(bytes)
        .map(|e| e.message)
        .unwrap_or_else(|_| format!("{url} answered HTTP {status}"));
    Err(status_error(status.as_u16(), message))
}

/// Maps a status code (HTTP or envelope) to the error a caller can act on.
fn status_error(code: u16, message: String) -> Error {
    match code {
        404 => Error::NotFound(message),
        409 => Error::Conflict(message),
        401 | 403 => Error::PermissionDenied(message),
        400 | 405 | 411 | 413 | 415 | 422 => Error::InvalidArgument(message),
        429 | 502 | 503 | 504 => Error::Unavailable(message),
        _ => Error::Backend(format!("HTTP {code}: {message}")),
    }
}

/// Connection failures and timeouts are [`Error::Unavailable`], naming the URL and
/// the root cause (e.g. "Connection refused"), never a hang: every call has a timeout.
fn transport_error(url: &str, error: &reqwest::Error) -> Error {
    if error.is_timeout() {
        return Error::Unavailable(format!("{url}: no answer within the timeout"));
    }
    let cause = root_cause(error);
    if error.is_connect() {
        Error::Unavailable(format!("cannot connect to {url}: {cause}"))
    } else {
        Error::Unavailable(format!("{url}: {cause}"))
    }
}

#[async_trait]
impl Registry for IsekCenterRegistry {
    async fn register_node(
        &self,
        node_id: &str,
        host: &str,
        port: u16,
        metadata: Metadata,
    ) -> Result<()> {
        let body = self
            .credentials
            .register_body(node_id, host, port, metadata.clone());
        let data = match self.post(REGISTER_PATH, &body, self.config.timeout).await {
            // A signed registration is refused when its timestamp is not newer than
            // the last one the center accepted for the node, which another process
            // with the same key may have taken in the same millisecond: sign afresh once.
            Err(Error::PermissionDenied(_)) if self.credentials.identity().is_some() => {
                let body = self
                    .credentials
                    .register_body(node_id, host, port, metadata);
                self.post(REGISTER_PATH, &body, self.config.timeout).await?
            }
            other => other?,
        };
        if self.credentials.identity().is_some() {
            let token = serde_json::from_value::<RegisterData>(data)
                .ok()
                .map(|d| d.lease_token);
            self.credentials.set_token(node_id, token);
        }
        Ok(())
    }

    async fn lease_refresh(&self, node_id: &str) -> Result<()> {
        self.operation(RENEW_PATH, RENEW_OP, node_id, self.config.renew_timeout)
            .await
    }

    async fn deregister_node(&self, node_id: &str) -> Result<()> {
        self.operation(DEREGISTER_PATH, DEREGISTER_OP, node_id, self.config.timeout)
            .await?;
        self.credentials.set_token(node_id, None);
        Ok(())
    }

    async fn get_available_nodes(&self) -> Result<BTreeMap<String, NodeInfo>> {
        let envelope: Envelope<AvailableNodes> = self
            .failover(|base| {
                let url = format!("{base}{AVAILABLE_NODES_PATH}");
                let request = self.http.get(&url).timeout(self.config.timeout);
                async move { self.send(&url, request).await }
            })
            .await?;
        let mut nodes = BTreeMap::new();
        for (id, raw) in envelope.data.available_nodes {
            match serde_json::from_value::<ListedNode>(raw) {
                Ok(node) => {
                    let mut info = NodeInfo::new(node.node_id, node.host, node.port, node.metadata);
                    info.expires_at = Some(node.expires_at);
                    nodes.insert(id, info);
                }
                Err(e) => {
                    tracing::warn!(node_id = %id, error = %e, "skipping malformed node in listing")
                }
            }
        }
        Ok(nodes)
    }

    /// `GET /v1/nodes?filter=&limit=&cursor=`: the center evaluates the filter from its
    /// indexes. The original center has no such endpoint (404): the full listing is
    /// narrowed here by the same evaluator. A 410 (cursor unknown or expired) is
    /// [`Error::NotFound`]; a filter the center refuses is [`Error::InvalidArgument`]
    /// naming its line and column.
    async fn query(&self, query: &Query) -> Result<Page> {
        let (shown, status, bytes) = self
            .failover(|base| async move {
                let url = Self::query_url(&base, query)?;
                let shown = url.to_string();
                let request = self.http.get(url).timeout(self.config.timeout);
                let (status, bytes) = exchange(&shown, request).await?;
                if matches!(status.as_u16(), 429 | 502 | 503 | 504) {
                    return Err(Error::Unavailable(format!(
                        "{shown} answered HTTP {status}"
                    )));
                }
                Ok((shown, status, bytes))
            })
            .await?;
        match status.as_u16() {
            404 => {
                let nodes = self.get_available_nodes().await?;
                return crate::query::evaluate(nodes, query);
            }
            410 => {
                let message = serde_json::from_slice::<Envelope<serde_json::Value>>(&bytes)
                    .map(|e| e.message)
                    .unwrap_or_else(|_| "the cursor is unknown or expired".to_owned());
                return Err(Error::NotFound(message));
            }
            _ => {}
        }
        let page: Envelope<NodesPage> = decode(&shown, status, &bytes)?;
        Ok(Page {
            nodes: page
                .data
                .nodes
                .into_values()
                .map(|node| NodeInfo::new(node.node_id, node.host, node.port, node.metadata))
                .collect(),
            cursor: page.data.cursor,
            plan: page.data.plan,
            revision: Some(page.data.revision),
            local: false,
        })
    }

    /// The center's change stream (`GET /v1/watch`, see [`crate::changefeed`]);
    /// `Ok(None)` from a center without one (the original Python center), so the
    /// caller polls instead.
    async fn watch_nodes(&self) -> Result<Option<crate::NodeEventStream>> {
        crate::changefeed::open(
            self.http.clone(),
            self.urls.to_vec(),
            self.current.load(Ordering::Relaxed),
            self.config.timeout,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_what_the_caller_can_do() {
        let m = || "msg".to_owned();
        assert_eq!(status_error(404, m()), Error::NotFound(m()));
        assert_eq!(status_error(409, m()), Error::Conflict(m()));
        assert_eq!(status_error(403, m()), Error::PermissionDenied(m()));
        assert_eq!(status_error(400, m()), Error::InvalidArgument(m()));
        assert_eq!(status_error(413, m()), Error::InvalidArgument(m()));
        assert_eq!(status_error(415, m()), Error::InvalidArgument(m()));
        assert_eq!(status_error(503, m()), Error::Unavailable(m()));
        assert_eq!(
            status_error(500, m()),
            Error::Backend("HTTP 500: msg".to_owned())
        );
    }

    #[test]
    fn urls_must_be_http_and_lose_their_trailing_slash() {
        let client = IsekCenterRegistry::new("http://127.0.0.1:8088/");
        assert_eq!(
            client.map(|c| c.url().to_owned()),
            Ok("http://127.0.0.1:8088".to_owned())
        );
        assert!(matches!(
            IsekCenterRegistry::new("127.0.0.1:8088"),
            Err(Error::InvalidArgument(_))
        ));
    }
}
