//! `EtcdRegistry`'s shared keep-alive stream against a real etcd: many leases on one
//! stream, reconnecting after etcd restarts, bounded in-flight keep-alives, and the
//! ownership check that stays exact while skipping reads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use isek::etcd::{EtcdConfig, EtcdRegistry};
use isek::identity::NodeIdentity;
use isek::{Error, Metadata, Registry};
use isek_testkit::etcd::{EtcdNamespace, EtcdServer};

async fn registry(config: EtcdConfig) -> Arc<EtcdRegistry> {
    Arc::new(
        EtcdRegistry::connect(config, NodeIdentity::generate())
            .await
            .unwrap(),
    )
}

async fn raw_client(endpoint: String) -> etcd_client::Client {
    etcd_client::Client::connect([endpoint], None)
        .await
        .unwrap()
}

/// How many `LeaseKeepAlive` streams etcd has seen opened, and keep-alive requests it
/// has received on them.
async fn keep_alive_counters(etcd: &EtcdServer) -> (f64, f64) {
    let method = "grpc_method=\"LeaseKeepAlive\"";
    let streams = etcd
        .metric("grpc_server_started_total", &[method])
        .await
        .unwrap();
    let messages = etcd
        .metric("grpc_server_msg_received_total", &[method])
        .await
        .unwrap();
    (streams, messages)
}

/// Registers `n0..n{count}` and returns their ids.
async fn register_many(reg: &EtcdRegistry, count: usize) -> Vec<String> {
    let ids: Vec<String> = (0..count).map(|i| format!("n{i}")).collect();
    for id in &ids {
        reg.register_node(id, "10.0.0.1", 9000, Metadata::new())
            .await
            .unwrap();
    }
    ids
}

/// Refreshes every id once with `concurrency` in flight; returns the results in the
/// order of `ids`.
async fn refresh_all(
    reg: &Arc<EtcdRegistry>,
    ids: &[String],
    concurrency: usize,
) -> Vec<isek::Result<()>> {
    let calls: Vec<_> = ids
        .iter()
        .map(|id| {
            let (reg, id) = (reg.clone(), id.clone());
            async move { reg.lease_refresh(&id).await }
        })
        .collect();
    futures::stream::iter(calls)
        .buffered(concurrency)
        .collect()
        .await
}

#[tokio::test]
async fn many_leases_refresh_concurrently_over_one_stream() {
    let etcd = EtcdServer::start().await.unwrap();
    let reg = registry(EtcdConfig::new([etcd.endpoint()])).await;
    let ids = register_many(&reg, 300).await;
    let (streams_before, messages_before) = keep_alive_counters(&etcd).await;
    for _ in 0..3 {
        let results = refresh_all(&reg, &ids, 64).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }
    let (streams, messages) = keep_alive_counters(&etcd).await;
    // 900 refreshes, one stream (a stream per refresh before).
    assert_eq!(streams - streams_before, 1.0, "keep-alive streams opened");
    assert!(
        messages - messages_before >= 900.0,
        "{messages} keep-alives"
    );
    assert_eq!(reg.keep_alives_in_flight(), 0);
    // Every node is still listed: the leases were really renewed, not just answered.
    assert_eq!(reg.get_available_nodes().await.unwrap().len(), ids.len());
}

#[tokio::test]
async fn refresh_reconnects_its_stream_after_etcd_restarts() {
    let mut etcd = EtcdServer::start().await.unwrap();
    let reg = registry(EtcdConfig::new([etcd.endpoint()]).timeout(Duration::from_secs(2))).await;
    let ids = register_many(&reg, 50).await;
    assert!(refresh_all(&reg, &ids, 16).await.iter().all(Result::is_ok));
    etcd.restart().await.unwrap();
    // The old stream died with etcd; the next refreshes open a new one (the first may
    // still meet the broken one and report Unavailable, never a wrong answer).
    let mut recovered = false;
    for _ in 0..50 {
        let results = refresh_all(&reg, &ids, 16).await;
        for r in &results {
            assert!(matches!(r, Ok(()) | Err(Error::Unavailable(_))), "{r:?}");
        }
        if results.iter().all(Result::is_ok) {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "refreshes did not recover after etcd restarted");
    let (streams, _) = keep_alive_counters(&etcd).await;
    assert!(
        streams <= 2.0,
        "{streams} keep-alive streams after the restart"
    );
    assert!(refresh_all(&reg, &ids, 16).await.iter().all(Result::is_ok));
    assert_eq!(reg.keep_alives_in_flight(), 0);
    // Expiry still works through the new stream: a revoked lease is NotFound.
    let mut raw = raw_client(etcd.endpoint()).await;
    let lease = raw.get("/root/n0", None).await.unwrap().kvs()[0].lease();
    raw.lease_revoke(lease).await.unwrap();
    let err = reg.lease_refresh("n0").await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    reg.lease_refresh("n1").await.unwrap();
}

#[tokio::test]
async fn refresh_refuses_a_key_another_identity_overwrote_while_streaming() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let reg = registry(etcd.config()).await;
    let ids = register_many(&reg, 20).await;
    assert!(refresh_all(&reg, &ids, 8).await.iter().all(Result::is_ok));
    // Another identity takes n3 over (the original ISEK writes with no checks; here it
    // is an isek registry of its own that found the key free after a delete).
    let mut raw = raw_client(etcd.endpoint()).await;
    raw.delete(etcd.key("n3"), None).await.unwrap();
    let mallory = registry(etcd.config()).await;
    mallory
        .register_node("n3", "10.6.6.6", 6666, Metadata::new())
        .await
        .unwrap();
    let results = refresh_all(&reg, &ids, 8).await;
    for (id, r) in ids.iter().zip(&results) {
        if id == "n3" {
            assert!(matches!(r, Err(Error::PermissionDenied(_))), "{r:?}");
        } else {
            assert!(r.is_ok(), "{id}: {r:?}");
        }
    }
    // Refused every time, and mallory's node is untouched (our old lease was revoked,
    // not theirs).
    let err = reg.lease_refresh("n3").await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied(_)), "{err}");
    mallory.lease_refresh("n3").await.unwrap();
    assert_eq!(
        reg.get_available_nodes().await.unwrap()["n3"].host,
        "10.6.6.6"
    );
}

#[tokio::test]
async fn keep_alives_in_flight_stay_within_the_bound() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let bound = 4;
    let reg = registry(etcd.config().max_keepalive_in_flight(bound)).await;
    let ids = register_many(&reg, 100).await;
    assert!(refresh_all(&reg, &ids, 8).await.iter().all(Result::is_ok));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (reg, peak, done) = (reg.clone(), peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(reg.keep_alives_in_flight(), Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    // 256 callers at once on 4 slots: all served, never more than 4 waiting on etcd.
    for _ in 0..3 {
        let results = refresh_all(&reg, &ids, 256).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let peak = peak.load(Ordering::Relaxed);
    assert!((1..=bound).contains(&peak), "peak in flight {peak}");
    assert_eq!(reg.keep_alives_in_flight(), 0);

    // Callers that give up (dropped futures) leave nothing behind once etcd answers.
    for _ in 0..20 {
        let _ = tokio::time::timeout(Duration::from_micros(50), refresh_all(&reg, &ids, 64)).await;
    }
    let drained = async {
        while reg.keep_alives_in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .expect("abandoned keep-alives were never removed");
    assert!(refresh_all(&reg, &ids, 64).await.iter().all(Result::is_ok));
}

#[tokio::test]
async fn keep_alives_pending_when_etcd_dies_are_released() {
    let mut etcd = EtcdServer::start().await.unwrap();
    let reg =
        registry(EtcdConfig::new([etcd.endpoint()]).timeout(Duration::from_millis(800))).await;
    let ids = register_many(&reg, 200).await;
    assert!(refresh_all(&reg, &ids, 32).await.iter().all(Result::is_ok));
    let load = {
        let (reg, ids) = (reg.clone(), ids.clone());
        tokio::spawn(async move {
            let mut results = Vec::new();
            for _ in 0..20 {
                results.extend(refresh_all(&reg, &ids, 128).await);
            }
            results
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    etcd.stop();
    let results = load.await.unwrap();
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(Error::Unavailable(_)))),
        "no refresh noticed etcd was gone"
    );
    for r in &results {
        assert!(matches!(r, Ok(()) | Err(Error::Unavailable(_))), "{r:?}");
    }
    assert_eq!(reg.keep_alives_in_flight(), 0);
}

#[tokio::test]
async fn refused_registration_leaves_no_lease_behind() {
    let etcd = EtcdServer::start().await.unwrap();
    let alice = registry(EtcdConfig::new([etcd.endpoint()])).await;
    let mallory = registry(EtcdConfig::new([etcd.endpoint()])).await;
    alice
        .register_node("n", "h", 1, Metadata::new())
        .await
        .unwrap();
    let mut raw = raw_client(etcd.endpoint()).await;
    let before = raw.leases().await.unwrap().leases().len();
    for _ in 0..5 {
        let err = mallory
            .register_node("n", "x", 2, Metadata::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err}");
    }
    assert_eq!(raw.leases().await.unwrap().leases().len(), before);
    // Re-registering by the owner replaces the lease: still one lease for the node.
    alice
        .register_node("n", "h", 3, Metadata::new())
        .await
        .unwrap();
    assert_eq!(raw.leases().await.unwrap().leases().len(), before);
    alice.lease_refresh("n").await.unwrap();
}
