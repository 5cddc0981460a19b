//! The Registry conformance suite: the same checks against every backend.
//!
//! [`check_registry`] is the contract of [`isek::Registry`] written as code. Every
//! backend (the in-process `MemoryRegistry`, the center client against a real center,
//! etcd) runs it, so code tested against one backend behaves the same on the others.
//!
//! Each check gets a fresh registry from the caller's factory, and the checks run
//! concurrently, so the lease-based ones (which must wait for a TTL to pass) overlap
//! and the whole suite takes a few seconds. A failing suite reports every failed check
//! at once, each with the step that failed.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use isek::{Error, Metadata, NodeInfo, Registry};
use serde_json::json;

/// Lease length given to registries used by checks that must not see any expiry.
pub const LONG_TTL: Duration = Duration::from_secs(30);

/// Lease length given to registries used by the expiry checks.
///
/// Two seconds: etcd's smallest lease is about 1.5 s, and the margins of the expiry
/// checks are fractions of it, so shorter would make them sensitive to a busy machine.
pub const SHORT_TTL: Duration = Duration::from_secs(2);

/// How long an expired node may linger in listings before the check fails.
///
/// Generous on purpose: the suite checks that leases expire, not how fast (speed is
/// for benchmarks). etcd, for one, revokes expired leases in batches.
const EXPIRY_GRACE: Duration = Duration::from_secs(10);

/// What one check returns: `Err` names the step that went wrong.
type CheckResult = Result<(), String>;

/// Whether a backend's listing carries each node's lease deadline (`expires_at`).
/// Declared by the caller, so that a backend which stops reporting it fails the suite
/// instead of silently skipping the deadline checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadlines {
    /// Every listed node has `expires_at` (the center, the in-memory registry).
    Reported,
    /// No listed node has it (etcd: its keys carry leases, not deadlines, as the
    /// original's entries do).
    NotReported,
}

/// Runs the whole conformance suite; panics with every failed check if any fails.
///
/// `deadlines` says whether listings carry `expires_at`. `make(ttl)` must return a fresh, empty registry granting leases of `ttl` (it is
/// called once per check, with [`LONG_TTL`] or [`SHORT_TTL`]).
pub async fn check_registry<R, F, Fut>(deadlines: Deadlines, mut make: F)
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = R>,
    R: Registry,
{
    let list = make(LONG_TTL).await;
    let renew = make(LONG_TTL).await;
    let replace = make(LONG_TTL).await;
    let deregister = make(LONG_TTL).await;
    let unknown = make(LONG_TTL).await;
    let invalid = make(LONG_TTL).await;
    let concurrent = make(LONG_TTL).await;
    let expiry = make(SHORT_TTL).await;
    let restart = make(SHORT_TTL).await;
    let query = make(LONG_TTL).await;

    let results = tokio::join!(
        named("register and list", register_and_list(&list, deadlines)),
        named("renew", renew_keeps_entry(&renew)),
        named("re-register replaces", reregister_replaces(&replace)),
        named("deregister", deregister_removes(&deregister)),
        named("unknown node", unknown_node(&unknown)),
        named("invalid input", invalid_input(&invalid)),
        named(
            "concurrent registrations",
            concurrent_registrations(&concurrent)
        ),
        named("expiry", expiry_on_time(&expiry)),
        named(
            "re-register restarts the lease",
            reregister_restarts_lease(&restart, deadlines)
        ),
        named("filtered query", filtered_query(&query)),
    );
    let results = [
        results.0, results.1, results.2, results.3, results.4, results.5, results.6, results.7,
        results.8, results.9,
    ];
    let failures: Vec<String> = results
        .into_iter()
        .filter_map(|(name, result)| result.err().map(|why| format!("- {name}: {why}")))
        .collect();
    assert!(
        failures.is_empty(),
        "registry conformance failed:\n{}",
        failures.join("\n")
    );
}

/// Pairs a check's outcome with its name for the report.
async fn named(
    name: &'static str,
    check: impl Future<Output = CheckResult>,
) -> (&'static str, CheckResult) {
    (name, check.await)
}

/// A metadata object with nesting, arrays, numbers, booleans, null and non-ASCII text.
pub fn sample_metadata(name: &str) -> Metadata {
    let value = json!({
        "name": name,
        "url": format!("http://{name}.example:9000/a2a"),
        "card": {
            "skills": ["search", {"id": "summarize", "tags": ["text", null]}],
            "version": 3,
            "score": 0.75,
            "public": true
        },
        "note": "héllo wörld, 你好, 🚀",
    });
    match value {
        serde_json::Value::Object(map) => map,
        _ => Metadata::new(),
    }
}

/// Converts a registry call's error into a check failure naming the step.
fn step<T>(what: &str, result: isek::Result<T>) -> Result<T, String> {
    result.map_err(|e| format!("{what}: unexpected error {e:?}"))
}

/// Lists the registry, as a check step.
async fn list<R: Registry>(registry: &R, what: &str) -> Result<BTreeMap<String, NodeInfo>, String> {
    step(what, registry.get_available_nodes().await)
}

/// Fails unless `node` is listed under `id` with exactly these fields.
fn expect_node(
    nodes: &BTreeMap<String, NodeInfo>,
    id: &str,
    host: &str,
    port: u16,
    metadata: &Metadata,
    what: &str,
) -> CheckResult {
    let Some(node) = nodes.get(id) else {
        return Err(format!(
            "{what}: node '{id}' missing from listing (ids: {:?})",
            nodes.keys().collect::<Vec<_>>()
        ));
    };
    if node.node_id != id || node.host != host || node.port != port || &node.metadata != metadata {
        return Err(format!(
            "{what}: node '{id}' listed as {node:?}, expected host {host}, port {port}, metadata {metadata:?}"
        ));
    }
    Ok(())
}

/// Fails if `id` is listed.
fn expect_absent(nodes: &BTreeMap<String, NodeInfo>, id: &str, what: &str) -> CheckResult {
    if nodes.contains_key(id) {
        return Err(format!("{what}: node '{id}' is still listed"));
    }
    Ok(())
}

/// Fails unless `result` is the error variant `matches` accepts.
fn expect_error(
    what: &str,
    result: isek::Result<()>,
    expected: &str,
    matches: fn(&Error) -> bool,
) -> CheckResult {
    match result {
        Err(e) if matches(&e) => Ok(()),
        Err(e) => Err(format!("{what}: expected {expected}, got {e:?}")),
        Ok(()) => Err(format!("{what}: expected {expected}, got Ok")),
    }
}

/// A filtered query in pages of two walks exactly the nodes the filter matches in the
/// full listing (the same evaluator, wherever it runs), in id order, once each; an
/// unfiltered query lists everything; an unknown cursor is NotFound.
async fn filtered_query<R: Registry>(registry: &R) -> CheckResult {
    for i in 0..7u16 {
        let role = if i % 3 == 0 { "worker" } else { "planner" };
        let metadata = match json!({"role": role, "rank": i}) {
            serde_json::Value::Object(map) => map,
            _ => Metadata::new(),
        };
        step(
            &format!("register q{i}"),
            registry
                .register_node(&format!("q{i}"), "127.0.0.1", 7100 + i, metadata)
                .await,
        )?;
    }
    let filter = isek::Filter::compile(r#"metadata.role == "planner" && metadata.rank > 1"#)
        .map_err(|e| format!("compile: {e}"))?;
    let all = list(registry, "list before the query").await?;
    let expected: Vec<String> = filter
        .select(all.values())
        .into_iter()
        .map(|n| n.node_id.clone())
        .collect();
    let query = isek::Query::filter(filter).limit(2);
    let mut walked = Vec::new();
    let mut next = Some(query.clone());
    let mut pages = 0;
    while let Some(current) = next {
        let page = step("query page", registry.query(&current).await)?;
        pages += 1;
        if page.nodes.len() > 2 || pages > 10 {
            return Err(format!("page {pages} of limit 2 holds {:?}", page.nodes));
        }
        for node in &page.nodes {
            let listed = all.get(&node.node_id);
            if listed.is_none_or(|l| {
                l.host != node.host || l.port != node.port || l.metadata != node.metadata
            }) {
                return Err(format!("query answered {node:?}, listed as {listed:?}"));
            }
            walked.push(node.node_id.clone());
        }
        next = current.next(&page);
    }
    if walked != expected {
        return Err(format!(
            "pages walked {walked:?}, the filter matches {expected:?}"
        ));
    }
    let everything = step(
        "unfiltered query",
        registry.query(&isek::Query::default()).await,
    )?;
    let ids: Vec<&String> = everything.nodes.iter().map(|n| &n.node_id).collect();
    if ids != all.keys().collect::<Vec<_>>() || everything.cursor.is_some() {
        return Err(format!("an unfiltered query answered {ids:?}"));
    }
    let unknown = isek::Query {
        cursor: Some("no-such-cursor".into()),
        ..query
    };
    match registry.query(&unknown).await {
        Err(Error::NotFound(_)) => Ok(()),
        other => Err(format!(
            "an unknown cursor: expected NotFound, got {other:?}"
        )),
    }
}

/// Unix time now, in seconds.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Register two nodes, list them: every field round-trips, nothing else is listed.
async fn register_and_list<R: Registry>(registry: &R, deadlines: Deadlines) -> CheckResult {
    let empty = list(registry, "list of a fresh registry").await?;
    if !empty.is_empty() {
        return Err(format!("a fresh registry lists {} nodes", empty.len()));
    }
    let alpha = sample_metadata("alpha");
    let beta_id = "nœud-β 2";
    step(
        "register alpha",
        registry
            .register_node("alpha", "10.0.0.1", 8080, alpha.clone())
            .await,
    )?;
    step(
        "register beta (non-ASCII id, empty metadata)",
        registry
            .register_node(beta_id, "beta.example.org", 65535, Metadata::new())
            .await,
    )?;
    let before = unix_now();
    let nodes = list(registry, "list after two registrations").await?;
    if nodes.len() != 2 {
        return Err(format!(
            "expected 2 nodes, listed {:?}",
            nodes.keys().collect::<Vec<_>>()
        ));
    }
    expect_node(&nodes, "alpha", "10.0.0.1", 8080, &alpha, "list")?;
    expect_node(
        &nodes,
        beta_id,
        "beta.example.org",
        65535,
        &Metadata::new(),
        "list",
    )?;
    for node in nodes.values() {
        // A reported deadline is Unix seconds within one TTL from now (a loose bound:
        // this catches milliseconds or a relative value).
        match (deadlines, node.expires_at) {
            (Deadlines::Reported, Some(expires_at)) => {
                let latest = before + LONG_TTL.as_secs_f64() + 60.0;
                if !(expires_at > before - 60.0 && expires_at < latest) {
                    return Err(format!(
                        "node '{}' expires_at {expires_at} is not Unix seconds within one TTL of {before}",
                        node.node_id
                    ));
                }
            }
            (Deadlines::NotReported, None) => {}
            (expected, found) => {
                return Err(format!(
                    "node '{}': deadlines {expected:?}, but expires_at is {found:?}",
                    node.node_id
                ));
            }
        }
    }
    Ok(())
}

/// Renew succeeds on a registered node and leaves its entry unchanged.
async fn renew_keeps_entry<R: Registry>(registry: &R) -> CheckResult {
    let metadata = sample_metadata("renewed");
    step(
        "register",
        registry
            .register_node("renewed", "127.0.0.1", 9000, metadata.clone())
            .await,
    )?;
    for round in 0..3 {
        step(
            &format!("renew #{round}"),
            registry.lease_refresh("renewed").await,
        )?;
    }
    let nodes = list(registry, "list after renewals").await?;
    expect_node(
        &nodes,
        "renewed",
        "127.0.0.1",
        9000,
        &metadata,
        "list after renewals",
    )
}

/// Registering an existing id replaces its entry; there is still one entry.
async fn reregister_replaces<R: Registry>(registry: &R) -> CheckResult {
    step(
        "first register",
        registry
            .register_node("moving", "10.0.0.1", 1000, sample_metadata("old"))
            .await,
    )?;
    let new_metadata = sample_metadata("new");
    step(
        "second register",
        registry
            .register_node("moving", "10.0.0.2", 2000, new_metadata.clone())
            .await,
    )?;
    let nodes = list(registry, "list after re-register").await?;
    if nodes.len() != 1 {
        return Err(format!(
            "expected 1 node after re-register, listed {:?}",
            nodes.keys().collect::<Vec<_>>()
        ));
    }
    expect_node(
        &nodes,
        "moving",
        "10.0.0.2",
        2000,
        &new_metadata,
        "list after re-register",
    )?;
    step(
        "renew the replaced entry",
        registry.lease_refresh("moving").await,
    )
}

/// Deregister removes exactly that node, at once; a second deregister is NotFound.
async fn deregister_removes<R: Registry>(registry: &R) -> CheckResult {
    for (id, port) in [("stay", 7001), ("leave", 7002)] {
        step(
            &format!("register {id}"),
            registry
                .register_node(id, "127.0.0.1", port, Metadata::new())
                .await,
        )?;
    }
    step("deregister", registry.deregister_node("leave").await)?;
    let nodes = list(registry, "list after deregister").await?;
    expect_absent(&nodes, "leave", "list after deregister")?;
    expect_node(
        &nodes,
        "stay",
        "127.0.0.1",
        7001,
        &Metadata::new(),
        "list after deregister",
    )?;
    expect_error(
        "second deregister",
        registry.deregister_node("leave").await,
        "NotFound",
        |e| matches!(e, Error::NotFound(_)),
    )?;
    expect_error(
        "renew after deregister",
        registry.lease_refresh("leave").await,
        "NotFound",
        |e| matches!(e, Error::NotFound(_)),
    )?;
    // The id is free again.
    step(
        "register again after deregister",
        registry
            .register_node("leave", "127.0.0.1", 7003, Metadata::new())
            .await,
    )?;
    let nodes = list(registry, "list after registering again").await?;
    expect_node(
        &nodes,
        "leave",
        "127.0.0.1",
        7003,
        &Metadata::new(),
        "list after registering again",
    )
}

/// Renew and deregister of a node that never existed are NotFound.
async fn unknown_node<R: Registry>(registry: &R) -> CheckResult {
    expect_error(
        "renew unknown",
        registry.lease_refresh("ghost").await,
        "NotFound",
        |e| matches!(e, Error::NotFound(_)),
    )?;
    expect_error(
        "deregister unknown",
        registry.deregister_node("ghost").await,
        "NotFound",
        |e| matches!(e, Error::NotFound(_)),
    )?;
    let nodes = list(registry, "list after failed calls").await?;
    if !nodes.is_empty() {
        return Err(format!(
            "failed calls created nodes: {:?}",
            nodes.keys().collect::<Vec<_>>()
        ));
    }
    Ok(())
}

/// Malformed input is InvalidArgument and stores nothing.
async fn invalid_input<R: Registry>(registry: &R) -> CheckResult {
    let is_invalid: fn(&Error) -> bool = |e| matches!(e, Error::InvalidArgument(_));
    let cases: [(&str, &str, &str, u16); 8] = [
        ("register with empty node id", "", "127.0.0.1", 8000),
        (
            "register with a node id not in NFC",
            "cafe\u{301}",
            "127.0.0.1",
            8000,
        ),
        (
            "register with a zero-width space in node id",
            "n1\u{200b}",
            "127.0.0.1",
            8000,
        ),
        (
            "register with a BOM in node id",
            "\u{feff}n1",
            "127.0.0.1",
            8000,
        ),
        ("register with empty host", "empty-host", "", 8000),
        ("register with port 0", "port-zero", "127.0.0.1", 0),
        ("register with '/' in node id", "a/b", "127.0.0.1", 8000),
        (
            "register with a control character in node id",
            "bad\nid",
            "127.0.0.1",
            8000,
        ),
    ];
    for (what, id, host, port) in cases {
        expect_error(
            what,
            registry
                .register_node(id, host, port, Metadata::new())
                .await,
            "InvalidArgument",
            is_invalid,
        )?;
    }
    expect_error(
        "renew with empty node id",
        registry.lease_refresh("").await,
        "InvalidArgument",
        is_invalid,
    )?;
    expect_error(
        "deregister with empty node id",
        registry.deregister_node("").await,
        "InvalidArgument",
        is_invalid,
    )?;
    let nodes = list(registry, "list after invalid calls").await?;
    if !nodes.is_empty() {
        return Err(format!(
            "invalid calls created nodes: {:?}",
            nodes.keys().collect::<Vec<_>>()
        ));
    }
    Ok(())
}

/// Many registrations in flight at once are all kept.
async fn concurrent_registrations<R: Registry>(registry: &R) -> CheckResult {
    const COUNT: u16 = 64;
    let calls = (0..COUNT).map(|i| async move {
        let id = format!("node-{i:03}");
        let result = registry
            .register_node(&id, "127.0.0.1", 10_000 + i, sample_metadata(&id))
            .await;
        (id, result)
    });
    let results = futures::future::join_all(calls).await;
    for (id, result) in results {
        step(&format!("concurrent register {id}"), result)?;
    }
    let nodes = list(registry, "list after concurrent registrations").await?;
    if nodes.len() != usize::from(COUNT) {
        return Err(format!("expected {COUNT} nodes, listed {}", nodes.len()));
    }
    for i in 0..COUNT {
        let id = format!("node-{i:03}");
        expect_node(
            &nodes,
            &id,
            "127.0.0.1",
            10_000 + i,
            &sample_metadata(&id),
            "list",
        )?;
    }
    Ok(())
}

/// A node that is not renewed disappears after its TTL; one that is renewed stays.
async fn expiry_on_time<R: Registry>(registry: &R) -> CheckResult {
    let ttl = SHORT_TTL;
    step(
        "register mortal",
        registry
            .register_node("mortal", "127.0.0.1", 5001, Metadata::new())
            .await,
    )?;
    step(
        "register kept",
        registry
            .register_node("kept", "127.0.0.1", 5002, Metadata::new())
            .await,
    )?;
    let start = tokio::time::Instant::now();
    let nodes = list(registry, "list right after registering").await?;
    expect_node(
        &nodes,
        "mortal",
        "127.0.0.1",
        5001,
        &Metadata::new(),
        "list right after registering",
    )?;

    // Renew "kept" every quarter TTL until "mortal" is gone and at least two TTLs
    // have passed, checking both on every round.
    let mut mortal_gone_at = None;
    loop {
        tokio::time::sleep(ttl / 4).await;
        step("renew kept", registry.lease_refresh("kept").await)?;
        let nodes = list(registry, "list while renewing kept").await?;
        expect_node(
            &nodes,
            "kept",
            "127.0.0.1",
            5002,
            &Metadata::new(),
            "renewed node",
        )?;
        let elapsed = start.elapsed();
        if mortal_gone_at.is_none() && !nodes.contains_key("mortal") {
            mortal_gone_at = Some(elapsed);
        }
        if mortal_gone_at.is_none() && elapsed > ttl + EXPIRY_GRACE {
            return Err(format!(
                "node 'mortal' still listed {elapsed:?} after registering with a TTL of {ttl:?}"
            ));
        }
        if mortal_gone_at.is_some() && elapsed > ttl * 2 {
            break;
        }
    }
    expect_error(
        "renew expired node",
        registry.lease_refresh("mortal").await,
        "NotFound",
        |e| matches!(e, Error::NotFound(_)),
    )?;
    expect_error(
        "deregister expired node",
        registry.deregister_node("mortal").await,
        "NotFound",
        |e| matches!(e, Error::NotFound(_)),
    )?;
    // An expired id can be registered again.
    step(
        "register the expired id again",
        registry
            .register_node("mortal", "127.0.0.1", 5003, Metadata::new())
            .await,
    )?;
    let nodes = list(registry, "list after registering the expired id again").await?;
    expect_node(
        &nodes,
        "mortal",
        "127.0.0.1",
        5003,
        &Metadata::new(),
        "re-registered expired id",
    )
}

/// Registering an existing id gives it a full new TTL.
async fn reregister_restarts_lease<R: Registry>(registry: &R, deadlines: Deadlines) -> CheckResult {
    let ttl = SHORT_TTL;
    step(
        "first register",
        registry
            .register_node("phoenix", "127.0.0.1", 6001, Metadata::new())
            .await,
    )?;
    let first = list(registry, "list after first register").await?;
    tokio::time::sleep(ttl * 3 / 5).await;
    step(
        "second register",
        registry
            .register_node("phoenix", "127.0.0.1", 6002, Metadata::new())
            .await,
    )?;
    let second = list(registry, "list after second register").await?;
    if deadlines == Deadlines::Reported {
        let a = first.get("phoenix").and_then(|n| n.expires_at);
        let b = second.get("phoenix").and_then(|n| n.expires_at);
        match (a, b) {
            (Some(a), Some(b)) if b > a => {}
            _ => {
                return Err(format!(
                    "expires_at did not move forward on re-register: {a:?} then {b:?}"
                ));
            }
        }
    }
    // 1.2 TTL after the first registration: only the second lease keeps it alive.
    tokio::time::sleep(ttl * 3 / 5).await;
    let nodes = list(registry, "list 1.2 TTL after the first register").await?;
    expect_node(
        &nodes,
        "phoenix",
        "127.0.0.1",
        6002,
        &Metadata::new(),
        "re-registered node",
    )?;
    step(
        "renew re-registered node",
        registry.lease_refresh("phoenix").await,
    )
}
