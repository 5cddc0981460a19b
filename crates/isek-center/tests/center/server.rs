//! `run` on a real socket (127.0.0.1, ephemeral port) with graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use isek_center::Config;
use isek_testkit::condition::wait_until;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[tokio::test]
async fn serves_on_a_socket_and_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(isek_center::run(
        listener,
        Config::on_disk(dir.path()),
        async move {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::new();

    let register = http
        .post(format!("{base}/isek_center/register"))
        .header("content-type", "application/json")
        .body(r#"{"node_id": "n1", "host": "127.0.0.1", "port": 9000, "metadata": {"name": "agent-1", "role": "planner"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 200);
    assert_eq!(register.headers()["content-type"], "application/json");
    assert_eq!(register.headers()["content-length"], "72");
    assert_eq!(
        register.text().await.unwrap(),
        "{\"code\":200,\"data\":null,\"message\":\"Node 'n1' registered successfully.\"}\n"
    );

    let list = http
        .get(format!("{base}/isek_center/available_nodes"))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let body = list.text().await.unwrap();
    // Same shape and length as the original's 194-byte capture when expires_at has 18
    // characters; compare modulo that value.
    let (masked, _) = isek_testkit::router::mask_expires_at(&body);
    assert_eq!(
        masked,
        "{\"code\":200,\"data\":{\"available_nodes\":{\"n1\":{\"expires_at\":X,\"host\":\"127.0.0.1\",\"metadata\":{\"name\":\"agent-1\",\"role\":\"planner\"},\"node_id\":\"n1\",\"port\":9000}}},\"message\":\"success\"}\n"
    );

    let head = http
        .head(format!("{base}/isek_center/available_nodes"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        body.len().to_string()
    );

    // The Rust client of the isek library talks to it too (keep-alive reuse).
    let client = isek::IsekCenterRegistry::new(base.clone()).unwrap();
    use isek::Registry as _;
    client.lease_refresh("n1").await.unwrap();
    let nodes = client.get_available_nodes().await.unwrap();
    assert_eq!(nodes["n1"].port, 9000);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("run returns after shutdown")
        .unwrap()
        .unwrap();
    // The port is closed now.
    assert!(
        http.get(format!("{base}/isek_center/available_nodes"))
            .send()
            .await
            .is_err()
    );
    // And the registration is on disk.
    assert_eq!(crate::leases::stored_ids(dir.path()), ["n1"]);
}

/// Shutdown while registrations are in flight: every registration that was
/// acknowledged is in the store afterwards; the rest failed visibly (an error status
/// or a refused connection), none hangs.
#[tokio::test]
async fn shutdown_under_load_loses_no_acknowledged_registration() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(isek_center::run(
        listener,
        Config::on_disk(dir.path()),
        async move {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // Each worker registers until the shutdown stops it; how it stopped is checked: a
    // 503 envelope (the center is stopping) or a refused/closed connection. A 500, a
    // 4xx or a timeout is a failure, not the end of the load.
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for worker in 0..16 {
        let http = http.clone();
        let base = base.clone();
        let answered = answered.clone();
        clients.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0.. {
                let id = format!("w{worker:02}-{i:05}");
                let body = serde_json::json!({"node_id": id, "host": "h", "port": 1});
                let answer = http
                    .post(format!("{base}/isek_center/register"))
                    .json(&body)
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status() == 200 => {
                        acknowledged.push(id);
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) if r.status() == 503 => {
                        let text = r.text().await.unwrap_or_default();
                        let v: serde_json::Value = serde_json::from_str(&text)
                            .unwrap_or_else(|e| panic!("503 without an envelope ({e}): {text}"));
                        assert_eq!(v["code"], 503, "{text}");
                        break;
                    }
                    Ok(r) => panic!("{id}: {} during the load: {:?}", r.status(), r.text().await),
                    Err(e) if e.is_timeout() => panic!("{id}: timed out: {e}"),
                    Err(e) if e.is_connect() || e.is_request() => break,
                    Err(e) => panic!("{id}: {e}"),
                }
            }
            acknowledged
        }));
    }
    // Shut down under load: once some registrations were acknowledged.
    wait_until("the load has 200 acknowledged registrations", || {
        let answered = answered.clone();
        async move { answered.load(Ordering::Relaxed) >= 200 }
    })
    .await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("run returns after shutdown")
        .unwrap()
        .unwrap();
    let mut acknowledged = Vec::new();
    for client in clients {
        acknowledged.extend(client.await.expect("the worker ended as expected"));
    }
    assert!(acknowledged.len() >= 200);
    let stored = crate::leases::stored_ids(dir.path());
    for id in &acknowledged {
        assert!(
            stored.binary_search(id).is_ok(),
            "{id} was acknowledged but lost"
        );
    }
}
