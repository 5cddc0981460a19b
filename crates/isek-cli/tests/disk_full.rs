//! A full disk (issue 15 item 8): a real `isek center` on a 3 MiB tmpfs, mounted in
//! a mount namespace of its own (`unshare -m`, so nothing outlives the test), is
//! filled with registrations until they get 503; deregistrations must still succeed
//! (the center gives back its `--disk-reserve-bytes` and commits the deletes alone),
//! and the space they free takes a registration again. The center is the shared
//! harness's `CenterProcess::start_on_tmpfs`. Needs root for the mount:
//! skipped elsewhere, except under `CI=true`, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::CenterProcess;
use serde_json::{Value, json};

/// POSTs `body` to `url` + `path`: the status and the envelope.
async fn post(client: &reqwest::Client, url: &str, path: &str, body: &Value) -> (u16, Value) {
    let response = client
        .post(format!("{url}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregistration_works_on_a_full_disk_and_frees_space() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let args = ["--data-dir", data_dir, "--disk-reserve-bytes", "524288"];
    let Some(center) = CenterProcess::start_on_tmpfs(dir.path(), "3m", &args) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "could not mount a tmpfs in a mount namespace (needs root)"
        );
        eprintln!("skipped: could not mount a tmpfs in a mount namespace (needs root)");
        return;
    };
    let url = center.url.as_str();
    let client = reqwest::Client::new();
    let filler = "x".repeat(30_000);
    let register = |i: usize| {
        json!({"node_id": format!("n{i}"), "host": "h", "port": 1,
        "metadata": {"filler": filler}})
    };

    // Fill the disk: registrations until one gets 503 (bounded).
    let mut stored = 0;
    let full = loop {
        assert!(stored < 1000, "3 MiB never filled");
        let (status, envelope) =
            post(&client, url, "/isek_center/register", &register(stored)).await;
        if status == 503 {
            break envelope;
        }
        assert_eq!(status, 200, "{envelope}");
        stored += 1;
    };
    assert!(stored > 10, "only {stored} nodes fitted");
    assert!(
        full["message"].as_str().unwrap().contains("disk is full"),
        "{full}"
    );

    // Deregistrations still work...
    for i in 0..stored / 2 {
        let (status, envelope) = post(
            &client,
            url,
            "/isek_center/deregister",
            &json!({"node_id": format!("n{i}")}),
        )
        .await;
        assert_eq!(status, 200, "deregistering n{i} on a full disk: {envelope}");
    }
    // ... and free space: a registration fits again.
    let (status, envelope) = post(&client, url, "/isek_center/register", &register(0)).await;
    assert_eq!(status, 200, "{envelope}");
    let listing = client
        .get(format!("{url}/isek_center/available_nodes"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let ids = listing["data"]["available_nodes"]
        .as_object()
        .unwrap()
        .len();
    assert_eq!(ids, stored - stored / 2 + 1);
}
