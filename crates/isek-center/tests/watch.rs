//! The center's change stream over real sockets: `GET /v1/watch` (server-sent events)
//! and `GET /v1/nodes` read raw, then through `IsekCenterRegistry::watch_nodes` and a
//! `PeerView`, across cut connections and a restarted center; and the data-dir lock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use isek::runtime::{PeerChange, PeerSource, PeerSync, PeerUpdate, PeerView, PeerViewConfig};
use isek::{IsekCenterRegistry, Metadata, NodeEvent, NodeEventStream, NodeInfo, Registry};
use isek_testkit::agents::card;
use isek_testkit::center::ServedCenter;
use isek_testkit::condition::{DEADLINE, wait_until};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Short TTL and keep-alive, so expiry and silence are quick to observe.
fn config(ttl_ms: u64) -> isek_center::Config {
    isek_center::Config {
        watch_keepalive: Duration::from_millis(200),
        ..isek_center::Config::in_memory(Duration::from_millis(ttl_ms))
    }
}

fn registry(url: &str) -> IsekCenterRegistry {
    IsekCenterRegistry::new(url).unwrap()
}

/// One raw SSE event as the test reads it.
#[derive(Debug, Clone)]
struct Raw {
    event: String,
    id: Option<u64>,
    data: Value,
}

/// Where a [`RawStream`] reads the body from.
enum Body {
    /// A reqwest response (HTTP/1.1, chunked).
    Response(reqwest::Response),
    /// An HTTP/1.0 socket of our own (the body is the rest of the connection).
    Socket(tokio::net::TcpStream),
}

/// A raw reader of `/v1/watch`, independent of the library's parser.
struct RawStream {
    body: Body,
    buffer: String,
    /// Keep-alive comments seen so far.
    keepalives: usize,
}

impl RawStream {
    async fn open(url: &str) -> Self {
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            body: Body::Response(response),
            buffer: String::new(),
            keepalives: 0,
        }
    }

    /// `GET /v1/watch` over a socket with a receive buffer of `receive_buffer` bytes
    /// (the kernel's minimum at least), so a watcher that does not read stalls the
    /// center after a few kilobytes instead of the megabytes loopback autotuning holds.
    async fn open_small(addr: SocketAddr, receive_buffer: u32) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(receive_buffer).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        stream
            .write_all(b"GET /v1/watch HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        // The head, byte by byte: nothing of the body is read before the test wants it.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = tokio::time::timeout(DEADLINE, stream.read_u8())
                .await
                .expect("the response head")
                .unwrap();
            head.push(byte);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{head}"
        );
        Self {
            body: Body::Socket(stream),
            buffer: String::new(),
            keepalives: 0,
        }
    }

    /// The next piece of the body; `None` at its end.
    async fn chunk(&mut self) -> Option<Vec<u8>> {
        match &mut self.body {
            Body::Response(response) => response.chunk().await.ok().flatten().map(Vec::from),
            Body::Socket(stream) => {
                let mut buf = vec![0u8; 16 * 1024];
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some(buf)
                    }
                }
            }
        }
    }

    /// The next event; `None` when the stream ended.
    async fn next(&mut self) -> Option<Raw> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut raw = Raw {
                    event: String::new(),
                    id: None,
                    data: Value::Null,
                };
                let mut comment = true;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        raw.event = v.to_owned();
                        comment = false;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        raw.id = Some(v.parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        raw.data = serde_json::from_str(v).unwrap();
                    } else if !line.is_empty() {
                        assert!(line.starts_with(':'), "unexpected line {line:?}");
                    }
                }
                if comment {
                    self.keepalives += 1;
                    continue;
                }
                return Some(raw);
            }
            let chunk = tokio::time::timeout(DEADLINE, self.chunk())
                .await
                .expect("the stream stays alive")?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event, which must be `kind`.
    async fn expect(&mut self, kind: &str) -> Raw {
        let raw = self.next().await.expect("another event");
        assert_eq!(raw.event, kind, "{raw:?}");
        raw
    }
}

/// `GET /v1/nodes` as JSON.
async fn list(url: &str) -> Value {
    reqwest::get(format!("{url}/v1/nodes"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_stream_shows_register_update_deregister_and_expiry_in_order() {
    let center = ServedCenter::start(config(1000)).await;
    let url = center.url();
    let mut stream = RawStream::open(&format!("{url}/v1/watch")).await;
    let hello = stream.expect("hello").await;
    assert_eq!(hello.data["keepalive_ms"], 200);
    let snapshot = stream.expect("snapshot").await;
    assert_eq!(snapshot.data["nodes"], json!({}));
    let r0 = snapshot.data["revision"].as_u64().unwrap();
    assert_eq!(snapshot.id, Some(r0));

    let client = registry(&url);
    client
        .register_node("n1", "10.0.0.1", 9001, card("planner"))
        .await
        .unwrap();
    client
        .register_node("n1", "10.0.0.1", 9002, card("planner"))
        .await
        .unwrap();
    client.deregister_node("n1").await.unwrap();
    // n2, registered last, is left to expire (TTL 1 s): its expiry comes after every
    // other change however slow the machine is.
    client
        .register_node("n2", "10.0.0.2", 9003, card("worker"))
        .await
        .unwrap();

    let put = stream.expect("put").await;
    assert_eq!(put.id, Some(r0 + 1));
    assert_eq!(
        put.data,
        json!({"revision": r0 + 1, "node": {"node_id": "n1", "host": "10.0.0.1", "port": 9001, "metadata": {"role": "planner"}}})
    );
    let update = stream.expect("put").await;
    assert_eq!(update.id, Some(r0 + 2));
    assert_eq!(update.data["node"]["port"], 9002);
    let gone = stream.expect("delete").await;
    assert_eq!(
        gone.data,
        json!({"revision": r0 + 3, "node_id": "n1", "reason": "deregister"})
    );
    let put2 = stream.expect("put").await;
    assert_eq!(put2.id, Some(r0 + 4));
    assert_eq!(put2.data["node"]["node_id"], "n2");
    let expired = stream.expect("delete").await;
    assert_eq!(
        expired.data,
        json!({"revision": r0 + 5, "node_id": "n2", "reason": "expire"})
    );
    assert_eq!(expired.id, Some(r0 + 5));

    // The listing agrees: nothing live, same revision and epoch.
    let listed = list(&url).await;
    assert_eq!(listed["code"], 200);
    assert_eq!(listed["data"]["nodes"], json!({}));
    assert_eq!(listed["data"]["revision"], r0 + 5);
    assert_eq!(listed["data"]["epoch"], hello.data["epoch"]);

    // Quiet stream: keep-alive comments arrive while nothing changes.
    let before = stream.keepalives;
    let next = tokio::time::timeout(Duration::from_millis(700), stream.next()).await;
    assert!(next.is_err(), "no event while nothing changes: {next:?}");
    assert!(stream.keepalives > before, "keep-alives on a quiet stream");
}

#[tokio::test]
async fn since_resumes_exactly_after_the_given_revision() {
    let center = ServedCenter::start(config(30_000)).await;
    let url = center.url();
    let client = registry(&url);
    for i in 0..5 {
        client
            .register_node(&format!("n{i}"), "h", 9000 + i, Metadata::new())
            .await
            .unwrap();
    }
    client.deregister_node("n0").await.unwrap();
    let listed = list(&url).await;
    let revision = listed["data"]["revision"].as_u64().unwrap();
    let epoch = listed["data"]["epoch"].as_u64().unwrap();
    assert_eq!(listed["data"]["nodes"].as_object().unwrap().len(), 4);

    let since = revision - 3;
    let mut stream = RawStream::open(&format!("{url}/v1/watch?since={since}&epoch={epoch}")).await;
    let hello = stream.expect("hello").await;
    assert_eq!(hello.data["epoch"], epoch);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let raw = stream.next().await.unwrap();
        seen.push((raw.event, raw.id.unwrap()));
    }
    assert_eq!(
        seen,
        [
            ("put".to_owned(), since + 1),
            ("put".to_owned(), since + 2),
            ("delete".to_owned(), since + 3)
        ]
    );
    // Then live changes follow without a gap.
    client
        .register_node("n9", "h", 9999, Metadata::new())
        .await
        .unwrap();
    let live = stream.expect("put").await;
    assert_eq!(live.id, Some(revision + 1));

    // Resuming at the current revision sends only the hello, then live changes.
    let mut current = RawStream::open(&format!(
        "{url}/v1/watch?since={}&epoch={epoch}",
        revision + 1
    ))
    .await;
    current.expect("hello").await;
    client.deregister_node("n9").await.unwrap();
    let raw = current.expect("delete").await;
    assert_eq!(raw.id, Some(revision + 2));
}

/// A GET answer's status and JSON body.
async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn unresumable_revisions_get_a_410_resync_answer() {
    let center = ServedCenter::start(isek_center::Config {
        watch_history: 2,
        ..config(30_000)
    })
    .await;
    let url = center.url();
    let client = registry(&url);
    for i in 0..5 {
        client
            .register_node(&format!("n{i}"), "h", 9000, Metadata::new())
            .await
            .unwrap();
    }
    let listed = list(&url).await;
    let revision = listed["data"]["revision"].as_u64().unwrap();
    let epoch = listed["data"]["epoch"].as_u64().unwrap();

    // Only the last two changes are retained.
    let (status, body) = get(&format!(
        "{url}/v1/watch?since={}&epoch={epoch}",
        revision - 3
    ))
    .await;
    assert_eq!(status, 410);
    assert_eq!(body["code"], 410);
    assert_eq!(body["data"]["revision"], revision);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("revision {} is compacted", revision - 3))
            && message.contains("/v1/nodes"),
        "{message}"
    );
    let mut ok = RawStream::open(&format!(
        "{url}/v1/watch?since={}&epoch={epoch}",
        revision - 2
    ))
    .await;
    ok.expect("hello").await;
    assert_eq!(ok.expect("put").await.id, Some(revision - 1));

    // Another epoch's revision (a restarted center) and a future revision: resync.
    let (status, body) = get(&format!(
        "{url}/v1/watch?since={revision}&epoch={}",
        epoch ^ 1
    ))
    .await;
    assert_eq!(status, 410);
    assert!(
        body["message"].as_str().unwrap().contains("epoch"),
        "{body}"
    );
    let (status, body) = get(&format!(
        "{url}/v1/watch?since={}&epoch={epoch}",
        revision + 1
    ))
    .await;
    assert_eq!(status, 410);
    assert!(
        body["message"].as_str().unwrap().contains("ahead"),
        "{body}"
    );

    // Malformed parameters: a 400 envelope naming the parameter.
    let (status, body) = get(&format!("{url}/v1/watch?since=-1")).await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("'since'"),
        "{body}"
    );
}

#[tokio::test]
async fn a_watcher_that_falls_behind_gets_a_resync_and_its_stream_ends() {
    let center = ServedCenter::start(isek_center::Config {
        watch_buffer: 4,
        ..config(30_000)
    })
    .await;
    let url = center.url();
    // Opened with a 4 KB receive buffer, then not read while the center produces more
    // than the socket buffers, hyper's write buffer (about 400 KB) and the watcher's
    // 4-change buffer hold: 150 changes of 16 KB, 2.4 MB.
    let mut stream = RawStream::open_small(center.addr(), 4096).await;
    let big = json!({ "blob": "x".repeat(16 * 1024) });
    let metadata = big.as_object().unwrap().clone();
    let client = registry(&url);
    let total = 150;
    futures::stream::iter(0..total)
        .for_each_concurrent(32, |i| {
            let client = client.clone();
            let metadata = metadata.clone();
            async move {
                client
                    .register_node(&format!("n{i}"), "h", 9000, metadata)
                    .await
                    .unwrap();
            }
        })
        .await;

    stream.expect("hello").await;
    stream.expect("snapshot").await;
    let mut puts = 0;
    let mut last = None;
    loop {
        let raw = stream.next().await.expect("a resync before the end");
        match raw.event.as_str() {
            "put" => {
                let id = raw.id.unwrap();
                if let Some(last) = last {
                    assert_eq!(id, last + 1, "no gap before the resync");
                }
                last = Some(id);
                puts += 1;
            }
            "resync" => {
                assert!(
                    raw.data["message"].as_str().unwrap().contains("fell"),
                    "{raw:?}"
                );
                break;
            }
            other => panic!("unexpected event {other}"),
        }
    }
    assert!(puts < total, "the watcher lagged ({puts} of {total})");
    assert!(
        stream.next().await.is_none(),
        "the stream ends after resync"
    );
}

/// Folds node events into a map, like a watcher would.
fn apply(view: &mut BTreeMap<String, NodeInfo>, event: &NodeEvent) {
    match event {
        NodeEvent::Snapshot { nodes, .. } => *view = nodes.clone(),
        NodeEvent::Put { node, .. } => {
            view.insert(node.node_id.clone(), node.clone());
        }
        NodeEvent::Delete { node_id, .. } => {
            view.remove(node_id);
        }
    }
}

/// Reads `stream` until `view` matches `truth`; returns the events read.
async fn converge(
    stream: &mut NodeEventStream,
    view: &mut BTreeMap<String, NodeInfo>,
    truth: &[&str],
) -> Vec<NodeEvent> {
    let mut events = Vec::new();
    let wanted: Vec<String> = truth.iter().map(|s| s.to_string()).collect();
    while view.keys().cloned().collect::<Vec<_>>() != wanted {
        let event = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .unwrap_or_else(|_| panic!("view {:?} never became {wanted:?}", view.keys()))
            .expect("the stream goes on")
            .unwrap();
        apply(view, &event);
        events.push(event);
    }
    events
}

/// Each open relay connection's task and its "frozen" flag.
type Connections = Arc<Mutex<Vec<(JoinHandle<()>, Arc<AtomicBool>)>>>;

/// A TCP relay whose connections can be cut or frozen at will (the center keeps
/// running).
struct Relay {
    addr: SocketAddr,
    /// Each open connection's task and its "frozen" flag.
    connections: Connections,
    accept: JoinHandle<()>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections: Connections = Arc::default();
        let list = Arc::clone(&connections);
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let frozen = Arc::new(AtomicBool::new(false));
                let flag = Arc::clone(&frozen);
                let task = tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut in_read, mut in_write) = inbound.into_split();
                    let (mut out_read, mut out_write) = outbound.into_split();
                    let up = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut in_read, &mut out_write).await;
                    });
                    // Down: stops forwarding (but keeps the connection open) once frozen.
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = out_read.read(&mut buf).await {
                        if flag.load(Ordering::SeqCst) {
                            std::future::pending::<()>().await;
                        }
                        if in_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    up.abort();
                });
                list.lock().unwrap().push((task, frozen));
            }
        });
        Self {
            addr,
            connections,
            accept,
        }
    }

    /// Drops every open connection.
    fn cut(&self) {
        for (task, _) in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Open connections stop forwarding to the client but stay open (a stalled
    /// network path); new connections work.
    fn freeze(&self) {
        for (_, frozen) in self.connections.lock().unwrap().iter() {
            frozen.store(true, Ordering::SeqCst);
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[tokio::test]
async fn watch_nodes_resumes_after_a_cut_connection_without_loss_or_duplicate() {
    let center = ServedCenter::start(config(30_000)).await;
    let relay = Relay::start(center.addr()).await;
    let writer = registry(&center.url());
    let watcher = registry(&format!("http://{}", relay.addr));
    writer
        .register_node("a", "h", 1, Metadata::new())
        .await
        .unwrap();
    let mut stream = watcher
        .watch_nodes()
        .await
        .unwrap()
        .expect("a change stream");
    let mut view = BTreeMap::new();
    let first = converge(&mut stream, &mut view, &["a"]).await;
    assert!(matches!(first[0], NodeEvent::Snapshot { .. }));

    writer
        .register_node("b", "h", 2, Metadata::new())
        .await
        .unwrap();
    converge(&mut stream, &mut view, &["a", "b"]).await;

    relay.cut();
    // Changes while the watcher is disconnected.
    writer
        .register_node("c", "h", 3, Metadata::new())
        .await
        .unwrap();
    writer.deregister_node("a").await.unwrap();
    writer
        .register_node("d", "h", 4, Metadata::new())
        .await
        .unwrap();
    let events = converge(&mut stream, &mut view, &["b", "c", "d"]).await;
    // Resumed: only the missed changes, in order, no snapshot, no duplicate.
    let kinds = summary(&events);
    let r = kinds[0].1;
    assert_eq!(
        kinds,
        [
            ("+c".to_owned(), r),
            ("-a".to_owned(), r + 1),
            ("+d".to_owned(), r + 2)
        ]
    );
    assert_eq!(
        view,
        writer
            .get_available_nodes()
            .await
            .unwrap()
            .into_iter()
            .map(|(k, mut v)| {
                v.expires_at = None;
                (k, v)
            })
            .collect::<BTreeMap<_, _>>()
    );
}

/// Names and revisions of events, for comparing histories.
fn summary(events: &[NodeEvent]) -> Vec<(String, u64)> {
    events
        .iter()
        .map(|e| match e {
            NodeEvent::Snapshot { revision, .. } => ("snapshot".to_owned(), *revision),
            NodeEvent::Put { node, revision } => (format!("+{}", node.node_id), *revision),
            NodeEvent::Delete { node_id, revision } => (format!("-{node_id}"), *revision),
        })
        .collect()
}

#[tokio::test]
async fn watch_nodes_notices_a_silent_connection_and_resumes() {
    // Keep-alives every 200 ms: a connection silent for 600 ms is dead.
    let center = ServedCenter::start(config(30_000)).await;
    let relay = Relay::start(center.addr()).await;
    let writer = registry(&center.url());
    let watcher = registry(&format!("http://{}", relay.addr));
    let mut stream = watcher
        .watch_nodes()
        .await
        .unwrap()
        .expect("a change stream");
    let mut view = BTreeMap::new();
    writer
        .register_node("a", "h", 1, Metadata::new())
        .await
        .unwrap();
    converge(&mut stream, &mut view, &["a"]).await;

    relay.freeze();
    writer
        .register_node("b", "h", 2, Metadata::new())
        .await
        .unwrap();
    writer.deregister_node("a").await.unwrap();
    let events = converge(&mut stream, &mut view, &["b"]).await;
    let seen = summary(&events);
    let r = seen[0].1;
    assert_eq!(seen, [("+b".to_owned(), r), ("-a".to_owned(), r + 1)]);
}

#[tokio::test]
async fn watch_nodes_converges_after_the_center_restarts_on_its_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let disk = |path: PathBuf| isek_center::Config {
        data_dir: Some(path),
        watch_keepalive: Duration::from_millis(200),
        ..isek_center::Config::default()
    };
    let mut center = ServedCenter::start(disk(dir.path().to_path_buf())).await;
    let client = registry(&center.url());
    client.register_node("a", "h", 1, card("x")).await.unwrap();
    let mut stream = client
        .watch_nodes()
        .await
        .unwrap()
        .expect("a change stream");
    let mut view = BTreeMap::new();
    converge(&mut stream, &mut view, &["a"]).await;

    center.restart(disk(dir.path().to_path_buf())).await;
    client.register_node("b", "h", 2, card("y")).await.unwrap();
    client.deregister_node("a").await.unwrap();
    let events = converge(&mut stream, &mut view, &["b"]).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, NodeEvent::Snapshot { .. })),
        "a new epoch means a fresh snapshot: {events:?}"
    );
    assert_eq!(view["b"].metadata, card("y"));
    center.stop().await;
}

#[tokio::test]
async fn a_peer_view_of_the_center_follows_the_stream() {
    let center = ServedCenter::start(config(1000)).await;
    let view = PeerView::start(
        Arc::new(registry(&center.url())),
        PeerViewConfig {
            // Far beyond the test's deadline: only the stream can keep the view current.
            poll_interval: Duration::from_secs(3600),
            ..PeerViewConfig::default()
        },
    );
    let mut sync = view.sync_changes();
    tokio::time::timeout(
        DEADLINE,
        sync.wait_for(|s| {
            *s == PeerSync::Live {
                source: PeerSource::Stream,
            }
        }),
    )
    .await
    .unwrap()
    .unwrap();
    // The view's own changes, subscribed before the registration: the join and the
    // expiry are awaited as events, so a machine slower than the 1 s TTL cannot miss
    // the node between two looks at the map.
    let mut changes = view.subscribe();
    let client = registry(&center.url());
    client
        .register_node("p", "10.1.1.1", 7000, card("planner"))
        .await
        .unwrap();
    let mut next_change = async || {
        let update = tokio::time::timeout(DEADLINE, changes.recv())
            .await
            .expect("a change of the view within the deadline")
            .expect("the view is alive");
        match update {
            PeerUpdate::Change(change) => change,
            PeerUpdate::Resync(peers) => {
                panic!("one subscriber of a few changes lagged: {peers:?}")
            }
        }
    };
    match next_change().await {
        PeerChange::Joined(node) => {
            assert_eq!(node.node_id, "p");
            assert_eq!(node.port, 7000);
        }
        other => panic!("expected p to join: {other:?}"),
    }
    // Expiry (TTL 1 s) reaches the view through the stream too.
    match next_change().await {
        PeerChange::Left(node) => assert_eq!(node.node_id, "p"),
        other => panic!("expected p to leave: {other:?}"),
    }
    assert!(view.peer("p").is_none());
    assert!(view.revision() > 0);
}

#[tokio::test]
async fn a_center_without_a_change_stream_means_polling() {
    // An HTTP server answering 404 to everything, like the original Python center for
    // /v1/watch.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { axum::http::StatusCode::NOT_FOUND });
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let client = registry(&format!("http://{addr}"));
    assert!(client.watch_nodes().await.unwrap().is_none());
    server.abort();
}

#[tokio::test]
async fn two_centers_cannot_share_a_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let config = isek_center::Config::on_disk(dir.path());
    let first = isek_center::Center::start(config.clone()).await.unwrap();
    let second = isek_center::Center::start(config.clone()).await;
    let error = second.expect_err("the directory is locked").to_string();
    assert!(
        error.contains(&dir.path().display().to_string()) && error.contains("already in use"),
        "{error}"
    );
    // Once the first center has stopped, the directory is free again.
    first.shutdown().await.unwrap();
    let third = isek_center::Center::start(config).await.unwrap();
    third.shutdown().await.unwrap();
}

#[tokio::test]
async fn watchers_joining_during_churn_each_see_a_gapless_history_that_ends_in_the_truth() {
    let center = ServedCenter::start(config(30_000)).await;
    let url = center.url();
    let client = registry(&url);
    // Churn: 8 writers registering, re-registering and deregistering 40 ids.
    let done = Arc::new(AtomicUsize::new(0));
    let churn = {
        let client = client.clone();
        let done = done.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..400u32)
                .for_each_concurrent(8, |i| {
                    let client = client.clone();
                    let done = done.clone();
                    async move {
                        let id = format!("n{}", i % 40);
                        if i % 3 == 2 {
                            // NotFound when it is already gone: fine; anything else
                            // is a failure of the churn, not part of it.
                            match client.deregister_node(&id).await {
                                Ok(()) | Err(isek::Error::NotFound(_)) => {}
                                Err(e) => panic!("deregister {id}: {e}"),
                            }
                        } else {
                            let port = u16::try_from(1000 + i).unwrap();
                            client
                                .register_node(&id, "h", port, Metadata::new())
                                .await
                                .unwrap();
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .await;
        })
    };
    // Watchers join at different moments of the churn: after 60, 120, ... 300 of its
    // 400 operations, so each joins while it runs.
    let mut watchers = Vec::new();
    for k in 0..5usize {
        let done = done.clone();
        wait_until("the churn has progressed", move || {
            let done = done.clone();
            async move { done.load(Ordering::Relaxed) >= 60 * (k + 1) }
        })
        .await;
        watchers.push(
            client
                .watch_nodes()
                .await
                .unwrap()
                .expect("a change stream"),
        );
    }
    churn.await.unwrap();
    let final_revision = list(&url).await["data"]["revision"].as_u64().unwrap();
    let truth: Vec<String> = client
        .get_available_nodes()
        .await
        .unwrap()
        .into_keys()
        .collect();
    let truth: Vec<&str> = truth.iter().map(String::as_str).collect();
    // The revision of each watcher's first snapshot: where in the churn it joined.
    let mut joined_at = Vec::new();
    for mut stream in watchers {
        let mut view = BTreeMap::new();
        let mut revision = None;
        // Read until the watcher has reached the final revision.
        while revision != Some(final_revision) {
            let event = tokio::time::timeout(DEADLINE, stream.next())
                .await
                .expect("the watcher reaches the final revision")
                .unwrap()
                .unwrap();
            match (&event, revision) {
                (NodeEvent::Snapshot { .. }, None) => joined_at.push(event.revision()),
                (NodeEvent::Snapshot { .. }, Some(_)) => panic!("no resync expected"),
                (_, None) => panic!("a snapshot comes first"),
                (_, Some(r)) => assert_eq!(event.revision(), r + 1, "no gap, no duplicate"),
            }
            revision = Some(event.revision());
            apply(&mut view, &event);
        }
        assert_eq!(view.keys().map(String::as_str).collect::<Vec<_>>(), truth);
    }
    // At least one watcher joined during the churn (after its first write, before its
    // last), or the test showed nothing about joining under churn.
    assert!(
        joined_at.iter().any(|r| *r > 0 && *r < final_revision),
        "no watcher joined during the churn: snapshots at {joined_at:?}, final {final_revision}"
    );
}
