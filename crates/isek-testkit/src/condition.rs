//! Waiting for a condition instead of sleeping: [`wait_until`] polls a check, and
//! [`wait_state`] / [`record_states`] follow a node runtime's published state.
//!
//! Every wait is bounded by [`DEADLINE`], so a hang fails the test with a message
//! naming what it waited for, and nothing asserts on elapsed time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use isek::runtime::{NodeHandle, NodeState};

/// How long any awaited condition may take before the test fails: generous, because
/// the machine running the suite may be loaded; a passing wait ends as soon as its
/// condition holds.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `condition` every 20 ms until it holds; fails the test after [`DEADLINE`].
#[allow(clippy::panic)]
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the node's state satisfies `condition`; returns that state.
#[allow(clippy::panic)]
pub async fn wait_state(
    handle: &NodeHandle,
    what: &str,
    condition: impl Fn(&NodeState) -> bool,
) -> NodeState {
    let mut states = handle.states();
    let result = tokio::time::timeout(DEADLINE, states.wait_for(|s| condition(s))).await;
    match result {
        Ok(Ok(state)) => state.clone(),
        _ => panic!(
            "timed out waiting until {what}; state is {:?}",
            handle.state()
        ),
    }
}

/// Records every state the node publishes from now on (a watch channel may coalesce
/// quick successions, so this shows states that lasted, not necessarily all).
pub fn record_states(handle: &NodeHandle) -> Arc<Mutex<Vec<NodeState>>> {
    let history = Arc::new(Mutex::new(Vec::new()));
    let mut states = handle.states();
    let sink = history.clone();
    tokio::spawn(async move {
        while states.changed().await.is_ok() {
            let state = states.borrow_and_update().clone();
            if let Ok(mut history) = sink.lock() {
                history.push(state);
            }
        }
    });
    history
}
