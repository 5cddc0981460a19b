//! The node runtime's own faults and lifecycle, with real processes: `isek center`,
//! `isek run` nodes and `isek watch` watchers as children of the test, signalled with
//! kill(1) (`-9`, `-TERM`, `-INT`).
//!
//! - A node killed with `kill -9` leaves at its lease deadline, not before; one stopped
//!   with SIGTERM is gone from the listing as soon as its process exited.
//! - `isek watch` prints the current set, joins, updates and leaves.
//! - `isek run` refused for good exits 1 with one line on stderr; started before its
//!   center, it registers once the center is up; its TTL flags must agree.
//!
//! Faults of the center are in `runtime_faults.rs`; the children and waits in
//! `harness/fault.rs`. Every wait is bounded; nothing asserts on elapsed time, only on
//! order (a leave is never seen before the lease deadline).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use harness::ISEK;
use harness::fault::{Center, Proc, data_dir, json_watcher, list, register, run_node, strs, unix};
use serde_json::Value;

#[test]
fn killed_node_leaves_at_its_deadline_and_stopped_node_at_once() {
    let center = Center::start(&["--in-memory"]);
    let url = center.url.clone();
    let mut watcher = json_watcher(&url);
    watcher.json_line("live", |v| v["event"] == "live" && v["source"] == "stream");
    let mut victim = run_node(&url, 9300, &["--node-id", "victim"]);
    let mut quitter = run_node(&url, 9301, &["--node-id", "quitter", "--json"]);
    victim.line("registered", |text| {
        text == "registered victim 127.0.0.1:9300"
    });
    quitter.json_line("registered", |v| {
        v["state"] == "registered" && v["node_id"] == "quitter" && v["since"].is_f64()
    });
    // Both may join in one poll, in either order.
    let mut joined = BTreeSet::new();
    while joined.len() < 2 {
        let (_, join) = watcher.json_line("join", |v| v["event"] == "join");
        joined.insert(join["node"]["node_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        joined,
        BTreeSet::from(["quitter".to_owned(), "victim".to_owned()])
    );

    // Crash: no deregistration, the entry stays until its lease runs out.
    let deadline_before_kill = list(&url)["victim"].expires_at.unwrap();
    victim.kill_9();
    let (seen_at, leave) = watcher.json_line("victim leaves", |v| {
        v["event"] == "leave" && v["node"]["node_id"] == "victim"
    });
    // The lease deadline only moves later with renewals, and listings may show a
    // deadline older than the real one, never a later one: so the leave cannot be
    // seen before either deadline (the watcher's last known one is there when it
    // polls; a change stream's entries may not carry one).
    // (A few milliseconds of slack for the float conversions on both sides.)
    let last_known_deadline = leave["node"]["expires_at"]
        .as_f64()
        .unwrap_or(deadline_before_kill)
        .max(deadline_before_kill);
    assert!(
        unix(seen_at) + 0.005 >= last_known_deadline,
        "victim seen leaving at {} before its lease deadline {last_known_deadline}",
        unix(seen_at)
    );
    assert!(!list(&url).contains_key("victim"));

    // Clean stop: deregistered before the process exits.
    quitter.signal("TERM");
    let status = quitter.wait();
    assert!(status.success(), "{status}\n{}", quitter.transcript());
    let last: Value = serde_json::from_str(quitter.seen.last().unwrap()).unwrap();
    assert_eq!(
        last,
        serde_json::json!({"state": "stopped", "node_id": "quitter"})
    );
    assert!(
        !list(&url).contains_key("quitter"),
        "quitter still listed after a clean exit"
    );
    assert!(
        quitter.stderr.lock().unwrap().is_empty(),
        "{}",
        quitter.transcript()
    );
    watcher.json_line("quitter leaves", |v| {
        v["event"] == "leave" && v["node"]["node_id"] == "quitter"
    });

    watcher.signal("INT");
    let status = watcher.wait();
    assert!(status.success(), "{status}\n{}", watcher.transcript());
}

#[test]
fn watch_prints_the_current_set_then_joins_updates_and_leaves() {
    // A long lease: the nodes registered directly are not renewed.
    let center = Center::start_with_ttl("30", &["--in-memory"]);
    let url = center.url.clone();
    register(&url, "early", 7000);
    let mut watcher = Proc::spawn(
        "watch",
        &["watch", "--poll-interval", "0.2", "--center", &url],
    );
    watcher.line("current set", |text| text == "+ early 127.0.0.1:7000");
    // Our center has a change stream: a watcher that fell back to polling fails here.
    watcher.line("live", |text| text == "# live (change stream), 1 nodes");
    // Nothing else was printed in between.
    assert_eq!(watcher.seen.len(), 2, "{}", watcher.transcript());

    let mut late = run_node(&url, 7001, &["--node-id", "late"]);
    late.line("registered", |text| text.starts_with("registered late "));
    watcher.line("join", |text| text == "+ late 127.0.0.1:7001");
    register(&url, "early", 7002);
    watcher.line("update", |text| text == "~ early 127.0.0.1:7002 (address)");

    late.signal("INT");
    assert!(late.wait().success(), "{}", late.transcript());
    assert_eq!(late.seen.last().map(String::as_str), Some("stopped late"));
    watcher.line("leave", |text| text == "- late");

    watcher.signal("TERM");
    let status = watcher.wait();
    assert!(status.success(), "{status}\n{}", watcher.transcript());
    assert!(
        watcher.stderr.lock().unwrap().is_empty(),
        "{}",
        watcher.transcript()
    );
}

#[test]
fn run_refused_for_good_fails_and_run_before_the_center_waits_for_it() {
    let center = Center::start(&["--in-memory"]);
    let mut refused = run_node(&center.url, 9400, &["--node-id", "a/b"]);
    let status = refused.wait();
    assert_eq!(status.code(), Some(1), "{}", refused.transcript());
    assert!(refused.seen.is_empty(), "{}", refused.transcript());
    let stderr = refused.stderr.lock().unwrap().clone();
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with("error: the registry refused node 'a/b': invalid argument:"),
        "{stderr:?}"
    );

    // A node started while its center is down keeps trying, and registers once the
    // center is up.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let mut early = run_node(&url, 9401, &["--node-id", "early-bird"]);
    early.line("lost", |text| {
        text.starts_with("lost early-bird (attempt 1): unavailable")
    });
    let late_center = Center::restart_at(&url, &["--in-memory"]);
    early.line("registered", |text| {
        text == "registered early-bird 127.0.0.1:9401"
    });
    assert!(list(&late_center.url).contains_key("early-bird"));
    let mut orphan = run_node(&url, 9402, &["--node-id", "orphan"]);
    orphan.line("registered", |text| text.starts_with("registered orphan "));
    early.signal("TERM");
    assert!(early.wait().success(), "{}", early.transcript());
    assert_eq!(
        early.seen.last().map(String::as_str),
        Some("stopped early-bird")
    );
    // Retries were reported on stdout, nothing on stderr.
    assert!(
        early.stderr.lock().unwrap().is_empty(),
        "{}",
        early.transcript()
    );
    assert_eq!(list(&url).keys().collect::<Vec<_>>(), ["orphan"]);

    // A node that cannot deregister at shutdown says so: exit 1, one line on stderr.
    let mut late_center = late_center;
    late_center.proc.kill_9();
    orphan.signal("TERM");
    let status = orphan.wait();
    assert_eq!(status.code(), Some(1), "{}", orphan.transcript());
    let stderr = orphan.stderr.lock().unwrap().clone();
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with("error: cannot deregister node 'orphan' (its entry expires with its lease): unavailable:"),
        "{stderr:?}"
    );
}

#[test]
fn run_ttl_flags_must_agree() {
    // Checked before anything is contacted: nothing listens on this endpoint.
    let output = Command::new(ISEK)
        .args([
            "run",
            "--etcd",
            "http://127.0.0.1:1",
            "--host",
            "h",
            "--port",
            "1",
        ])
        .args(["--ttl", "2", "--lease-ttl", "3"])
        .env_remove("ISEK_CENTER")
        .env_remove("ISEK_ETCD")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        stderr,
        "error: --ttl and --lease-ttl disagree (2s vs 3s); give one\n"
    );
}

/// While its center is gone, `isek watch` says it is stale and keeps the nodes it
/// knew: no leave is printed for them, and when the center is back with the same
/// nodes, the watcher is live again without a leave or a join in between.
#[test]
fn watch_prints_stale_and_keeps_the_last_known_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let store = data_dir(dir.path(), "store");
    // Long leases: the directly registered nodes outlive the outage.
    let mut center = Center::start_with_ttl("30", &strs(&store));
    let url = center.url.clone();
    register(&url, "kept-a", 7100);
    register(&url, "kept-b", 7101);
    let mut watcher = json_watcher(&url);
    watcher.json_line("live", |v| v["event"] == "live" && v["nodes"] == 2);
    let before = watcher.seen.len();

    center.proc.kill_9();
    let (_, stale) = watcher.json_line("stale", |v| v["event"] == "stale");
    assert!(
        stale["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{stale}"
    );
    assert!(stale["since"].as_f64().is_some(), "{stale}");

    // Back on the same address and directory, with the same two nodes.
    let _restarted = Center::restart_at_with_ttl(&url, "30", &strs(&store));
    let (_, live) = watcher.json_line("live again", |v| v["event"] == "live");
    assert_eq!(live["nodes"], 2, "{live}");
    assert_eq!(live["source"], "stream", "{live}");
    // Between the first live and this one: only the stale line (and perhaps more
    // stale lines as its error changed), never a leave or a join.
    let between = &watcher.seen[before..watcher.seen.len() - 1];
    for text in between {
        let event: Value = serde_json::from_str(text).unwrap();
        assert_eq!(event["event"], "stale", "{}", watcher.transcript());
    }
}
