//! The expiry guard with real processes: an `isek center` (2 s leases) frozen with
//! SIGSTOP for three TTLs under running `isek run` nodes and an `isek watch`, then
//! resumed with SIGCONT.
//!
//! - Guard on (the default): no node expires and the watcher sees no leave (the
//!   guard's gap is in the log and in `/metrics`).
//! - Guard off (`--expiry-guard off`, today's behaviour before the guard): the
//!   waking reaper expires them all; the control that the freeze really outlasts
//!   the leases.
//! - A third of the nodes killed with `kill -9` as the center freezes (gone when
//!   renewals flow again): `/v1/nodes` shows their `guarded_until`, at most a TTL
//!   after the resume, and they expire by it; the others stay.
//!
//! Waits are bounded; the freeze itself is a fault's duration, not an assertion.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use harness::fault::{
    Center, Proc, TTL, WAIT, apply_watch_line, eventually, ids, json_watcher, register,
    start_nodes, unix,
};
use serde_json::Value;

/// The lease length, as a duration.
fn ttl() -> Duration {
    Duration::from_secs(TTL.parse().unwrap())
}

/// `GET url` (text), on a runtime of its own.
fn get(url: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}

/// The value of the Prometheus series `name` (exact, labels included).
fn metric(url: &str, name: &str) -> f64 {
    let text = get(&format!("{url}/metrics"));
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// A center, `count` nodes and a watcher that saw them all join.
fn scene(args: &[&str], first_port: u16, count: u16) -> (Center, Vec<(Proc, String)>, Proc) {
    let mut argv = vec![
        "center",
        "--listen",
        "127.0.0.1:0",
        "--lease-ttl",
        TTL,
        "--in-memory",
    ];
    argv.extend_from_slice(args);
    let mut proc = Proc::spawn("center", &argv);
    let line = proc.line("listening", |text| {
        text.starts_with("isek center listening on ")
    });
    let url = line.text["isek center listening on ".len()..].to_owned();
    let center = Center { proc, url };
    let nodes = start_nodes(&center.url, first_port, count);
    let mut watcher = json_watcher(&center.url);
    let mut members = BTreeSet::new();
    while members != ids(&nodes) {
        let line = watcher.line("a join", |_| true);
        apply_watch_line(&mut members, &line.text);
    }
    (center, nodes, watcher)
}

/// Freezes the center for three TTLs; when it resumed.
fn freeze(center: &Center) -> SystemTime {
    center.proc.signal("STOP");
    std::thread::sleep(ttl() * 3);
    center.proc.signal("CONT");
    SystemTime::now()
}

/// Registers `marker` and reads the watcher up to its join: every event before it
/// is then in the watcher's transcript.
fn flush(center: &Center, watcher: &mut Proc, marker: &str, port: u16) -> Vec<String> {
    register(&center.url, marker, port);
    let quoted = format!("\"{marker}\"");
    watcher.line("the marker's join", |text| text.contains(&quoted));
    watcher.seen.clone()
}

/// Leave lines of the watcher's transcript, by node id.
fn leaves(lines: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .filter_map(|text| serde_json::from_str::<Value>(text).ok())
        .filter(|event| event["event"] == "leave")
        .map(|event| event["node"]["node_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_center_frozen_for_three_ttls_expires_none_of_its_nodes() {
    let (center, nodes, mut watcher) = scene(&[], 9500, 4);
    let url = center.url.clone();
    freeze(&center);
    // Every node renews or registers again; none of them is guarded any more.
    eventually(
        "every node renewed after the resume",
        || {
            let body: Value = serde_json::from_str(&get(&format!("{url}/v1/nodes"))).unwrap();
            let listed = body["data"]["nodes"].as_object().unwrap();
            listed.len() == nodes.len()
                && listed
                    .values()
                    .all(|node| node.get("guarded_until").is_none())
        },
        || center.proc.transcript(),
    );
    let seen = flush(&center, &mut watcher, "marker", 9599);
    assert_eq!(leaves(&seen), BTreeSet::new(), "{}", watcher.transcript());
    assert_eq!(metric(&url, "isek_expire_total{outcome=\"ok\"}"), 0.0);
    assert!(metric(&url, "isek_expiry_guard_gaps_total") >= 1.0);
    assert!(metric(&url, "isek_expiry_guard_gap_seconds_total") >= ttl().as_secs_f64() * 2.0);
    assert!(metric(&url, "isek_expiry_guard_leases_total") >= nodes.len() as f64);
    let log = center.proc.stderr.lock().unwrap().clone();
    assert!(log.contains("the center was not running"), "{log}");
}

#[test]
fn with_the_guard_off_a_frozen_center_expires_every_node() {
    let (center, nodes, mut watcher) = scene(&["--expiry-guard", "off"], 9600, 4);
    let url = center.url.clone();
    freeze(&center);
    eventually(
        "the waking reaper expired every node",
        || metric(&url, "isek_expire_total{outcome=\"ok\"}") >= nodes.len() as f64,
        || center.proc.transcript(),
    );
    let seen = flush(&center, &mut watcher, "marker", 9699);
    assert_eq!(leaves(&seen), ids(&nodes), "{}", watcher.transcript());
    assert_eq!(metric(&url, "isek_expiry_guard_gaps_total"), 0.0);
}

#[test]
fn nodes_killed_as_the_center_froze_still_expire_within_a_ttl_of_the_resume() {
    let (center, mut nodes, mut watcher) = scene(&[], 9700, 6);
    let url = center.url.clone();
    let killed: BTreeSet<String> = nodes[..2].iter().map(|(_, id)| id.clone()).collect();
    // Killed just before the freeze, so that no request of theirs is still queued
    // in the center's sockets (one sent during the freeze would renew them when it
    // resumes): gone for the whole gap and after it.
    for (node, _) in &mut nodes[..2] {
        node.kill_9();
    }
    let resumed = freeze(&center);
    // The killed nodes are held by the guard, visibly, at most a TTL past the
    // resume (the leases of the others are renewed meanwhile).
    let listing: Value = serde_json::from_str(&get(&format!("{url}/v1/nodes"))).unwrap();
    let guarded: BTreeSet<String> = listing["data"]["nodes"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(id, node)| {
            let until = node.get("guarded_until")?.as_f64()?;
            assert!(
                until <= unix(resumed) + ttl().as_secs_f64() + 0.5,
                "{id} guarded until {until}, resumed at {}",
                unix(resumed)
            );
            Some(id.clone())
        })
        .collect();
    assert!(
        guarded.is_superset(&killed),
        "{listing}\n{}",
        center.proc.transcript()
    );
    // They expire (their leave on the watcher); the others stay.
    let mut left = BTreeSet::new();
    while left != killed {
        let (at, event) = watcher.json_line("a leave", |e| e["event"] == "leave");
        let id = event["node"]["node_id"].as_str().unwrap().to_owned();
        assert!(killed.contains(&id), "{id} left\n{}", watcher.transcript());
        // Within the lease plus the guard's bound (one TTL past the resume), with
        // slack for the watcher's delivery on a loaded machine.
        let after = at.duration_since(resumed).unwrap_or_default();
        assert!(
            after <= ttl() * 2 + WAIT / 4,
            "{id} left {after:?} after the resume"
        );
        left.insert(id);
    }
    let seen = flush(&center, &mut watcher, "marker", 9799);
    assert_eq!(leaves(&seen), killed, "{}", watcher.transcript());
    assert_eq!(
        metric(&url, "isek_expire_total{outcome=\"ok\"}"),
        killed.len() as f64
    );
}
