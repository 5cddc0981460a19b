//! `GET /v1/watch?since=REV` needs the epoch REV belongs to: without it, a client
//! that missed a restart used to resume in the new epoch and silently miss changes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use isek::{IsekCenterRegistry, Metadata, Registry};
use isek_testkit::center::ServedCenter;
use serde_json::Value;

/// Status and JSON body of a GET; `null` for a change stream, which never ends.
async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    if response.headers()["content-type"] == "text/event-stream" {
        return (status, Value::Null);
    }
    (status, response.json().await.unwrap())
}

/// `since` without `epoch` used to resume in whatever epoch was current, so a client
/// that did not notice a restart silently missed changes. It is a 410 now, with the
/// same envelope as the other unresumable cases.
#[tokio::test]
async fn since_without_epoch_is_refused_with_a_410() {
    let served = ServedCenter::start(isek_center::Config::in_memory(Duration::from_secs(30))).await;
    let url = served.url();
    let client = IsekCenterRegistry::new(&url).unwrap();
    for i in 0..3 {
        client
            .register_node(&format!("n{i}"), "h", 9000, Metadata::new())
            .await
            .unwrap();
    }
    let (_, listed) = get(&format!("{url}/v1/nodes")).await;
    let revision = listed["data"]["revision"].as_u64().unwrap();
    let epoch = listed["data"]["epoch"].as_u64().unwrap();

    let (status, body) = get(&format!("{url}/v1/watch?since={}", revision - 1)).await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["code"], 410);
    assert_eq!(body["data"]["revision"], revision);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("epoch") && message.contains("/v1/nodes"),
        "{message}"
    );

    // With the epoch, the same revision resumes.
    let response = reqwest::get(format!(
        "{url}/v1/watch?since={}&epoch={epoch}",
        revision - 1
    ))
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}
