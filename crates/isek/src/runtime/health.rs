//! [`HealthCheck`]: the agent's own health check, which a [`super::Node`]'s lease is
//! tied to.
//!
//! Why: a node runtime that renews whatever happens keeps a hung agent listed. With a
//! check, a background task probes the agent every `interval` (an HTTP GET that must
//! answer 2xx within `timeout`, or a shell command that must exit 0 within it). After
//! `failures` consecutive failures the agent counts as unhealthy: the node stops
//! renewing and **deregisters**, so peers see it leave at once (not a TTL later), and
//! it is [`super::NodeState::Unhealthy`]. The first passing check registers it again.
//! A node thus leaves at most `failures × interval + timeout` (plus one deregister
//! call) after its agent stops answering.

use std::time::Duration;

use tokio::sync::watch;

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// GET this `http://` or `https://` URL; healthy when it answers 2xx.
    Http(String),
    /// Run this command with `sh -c`; healthy when it exits 0.
    Command(String),
}

impl Probe {
    /// An `http(s)://` URL is an HTTP probe, anything else a shell command.
    pub fn parse(text: &str) -> Probe {
        if text.starts_with("http://") || text.starts_with("https://") {
            Probe::Http(text.to_owned())
        } else {
            Probe::Command(text.to_owned())
        }
    }
}

/// A health check and its pace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// What to probe.
    pub probe: Probe,
    /// Time between two checks (default 5 s).
    pub interval: Duration,
    /// Longest one check may take; a slower one fails (default 2 s).
    pub timeout: Duration,
    /// Consecutive failures after which the node deregisters (default 3, at least 1).
    pub failures: u32,
}

impl HealthCheck {
    /// `probe` every 5 s, 2 s to answer, unhealthy after 3 failures in a row.
    pub fn new(probe: Probe) -> Self {
        Self {
            probe,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            failures: 3,
        }
    }

    /// Runs the probe once: `Err` says why it failed.
    pub async fn check(&self, http: &reqwest::Client) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.probe_once(http)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    /// The probe without its deadline.
    async fn probe_once(&self, http: &reqwest::Client) -> Result<(), String> {
        match &self.probe {
            Probe::Http(url) => {
                let response = http
                    .get(url)
                    .timeout(self.timeout)
                    .send()
                    .await
                    .map_err(|e| format!("{url}: {}", crate::error::root_cause(&e)))?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("{url} answered HTTP {status}"))
                }
            }
            Probe::Command(command) => {
                let status = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(command)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    // A check that overruns its timeout is dropped, and killed with it.
                    .kill_on_drop(true)
                    .status()
                    .await
                    .map_err(|e| format!("cannot run `{command}`: {e}"))?;
                if status.success() {
                    Ok(())
                } else {
                    Err(format!("`{command}` exited with {status}"))
                }
            }
        }
    }
}

/// What the checker tells the node's keeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Health {
    /// Fewer than `failures` checks in a row failed.
    pub healthy: bool,
    /// Consecutive failures when it turned unhealthy.
    pub failures: u32,
    /// The last failure's reason, when unhealthy.
    pub last_error: Option<String>,
}

/// Starts the checker task: healthy at first, then one check every `interval`; the
/// receiver changes only when the verdict flips. The task ends when every receiver is
/// gone (the keeper stopped).
pub(crate) fn spawn(check: HealthCheck) -> watch::Receiver<Health> {
    let (tx, rx) = watch::channel(Health {
        healthy: true,
        failures: 0,
        last_error: None,
    });
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let threshold = check.failures.max(1);
        let mut failed = 0u32;
        loop {
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(check.interval) => {}
            }
            let outcome = tokio::select! {
                () = tx.closed() => return,
                outcome = check.check(&http) => outcome,
            };
            match outcome {
                Ok(()) => {
                    failed = 0;
                    tx.send_if_modified(|health| {
                        let flip = !health.healthy;
                        if flip {
                            tracing::info!("health check passes again");
                            *health = Health {
                                healthy: true,
                                failures: 0,
                                last_error: None,
                            };
                        }
                        flip
                    });
                }
                Err(why) => {
                    failed = failed.saturating_add(1);
                    tracing::warn!(failed, reason = %why, "health check failed");
                    if failed >= threshold {
                        tx.send_if_modified(|health| {
                            let flip = health.healthy;
                            if flip {
                                *health = Health {
                                    healthy: false,
                                    failures: failed,
                                    last_error: Some(why),
                                };
                            }
                            flip
                        });
                    }
                }
            }
        }
    });
    rx
}
