//! The node runtime through faults of its center, with real processes: `isek
//! center` (or etcd) and `isek run` nodes as children of the test, signalled with
//! kill(1) (`-9`, `-STOP`/`-CONT`).
//!
//! - A center killed with `kill -9` and restarted empty on the same address: every
//!   node registers again, and a watcher converges to the truth.
//! - A center frozen longer than the TTL, then resumed: every node notices the lost
//!   lease, registers again, and the listing holds each node once.
//! - etcd restarted under running nodes: they come back.
//!
//! The nodes' own faults are in `node_faults.rs`; the children and waits in
//! `harness/fault.rs`. Leases are 2 s so the faults play out in a few seconds. Every
//! wait is bounded (a hang fails the test with the children's output); nothing asserts
//! on elapsed time, only on order.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use harness::fault::{
    Center, Proc, TTL, WAIT, apply_watch_line, assert_listing_is, data_dir, eventually, ids,
    json_watcher, register, start_nodes, strs, try_list,
};
use isek::{NodeInfo, Registry};

#[test]
fn center_killed_and_restarted_empty_gets_every_node_back() {
    let dir = tempfile::tempdir().unwrap();
    let first = data_dir(dir.path(), "first");
    let mut center = Center::start(&strs(&first));
    let url = center.url.clone();
    let nodes = start_nodes(&url, 9100, 3);
    let expected = ids(&nodes);
    assert_eq!(expected.len(), 3, "node ids are not distinct");
    let mut watcher = json_watcher(&url);
    let mut members = BTreeSet::new();
    loop {
        let line = watcher.line("live", |_| true);
        if line.text.contains(r#""event":"live""#) {
            // Our center's change stream, not the polling fallback.
            assert!(
                line.text.contains(r#""source":"stream""#),
                "{}",
                watcher.transcript()
            );
            break;
        }
        apply_watch_line(&mut members, &line.text);
    }
    assert_eq!(members, expected);
    assert_listing_is(&url, &nodes, 9100);

    center.proc.kill_9();
    // Another data dir: the new center knows nothing of the nodes.
    let second = data_dir(dir.path(), "second");
    let restarted = Center::restart_at(&url, &strs(&second));
    assert_eq!(restarted.url, url);
    let outage_over = Instant::now();

    // Each node noticed (a failed call or NotFound) and registered again: a second
    // `registered` line, for the lease the new center granted.
    let mut nodes = nodes;
    for (node, id) in &mut nodes {
        let again = format!("registered {id} ");
        node.line("registered again", |text| text.starts_with(&again));
    }
    eventually(
        "the restarted center lists every node",
        || {
            try_list(&url)
                .is_ok_and(|listed| listed.keys().cloned().collect::<BTreeSet<_>>() == expected)
        },
        || format!("{:?}", try_list(&url)),
    );
    eprintln!(
        "every node back {:?} after the center came back",
        outage_over.elapsed()
    );
    assert_listing_is(&url, &nodes, 9100);
    // The node processes kept their ids (no duplicates under new ids).
    for (node, id) in &nodes {
        assert!(
            node.seen
                .iter()
                .all(|line| line.split(' ').nth(1) == Some(id)),
            "{}",
            node.transcript()
        );
    }

    // The watcher still follows the center after the cut: `members` equals the truth
    // already, so only a change made now proves it. A node registered after the
    // restart must be printed as a join, and the lines read until then (leaves and
    // joins of the resync included) must add up to the truth plus that node.
    register(&url, "after-the-restart", 9199);
    let mut after = expected.clone();
    after.insert("after-the-restart".to_owned());
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = watcher.lines.recv_timeout(left) else {
            panic!(
                "the watcher printed no join of a node registered after the restart\n{}",
                watcher.transcript()
            );
        };
        apply_watch_line(&mut members, &line.text);
        let joined = serde_json::from_str::<serde_json::Value>(&line.text)
            .is_ok_and(|v| v["event"] == "join" && v["node"]["node_id"] == "after-the-restart");
        watcher.seen.push(line.text);
        if joined {
            break;
        }
    }
    assert_eq!(members, after, "{}", watcher.transcript());
}

#[test]
fn center_frozen_longer_than_the_ttl_then_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let store = data_dir(dir.path(), "store");
    let center = Center::start(&strs(&store));
    let url = center.url.clone();
    let mut nodes = start_nodes(&url, 9200, 3);
    let expected = ids(&nodes);
    assert_eq!(expected.len(), 3);

    center.proc.signal("STOP");
    // Calls time out; once a TTL passed since the last success each node knows its
    // lease lapsed.
    for (node, id) in &mut nodes {
        let lost = format!("lost {id} ");
        node.line("lost", |text| text.starts_with(&lost));
    }
    center.proc.signal("CONT");
    let resumed = Instant::now();

    for (node, id) in &mut nodes {
        let again = format!("registered {id} ");
        node.line("registered again", |text| text.starts_with(&again));
    }
    eprintln!(
        "every node registered again {:?} after the center resumed",
        resumed.elapsed()
    );
    eventually(
        "the resumed center lists every node",
        || {
            try_list(&url)
                .is_ok_and(|listed| listed.keys().cloned().collect::<BTreeSet<_>>() == expected)
        },
        || format!("{:?}", try_list(&url)),
    );
    // Exactly one entry per node process, at its own address.
    assert_listing_is(&url, &nodes, 9200);
}

/// Lists the etcd at `endpoint` through the library (any identity may read).
fn etcd_list(endpoint: &str) -> BTreeMap<String, NodeInfo> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = isek::etcd::EtcdConfig::new([endpoint]);
        let reader =
            isek::etcd::EtcdRegistry::connect(config, isek::identity::NodeIdentity::generate())
                .await
                .unwrap();
        reader.get_available_nodes().await.unwrap()
    })
}

#[test]
fn etcd_restarted_under_running_nodes_they_come_back() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut etcd = runtime
        .block_on(isek_testkit::etcd::EtcdServer::start())
        .unwrap();
    let endpoint = etcd.endpoint();
    let mut watcher = Proc::spawn("watch", &["watch", "--json", "--etcd", &endpoint]);
    // etcd pushes changes: no polling.
    watcher.json_line("live", |v| v["event"] == "live" && v["source"] == "stream");
    let mut nodes: Vec<(Proc, String)> = (0..2u16)
        .map(|i| {
            let id = format!("etcd-node-{i}");
            let mut node = Proc::spawn(
                &id,
                &[
                    "run",
                    "--etcd",
                    &endpoint,
                    "--node-id",
                    &id,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &(9500 + i).to_string(),
                    "--ttl",
                    TTL,
                ],
            );
            node.line("registered", |text| {
                text.starts_with(&format!("registered {id} "))
            });
            (node, id)
        })
        .collect();
    let expected = ids(&nodes);
    let mut members = BTreeSet::new();
    while members != expected {
        let line = watcher.line("join", |_| true);
        apply_watch_line(&mut members, &line.text);
    }
    let listed = etcd_list(&endpoint);
    assert_eq!(listed.keys().cloned().collect::<BTreeSet<_>>(), expected);
    for node in listed.values() {
        assert!(node.public_key.is_some(), "{node:?} is not signed");
    }

    // Crash etcd (SIGKILL; its data stays) and bring it back on the same endpoint.
    etcd.stop();
    for (node, id) in &mut nodes {
        let trouble = [format!("retrying {id} "), format!("lost {id} ")];
        node.line("trouble", |text| {
            trouble.iter().any(|t| text.starts_with(t))
        });
    }
    runtime.block_on(etcd.restart()).unwrap();
    for (node, id) in &mut nodes {
        let again = format!("registered {id} ");
        node.line("registered again", |text| text.starts_with(&again));
    }
    eventually(
        "etcd lists every node again",
        || {
            etcd_list(&endpoint)
                .keys()
                .cloned()
                .collect::<BTreeSet<_>>()
                == expected
        },
        || format!("{:?}", etcd_list(&endpoint)),
    );

    // A clean stop deregisters: gone from etcd once the process exited, and the
    // watcher sees it leave: a change made after the cut, so a watcher that stopped
    // following when etcd went away fails here (`members` already equalled the truth
    // before the cut, so converging to it would prove nothing).
    let (mut first, first_id) = nodes.remove(0);
    first.signal("TERM");
    assert!(first.wait().success(), "{}", first.transcript());
    assert!(!etcd_list(&endpoint).contains_key(&first_id));
    watcher.json_line("leave", |v| {
        v["event"] == "leave" && v["node"]["node_id"] == first_id.as_str()
    });
}
