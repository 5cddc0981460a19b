//! The three-member etcd cluster of the fault tests: it forms one Raft group, keeps
//! taking writes when its leader is killed or a member is paused, and a restarted
//! member catches up.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};
use isek_testkit::cluster::EtcdCluster;
use isek_testkit::condition::wait_until;

async fn client(endpoints: &[String]) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    Client::connect(endpoints, Some(options)).await.unwrap()
}

/// A linearizable read of `key` from the member at `endpoint` alone.
async fn read_from(endpoint: &str, key: &str) -> Option<String> {
    let mut c = client(&[endpoint.to_owned()]).await;
    let answer = c.get(key, None).await.ok()?;
    answer
        .kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

#[tokio::test]
async fn cluster_survives_its_leader_killed_and_a_member_paused() {
    let mut cluster = EtcdCluster::start(3).await.unwrap();
    assert_eq!(cluster.len(), 3);
    let endpoints = cluster.endpoints();
    let leader = cluster.wait_leader().await.unwrap();

    // A write through one member is read through every other.
    let mut writer = client(&endpoints).await;
    writer.put("/t/a", "1", None).await.unwrap();
    for endpoint in &endpoints {
        assert_eq!(read_from(endpoint, "/t/a").await.as_deref(), Some("1"));
    }

    // Kill -9 the leader: another member takes over and the cluster writes on.
    cluster.kill(leader);
    assert!(!cluster.is_running(leader));
    let next = cluster.wait_leader().await.unwrap();
    assert_ne!(next, leader);
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| endpoints[i].clone())
        .collect();
    let writer = client(&survivors).await;
    wait_until("a write after the leader died", || {
        let mut writer = writer.clone();
        async move { writer.put("/t/b", "2", None).await.is_ok() }
    })
    .await;

    // The killed member comes back with its data and catches up.
    cluster.restart(leader).await.unwrap();
    let back = endpoints[leader].clone();
    wait_until("the restarted member caught up", || {
        let back = back.clone();
        async move { read_from(&back, "/t/b").await.as_deref() == Some("2") }
    })
    .await;

    // A paused member answers nothing; the other two keep a quorum.
    let lead = cluster.wait_leader().await.unwrap();
    let paused = (0..3).find(|&i| i != lead).unwrap();
    cluster.pause(paused).unwrap();
    let others: Vec<String> = (0..3)
        .filter(|&i| i != paused)
        .map(|i| endpoints[i].clone())
        .collect();
    let mut writer = client(&others).await;
    writer.put("/t/c", "3", None).await.unwrap();
    let stuck = tokio::time::timeout(
        Duration::from_millis(500),
        read_from(&endpoints[paused], "/t/c"),
    )
    .await;
    assert!(
        stuck.is_err() || stuck.unwrap().is_none(),
        "a paused member answered"
    );
    cluster.resume(paused).unwrap();
    let resumed = endpoints[paused].clone();
    wait_until("the resumed member caught up", || {
        let resumed = resumed.clone();
        async move { read_from(&resumed, "/t/c").await.as_deref() == Some("3") }
    })
    .await;
    let all = writer
        .get("/t/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(all.kvs().len(), 3);
}
