//! `isek run --agent-card FILE|URL`: an A2A AgentCard loaded from a file or fetched
//! from an `http(s)://` URL, validated by [`isek::agent_card`] before the node
//! registers, and registered as `metadata.agent_card`.
//!
//! Why here and bounded: the card comes from outside the process (a file an operator
//! points at, an agent's own `/.well-known/agent-card.json`), so reading it is capped
//! at `--agent-card-max-bytes` and fetching it at `--agent-card-timeout`; a card that
//! is too large, slow, not JSON or not an AgentCard is refused in one line naming the
//! source and, for a malformed card, the field.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use isek::Metadata;
use serde_json::Value;

/// Default of `--agent-card-max-bytes`: 1 MiB, far above any real card.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;

/// Where a card comes from and the bounds on reading it.
#[derive(Debug, Clone)]
pub struct CardSource {
    /// A file path, or an `http://` / `https://` URL.
    pub source: String,
    /// Largest card accepted, in bytes.
    pub max_bytes: usize,
    /// Longest wait for a URL's whole answer.
    pub timeout: Duration,
}

impl CardSource {
    /// Loads and validates the card, and puts it into `metadata` as `agent_card`;
    /// refuses a `metadata` that carries a card already (one card, one source).
    pub async fn apply(&self, metadata: &mut Metadata) -> anyhow::Result<()> {
        if metadata.contains_key("agent_card") {
            bail!(
                "--metadata already has an agent_card; give the card once, with --agent-card or in --metadata"
            );
        }
        let card = self.load().await?;
        metadata.insert("agent_card".into(), card);
        Ok(())
    }

    /// The validated card.
    pub async fn load(&self) -> anyhow::Result<Value> {
        let is_url = self.source.starts_with("http://") || self.source.starts_with("https://");
        let bytes = if is_url {
            tokio::time::timeout(self.timeout, self.fetch())
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "no complete answer within {:?} (--agent-card-timeout)",
                        self.timeout
                    )
                })
                .and_then(|answer| answer)
        } else {
            read_file(Path::new(&self.source), self.max_bytes)
        }
        .with_context(|| format!("cannot load --agent-card {}", self.source))?;
        let card: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("--agent-card {} is not JSON", self.source))?;
        isek::agent_card::validate(&card)
            .with_context(|| format!("--agent-card {} is refused", self.source))?;
        Ok(card)
    }

    /// GETs the URL, reading at most `max_bytes` of the body.
    async fn fetch(&self) -> anyhow::Result<Vec<u8>> {
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .context("cannot build an HTTP client")?;
        let mut response = client
            .get(&self.source)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", innermost(&e)))?;
        let status = response.status();
        if !status.is_success() {
            bail!("the server answered HTTP {status}");
        }
        if response
            .content_length()
            .is_some_and(|length| length > self.max_bytes as u64)
        {
            bail!(too_large(self.max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| anyhow::anyhow!("{}", innermost(&e)))?
        {
            if body.len() + chunk.len() > self.max_bytes {
                bail!(too_large(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Reads at most `max_bytes` of `path`.
fn read_file(path: &Path, max_bytes: usize) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(max_bytes as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > max_bytes {
        bail!(too_large(max_bytes));
    }
    Ok(bytes)
}

/// The refusal of a card over the limit.
fn too_large(max_bytes: usize) -> String {
    format!("the card is larger than {max_bytes} bytes (--agent-card-max-bytes)")
}

/// The innermost cause of an error (e.g. "Connection refused"), without the wrappers.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}
