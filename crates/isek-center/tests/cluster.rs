//! Several centers on one etcd (`--store etcd`): one registry that any center answers
//! for, with etcd revisions on every change stream, so a watcher resumes on another
//! center; owners (key, token hash) live in etcd too; nothing is lost across restarts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use isek::Registry;
use isek::identity::NodeIdentity;
use isek::wire::proof::ProofRequest;
use isek_center::{ClusterStore, Config};
use isek_testkit::center::ServedCenter;
use isek_testkit::condition::wait_until;
use isek_testkit::etcd::EtcdNamespace;
use isek_testkit::router::{DEREGISTER, REGISTER};
use isek_testkit::signed::signed_body;
use isek_testkit::sse;
use serde_json::Value;

/// A center of the cluster under `ns`'s own prefix.
fn config(ns: &EtcdNamespace) -> Config {
    Config {
        cluster: Some(ClusterStore::new(
            ns.config(),
            format!("/{}-centers", ns.parent()),
        )),
        ..Config::in_memory(Duration::from_secs(30))
    }
}

/// POSTs a JSON body; the status and the parsed envelope.
async fn post(url: String, body: String) -> (u16, Value) {
    let answer = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap())
}

/// The node ids a center lists.
async fn listed(center: &ServedCenter) -> Vec<String> {
    let mut ids: Vec<String> = center
        .client()
        .get_available_nodes()
        .await
        .unwrap()
        .into_keys()
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn two_centers_on_one_etcd_serve_one_registry() {
    let ns = EtcdNamespace::new().await.unwrap();
    let mut a = ServedCenter::start_answering(config(&ns)).await;
    let mut b = ServedCenter::start_answering(config(&ns)).await;
    let mut on_b = sse::stream(b.addr(), "/v1/watch").await;
    let hello_b = on_b.expect("hello").await;
    on_b.expect("snapshot").await;

    // A signed node registered on A, an unsigned one on B.
    let identity = NodeIdentity::generate();
    let (status, answer) = post(a.url_of(REGISTER), signed_body(&identity, "signed-1", 7001)).await;
    assert_eq!(status, 200, "{answer}");
    let token = answer["data"]["lease_token"].as_str().unwrap().to_owned();
    b.client()
        .register_node("plain-1", "10.0.0.2", 7002, serde_json::Map::new())
        .await
        .unwrap();

    // B's stream shows both, at etcd revisions, in order.
    let first = on_b.expect("put").await;
    assert_eq!(first.data["node"]["node_id"], "signed-1");
    let second = on_b.expect("put").await;
    assert_eq!(second.data["node"]["node_id"], "plain-1");
    let (r1, r2) = (first.id.unwrap(), second.id.unwrap());
    assert!(r2 > r1);
    // Both centers list both (each acknowledges only what it has applied, and etcd
    // had both before B's second acknowledgement).
    assert_eq!(listed(&b).await, ["plain-1", "signed-1"]);
    wait_until("A lists both nodes", || async {
        listed(&a).await.len() == 2
    })
    .await;

    // The same epoch on both: a watcher resumes on A after B's first revision and
    // gets exactly the second change.
    let epoch = hello_b.data["epoch"].as_u64().unwrap();
    let mut on_a = sse::stream(a.addr(), &format!("/v1/watch?since={r1}&epoch={epoch}")).await;
    let hello_a = on_a.expect("hello").await;
    assert_eq!(hello_a.data["epoch"], epoch, "one epoch for the cluster");
    let resumed = on_a.expect("put").await;
    assert_eq!(
        (resumed.id, &resumed.data["node"]["node_id"]),
        (Some(r2), &Value::from("plain-1"))
    );

    // The owner lives in etcd: B refuses an unsigned deregistration of A's signed
    // node, and takes one with the token A handed out.
    let unsigned = serde_json::json!({"node_id": "signed-1"}).to_string();
    let (status, answer) = post(b.url_of(DEREGISTER), unsigned).await;
    assert_eq!(status, 403, "{answer}");
    let with_token = serde_json::to_string(&ProofRequest::with_token("signed-1", &token)).unwrap();
    let (status, answer) = post(b.url_of(DEREGISTER), with_token).await;
    assert_eq!(status, 200, "{answer}");
    let gone = on_a.expect("delete").await;
    assert_eq!(gone.data["node_id"], "signed-1");
    assert_eq!(gone.data["reason"], "deregister");
    assert_eq!(
        on_b.expect("delete").await.id,
        gone.id,
        "one revision everywhere"
    );
    wait_until("A no longer lists the deregistered node", || async {
        listed(&a).await == ["plain-1"]
    })
    .await;

    // Both restart: nothing acknowledged is lost, the epoch stays.
    a.stop().await;
    b.stop().await;
    a.restart(config(&ns)).await;
    b.restart(config(&ns)).await;
    for center in [&a, &b] {
        wait_until("a restarted center lists what etcd holds", || async {
            center
                .client()
                .get_available_nodes()
                .await
                .ok()
                .map(|n| n.len())
                == Some(1)
        })
        .await;
        assert_eq!(listed(center).await, ["plain-1"]);
        let mut stream = sse::stream(center.addr(), "/v1/watch").await;
        assert_eq!(stream.expect("hello").await.data["epoch"], epoch);
    }
}

#[tokio::test]
async fn a_node_registered_twice_in_a_burst_keeps_its_last_registration() {
    // Two registrations of one id in one batch commit one after the other (a shared
    // store's op must name the generation it replaces), and every center ends with
    // the last one.
    let ns = EtcdNamespace::new().await.unwrap();
    let a = ServedCenter::start_answering(config(&ns)).await;
    let b = ServedCenter::start_answering(config(&ns)).await;
    let writes = (0..20u16).map(|i| {
        let client = a.client().clone();
        async move {
            client
                .register_node("burst", "10.0.0.3", 8000 + i, serde_json::Map::new())
                .await
                .map(|_| i)
        }
    });
    let done = futures::future::join_all(writes).await;
    assert!(done.iter().all(Result::is_ok), "{done:?}");
    let on_a = a.client().get_available_nodes().await.unwrap();
    let port = on_a["burst"].port;
    wait_until("B shows the same last registration", || async {
        b.client()
            .get_available_nodes()
            .await
            .ok()
            .and_then(|n| n.get("burst").map(|n| n.port))
            == Some(port)
    })
    .await;
}
