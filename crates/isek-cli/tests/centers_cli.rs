//! Several centers on the command line (issue 10): `--center A,B`. Two real,
//! independent SQLite centers on loopback ports; one is killed with SIGKILL. `isek
//! run` keeps its node alive (its renewal fails over to the other center, which does
//! not know the node: NotFound, so it registers there), `isek watch`'s change stream
//! moves to the other center (another epoch: a fresh snapshot, then its changes), and
//! `isek nodes` answers from the first center that is up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::fault::{Center, Proc, data_dir, eventually, list, register, strs};
use harness::{dead_port, isek, success};

#[test]
fn run_watch_and_nodes_fail_over_when_a_center_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Center::start(&strs(&data_dir(dir.path(), "a")));
    let second = Center::start(&strs(&data_dir(dir.path(), "b")));
    let both = format!("{},{}", first.url, second.url);

    let mut watch = Proc::spawn("watch", &["watch", "--center", &both]);
    watch.line("live", |l| l.starts_with("# live (change stream)"));
    let mut node = Proc::spawn(
        "node",
        &[
            "run",
            "--center",
            &both,
            "--node-id",
            "multi",
            "--host",
            "127.0.0.1",
            "--port",
            "9300",
            "--ttl",
            "2",
        ],
    );
    node.line("registered", |l| l.starts_with("registered multi"));
    watch.line("the join", |l| l.starts_with("+ multi"));
    assert!(list(&first.url).contains_key("multi"));
    assert!(!list(&second.url).contains_key("multi"));

    first.proc.kill_9();
    // The node's next renewal goes to the second center, which registers it.
    eventually(
        "the node is listed on the surviving center",
        || list(&second.url).contains_key("multi"),
        || node.transcript(),
    );
    // The watcher's stream moved there too: it sees a change made only there.
    register(&second.url, "only-on-b", 9301);
    watch.line("a join on the second center", |l| {
        l.starts_with("+ only-on-b")
    });

    // A dead first center is skipped by one-shot commands.
    let dead = format!("http://127.0.0.1:{},{}", dead_port(), second.url);
    let out = success(&isek(&["nodes", "--center", &dead, "--json"]));
    let listed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert!(
        listed.contains_key("multi") && listed.contains_key("only-on-b"),
        "{out}"
    );

    node.signal("TERM");
    assert!(node.wait().success(), "{}", node.transcript());
    assert!(!list(&second.url).contains_key("multi"));
    assert!(
        !node.transcript().contains("failed"),
        "{}",
        node.transcript()
    );
}
