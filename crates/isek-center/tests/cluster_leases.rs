//! Leases in a center cluster: renewals stay in memory and go to every center, one
//! elected lease holder expires, and a new holder starts every node on a fresh TTL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use isek::Registry;
use isek_center::{ClusterStore, Config};
use isek_testkit::center::ServedCenter;
use isek_testkit::condition::wait_until;
use isek_testkit::etcd::EtcdNamespace;
use isek_testkit::sse;

/// Node leases of the tests.
const TTL: Duration = Duration::from_secs(2);

/// A center of the cluster under `ns`'s own prefix, with short leases and a 1 s
/// holder election.
fn config(ns: &EtcdNamespace) -> Config {
    Config {
        cluster: Some(ClusterStore {
            holder_ttl: Duration::from_secs(1),
            ..ClusterStore::new(ns.config(), format!("/{}-centers", ns.parent()))
        }),
        ..Config::in_memory(TTL)
    }
}

/// The value of `{prefix}/holder`: the id of the lease holder, if any.
async fn holder(ns: &EtcdNamespace) -> Option<String> {
    let mut client = etcd_client::Client::connect([ns.endpoint()], None)
        .await
        .unwrap();
    let key = format!("/{}-centers/holder", ns.parent());
    let answer = client.get(key, None).await.unwrap();
    answer
        .kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

/// Renews `id` on `center` every TTL/4 for `rounds` rounds; every renewal succeeds.
async fn keep_renewing(center: &ServedCenter, id: &str, rounds: u32) {
    for _ in 0..rounds {
        center.client().lease_refresh(id).await.unwrap();
        tokio::time::sleep(TTL / 4).await;
    }
}

#[tokio::test]
async fn a_node_renewing_on_one_center_lives_on_all_and_expires_once() {
    let ns = EtcdNamespace::new().await.unwrap();
    let a = ServedCenter::start_answering(config(&ns)).await;
    let b = ServedCenter::start_answering(config(&ns)).await;
    wait_until("a lease holder is elected", || async {
        holder(&ns).await.is_some()
    })
    .await;
    let mut on_a = sse::stream(a.addr(), "/v1/watch").await;
    on_a.expect("hello").await;
    on_a.expect("snapshot").await;
    a.client()
        .register_node("roamer", "10.0.0.1", 9000, serde_json::Map::new())
        .await
        .unwrap();
    assert_eq!(on_a.expect("put").await.data["node"]["node_id"], "roamer");
    wait_until("B has the node", || async {
        b.client()
            .get_available_nodes()
            .await
            .is_ok_and(|n| n.contains_key("roamer"))
    })
    .await;
    // Registered on A, renewed only on B for three TTLs: whichever center holds the
    // leases, it hears of B's renewals, so no center expires the node.
    keep_renewing(&b, "roamer", 12).await;
    for center in [&a, &b] {
        let nodes = center.client().get_available_nodes().await.unwrap();
        assert!(nodes.contains_key("roamer"), "still listed");
    }
    // Left alone, it expires once, on every center.
    let gone = on_a.expect("delete").await;
    assert_eq!(gone.data["node_id"], "roamer");
    assert_eq!(gone.data["reason"], "expire");
    wait_until("B no longer lists the expired node", || async {
        b.client().get_available_nodes().await.unwrap().is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_new_lease_holder_expires_none_of_the_renewing_nodes() {
    let ns = EtcdNamespace::new().await.unwrap();
    let mut a = ServedCenter::start_answering(config(&ns)).await;
    wait_until("A is elected lease holder", || async {
        holder(&ns).await.is_some()
    })
    .await;
    let first = holder(&ns).await;
    let b = ServedCenter::start_answering(config(&ns)).await;
    let mut on_b = sse::stream(b.addr(), "/v1/watch").await;
    on_b.expect("hello").await;
    on_b.expect("snapshot").await;
    for i in 0..10 {
        b.client()
            .register_node(&format!("n{i}"), "10.0.0.1", 9000, serde_json::Map::new())
            .await
            .unwrap();
        on_b.expect("put").await;
    }
    // The holder stops; B takes over while the nodes keep renewing on B.
    a.stop().await;
    let renewing = async {
        for _ in 0..12 {
            for i in 0..10 {
                b.client().lease_refresh(&format!("n{i}")).await.unwrap();
            }
            tokio::time::sleep(TTL / 4).await;
        }
    };
    renewing.await;
    let now = holder(&ns).await;
    assert!(now.is_some() && now != first, "B holds the leases: {now:?}");
    assert_eq!(b.client().get_available_nodes().await.unwrap().len(), 10);
    // Nothing left in between: the next event is the first expiry once renewals stop.
    let next = on_b.expect("delete").await;
    assert_eq!(next.data["reason"], "expire");
}
