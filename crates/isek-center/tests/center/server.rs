//! `run` on a real socket (127.0.0.1, ephemeral port) with graceful shutdown.

use std::time::Duration;

use isek_center::Config;
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
    let (masked, _) = crate::harness::mask_expires_at(&body);
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
