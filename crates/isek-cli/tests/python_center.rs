//! The Rust clients against the ORIGINAL Isek Center: the Flask blueprint of PyPI
//! isek 0.2.1, unchanged, served by waitress (scripts/python_center.py) on a port
//! chosen by the OS.
//!
//! - `IsekCenterRegistry` registers, renews, lists, re-registers and deregisters, and
//!   maps the original's 404s to `NotFound`.
//! - `watch_nodes` finds no change stream (the original answers 404 to `/v1/watch`),
//!   and a `PeerView` falls back to polling and still follows joins and leaves.
//! - `isek watch` prints the current set, `# live (polling)`, joins and leaves.
//!
//! scripts/python-center.sh makes the virtualenv (isek 0.2.1, flask, waitress from
//! PyPI) and runs this test with `ISEK_ORIGINAL_CENTER_PYTHON` set to its python;
//! scripts/test.sh runs that script (a failure in CI when PyPI is out of reach).
//! Without the variable (a plain `cargo nextest run`) each test says so on stderr and
//! returns: it cannot serve the original without its packages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use harness::collect_stderr;
use harness::fault::{Proc, WAIT};
use isek::runtime::{PeerSource, PeerSync, PeerView, PeerViewConfig};
use isek::{Error, IsekCenterRegistry, Metadata, Registry};
use isek_testkit::condition::{DEADLINE, wait_until};
use serde_json::json;

/// The variable naming the virtualenv's python (set by scripts/python-center.sh).
const PYTHON: &str = "ISEK_ORIGINAL_CENTER_PYTHON";

/// The original center as a child process; killed and reaped on drop.
struct OriginalCenter {
    /// The python process serving the blueprint.
    child: Child,
    /// `http://127.0.0.1:PORT` as it announced it.
    url: String,
    /// Its stderr so far (Flask's and waitress's logs), for failure messages.
    stderr: Arc<Mutex<String>>,
}

impl OriginalCenter {
    /// Serves the original blueprint; `None` (with a note) when the virtualenv is not
    /// there.
    fn start() -> Option<OriginalCenter> {
        let Ok(python) = std::env::var(PYTHON) else {
            eprintln!("not run: {PYTHON} is unset (scripts/python-center.sh sets it)");
            return None;
        };
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/python_center.py"
        );
        let mut child = Command::new(python)
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the original center");
        let (stderr, _) = collect_stderr(&mut child);
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("original isek center listening on ") {
                    let _ = tx.send(url.to_owned());
                    break;
                }
            }
            for _ in lines {}
        });
        let Ok(url) = rx.recv_timeout(WAIT) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the original center did not start; stderr:\n{}",
                stderr.lock().unwrap()
            );
        };
        Some(OriginalCenter { child, url, stderr })
    }

    /// A client of it.
    fn client(&self) -> IsekCenterRegistry {
        IsekCenterRegistry::new(&self.url).unwrap()
    }
}

impl Drop for OriginalCenter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("original center stderr:\n{}", self.stderr.lock().unwrap());
        }
    }
}

fn metadata(value: serde_json::Value) -> Metadata {
    value.as_object().unwrap().clone()
}

#[tokio::test]
async fn the_rust_client_drives_the_original_center() {
    let Some(center) = OriginalCenter::start() else {
        return;
    };
    let client = center.client();
    let card = metadata(json!({
        "name": "rs", "url": "http://10.0.0.9:9999",
        "card": {"skills": ["a", {"b": null}]}, "note": "héllo",
    }));
    client
        .register_node("rs-node", "10.0.0.9", 9999, card.clone())
        .await
        .unwrap();
    client
        .register_node("rs-peer", "10.0.0.8", 9998, Metadata::new())
        .await
        .unwrap();
    client.lease_refresh("rs-node").await.unwrap();
    let nodes = client.get_available_nodes().await.unwrap();
    assert_eq!(
        nodes.keys().map(String::as_str).collect::<Vec<_>>(),
        ["rs-node", "rs-peer"]
    );
    let node = &nodes["rs-node"];
    assert_eq!((node.host.as_str(), node.port), ("10.0.0.9", 9999));
    assert_eq!(node.metadata, card);
    // The original's 30 s lease, as a float Unix time.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let expires = node.expires_at.expect("the original lists expires_at");
    assert!(
        expires > now + 25.0 && expires <= now + 30.5,
        "{expires} vs {now}"
    );

    // Register over an existing id replaces it.
    client
        .register_node(
            "rs-node",
            "10.0.0.7",
            9997,
            metadata(json!({"moved": true})),
        )
        .await
        .unwrap();
    let nodes = client.get_available_nodes().await.unwrap();
    assert_eq!(nodes["rs-node"].host, "10.0.0.7");
    assert_eq!(nodes["rs-node"].metadata, metadata(json!({"moved": true})));

    client.deregister_node("rs-node").await.unwrap();
    let nodes = client.get_available_nodes().await.unwrap();
    assert_eq!(nodes.keys().collect::<Vec<_>>(), ["rs-peer"]);
    // The original's 404s, with its own messages.
    match client.lease_refresh("rs-node").await {
        Err(Error::NotFound(message)) => {
            assert_eq!(message, "Node 'rs-node' not found for lease renewal.")
        }
        other => panic!("renew of a gone node: {other:?}"),
    }
    match client.deregister_node("rs-node").await {
        Err(Error::NotFound(message)) => {
            assert_eq!(message, "Node 'rs-node' not found for deregistration.")
        }
        other => panic!("deregister of a gone node: {other:?}"),
    }
}

#[tokio::test]
async fn without_a_change_stream_a_peer_view_polls_the_original_center() {
    let Some(center) = OriginalCenter::start() else {
        return;
    };
    let client = center.client();
    // The original answers 404 to /v1/watch: no stream, the caller must poll.
    assert!(client.watch_nodes().await.unwrap().is_none());

    client
        .register_node("early", "10.0.0.1", 7000, Metadata::new())
        .await
        .unwrap();
    let view = PeerView::start(
        Arc::new(center.client()),
        PeerViewConfig {
            poll_interval: Duration::from_millis(100),
            ..PeerViewConfig::default()
        },
    );
    let mut sync = view.sync_changes();
    tokio::time::timeout(
        DEADLINE,
        sync.wait_for(|s| {
            *s == PeerSync::Live {
                source: PeerSource::Poll,
            }
        }),
    )
    .await
    .expect("the view is live by polling")
    .unwrap();
    assert_eq!(view.peer("early").unwrap().port, 7000);
    client
        .register_node("late", "10.0.0.2", 7001, Metadata::new())
        .await
        .unwrap();
    wait_until("the view sees the join", || async {
        view.peer("late").is_some_and(|p| p.port == 7001)
    })
    .await;
    client.deregister_node("early").await.unwrap();
    wait_until("the view sees the leave", || async {
        view.peer("early").is_none()
    })
    .await;
    assert_eq!(
        view.sync(),
        PeerSync::Live {
            source: PeerSource::Poll
        }
    );
}

#[tokio::test]
async fn isek_watch_follows_the_original_center_by_polling() {
    let Some(center) = OriginalCenter::start() else {
        return;
    };
    let client = center.client();
    client
        .register_node("early", "127.0.0.1", 7000, Metadata::new())
        .await
        .unwrap();
    let mut watcher = Proc::spawn(
        "watch",
        &["watch", "--poll-interval", "0.2", "--center", &center.url],
    );
    watcher.line("current set", |text| text == "+ early 127.0.0.1:7000");
    watcher.line("live", |text| text == "# live (polling), 1 nodes");
    client
        .register_node("late", "127.0.0.1", 7001, Metadata::new())
        .await
        .unwrap();
    watcher.line("join", |text| text == "+ late 127.0.0.1:7001");
    client.deregister_node("late").await.unwrap();
    watcher.line("leave", |text| text == "- late");
    watcher.signal("TERM");
    let status = watcher.wait();
    assert!(status.success(), "{status}\n{}", watcher.transcript());
}

/// The original has no `/v1/nodes` (404): a filtered query falls back to its full
/// listing, narrowed and paged here by the same evaluator; `isek nodes --filter` too.
#[tokio::test]
async fn filtered_queries_fall_back_to_client_side_evaluation() {
    let Some(center) = OriginalCenter::start() else {
        return;
    };
    let client = center.client();
    for (id, role) in [("p1", "planner"), ("w1", "worker"), ("p2", "planner")] {
        client
            .register_node(id, "10.0.0.1", 7000, metadata(json!({"role": role})))
            .await
            .unwrap();
    }
    let filter = isek::Filter::compile(r#"metadata.role == "planner""#).unwrap();
    let query = isek::Query::filter(filter).limit(1);
    let first = client.query(&query).await.unwrap();
    assert!(first.local, "{first:?}");
    assert_eq!(first.nodes[0].node_id, "p1");
    let second = client.query(&query.next(&first).unwrap()).await.unwrap();
    assert_eq!(second.nodes[0].node_id, "p2");
    assert_eq!(second.cursor, None);

    let out = harness::success(&harness::isek(&[
        "nodes",
        "--center",
        &center.url,
        "--filter",
        r#"metadata.role == "worker""#,
        "--json",
    ]));
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        listed.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["w1"]
    );
}
