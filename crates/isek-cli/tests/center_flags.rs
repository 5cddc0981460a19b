//! Flags of `isek center` reaching a real process: every size limit (at the limit
//! accepted, one byte over refused with its envelope), a fractional `--lease-ttl`, the
//! admin token from `$ISEK_ADMIN_TOKEN` (the harness clears it otherwise), and an empty
//! `--admin-token-file` refused at start.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::{CenterProcess, failure, isek, unix_now};
use isek::identity::NodeIdentity;
use isek::{Error, IsekCenterRegistry, Metadata, Registry};
use serde_json::{Value, json};

/// POSTs `body` as JSON to `url` + `path`; returns the status and the parsed envelope.
async fn post(url: &str, path: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let envelope: Value = response.json().await.unwrap();
    assert_eq!(envelope["code"], status, "{envelope}");
    (status, envelope)
}

/// A registration body.
fn register(node_id: &str, host: &str, metadata: Value) -> Value {
    json!({"node_id": node_id, "host": host, "port": 1, "metadata": metadata})
}

/// Asserts a 400 whose message names `field`.
#[track_caller]
fn refused_naming((status, envelope): (u16, Value), field: &str) {
    assert_eq!(status, 400, "{envelope}");
    let message = envelope["message"].as_str().unwrap();
    assert!(message.contains(field), "{message:?} should name {field}");
}

#[tokio::test]
async fn every_size_flag_and_a_fractional_ttl_reach_the_center() {
    let center = CenterProcess::start(&[
        "--in-memory",
        "--max-body-bytes",
        "1024",
        "--max-metadata-bytes",
        "100",
        "--max-node-id-bytes",
        "12",
        "--max-host-bytes",
        "16",
        "--lease-ttl",
        "1.5",
    ]);
    let url = center.url.as_str();
    const REGISTER: &str = "/isek_center/register";

    // --max-node-id-bytes 12.
    let (status, _) = post(url, REGISTER, &register(&"i".repeat(12), "h", json!({}))).await;
    assert_eq!(status, 200);
    refused_naming(
        post(url, REGISTER, &register(&"i".repeat(13), "h", json!({}))).await,
        "node_id",
    );
    // --max-host-bytes 16.
    let (status, _) = post(url, REGISTER, &register("h", &"h".repeat(16), json!({}))).await;
    assert_eq!(status, 200);
    refused_naming(
        post(url, REGISTER, &register("h", &"h".repeat(17), json!({}))).await,
        "host",
    );
    // --max-metadata-bytes 100: {"k":"vvv..."} is 8 bytes plus the value.
    let (status, _) = post(
        url,
        REGISTER,
        &register("m", "h", json!({"k": "v".repeat(92)})),
    )
    .await;
    assert_eq!(status, 200);
    refused_naming(
        post(
            url,
            REGISTER,
            &register("m", "h", json!({"k": "v".repeat(93)})),
        )
        .await,
        "metadata",
    );
    // --max-body-bytes 1024 (the pad is a field the center ignores).
    let padded = |n: usize| json!({"node_id": "b", "host": "h", "port": 1, "pad": "x".repeat(n)});
    let fits = padded(1024 - padded(0).to_string().len());
    assert_eq!(fits.to_string().len(), 1024);
    let (status, _) = post(url, REGISTER, &fits).await;
    assert_eq!(status, 200);
    let (status, envelope) = post(
        url,
        REGISTER,
        &padded(1024 - padded(0).to_string().len() + 1),
    )
    .await;
    assert_eq!(status, 413, "{envelope}");
    assert_eq!(
        envelope["message"],
        "Request body exceeds the limit of 1024 bytes."
    );

    // --lease-ttl 1.5: a deadline 1.5 s after the registration, not 1 or 2.
    let before = unix_now();
    let (status, _) = post(url, REGISTER, &register("ttl", "h", json!({}))).await;
    assert_eq!(status, 200);
    let after = unix_now();
    let nodes = IsekCenterRegistry::new(url)
        .unwrap()
        .get_available_nodes()
        .await
        .unwrap();
    let expires = nodes["ttl"].expires_at.unwrap();
    assert!(
        expires >= before + 1.5 - 0.001 && expires <= after + 1.5 + 0.001,
        "expires_at {expires} is not 1.5 s after the registration ({before}..{after})"
    );
}

#[tokio::test]
async fn the_admin_token_can_come_from_isek_admin_token() {
    let token = "an-admin-token-from-the-environment";
    let center = CenterProcess::start_with_env(&["--in-memory"], &[("ISEK_ADMIN_TOKEN", token)]);
    let owner = IsekCenterRegistry::new(&center.url)
        .unwrap()
        .with_identity(NodeIdentity::generate());
    for id in ["a", "b"] {
        owner
            .register_node(id, "127.0.0.1", 1, Metadata::new())
            .await
            .unwrap();
    }
    let operator = IsekCenterRegistry::new(&center.url).unwrap();
    match operator.admin_deregister("a", "not-the-token").await {
        Err(Error::PermissionDenied(_)) => {}
        other => panic!("a wrong admin token: {other:?}"),
    }
    operator.admin_deregister("a", token).await.unwrap();
    let listed = operator.get_available_nodes().await.unwrap();
    assert_eq!(listed.keys().collect::<Vec<_>>(), ["b"]);

    // The harness clears the variable: without it (and without a file) there is no
    // admin at all, whatever the test's own environment holds.
    let plain = CenterProcess::start(&["--in-memory"]);
    let owner = IsekCenterRegistry::new(&plain.url)
        .unwrap()
        .with_identity(NodeIdentity::generate());
    owner
        .register_node("c", "127.0.0.1", 1, Metadata::new())
        .await
        .unwrap();
    match IsekCenterRegistry::new(&plain.url)
        .unwrap()
        .admin_deregister("c", token)
        .await
    {
        Err(Error::PermissionDenied(_)) => {}
        other => panic!("admin access without a configured token: {other:?}"),
    }
}

#[test]
fn an_empty_admin_token_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in [("empty", ""), ("blank", " \n\t\n")] {
        let file = dir.path().join(name);
        std::fs::write(&file, content).unwrap();
        let output = isek(&[
            "center",
            "--in-memory",
            "--listen",
            "127.0.0.1:0",
            "--admin-token-file",
            file.to_str().unwrap(),
        ]);
        let line = failure(&output, 1);
        assert!(
            line.contains("--admin-token-file is empty"),
            "{name}: {line}"
        );
    }
}

#[test]
fn look_alike_ids_are_one_line_and_confusable_ids_allow_reaches_the_center() {
    let register = |url: &str, id: &str| {
        isek(&[
            "register",
            "--center",
            url,
            "--node-id",
            id,
            "--host",
            "h",
            "--port",
            "1",
        ])
    };
    let center = CenterProcess::start(&["--in-memory"]);
    let url = center.url.as_str();
    let line = failure(&register(url, "cafe\u{301}"), 1);
    assert!(line.contains("normalization form C"), "{line}");
    let line = failure(&register(url, "n1\u{200b}"), 1);
    assert!(line.contains("U+200B"), "{line}");
    // The default refuses a look-alike of a live node.
    assert!(register(url, "paypal").status.success());
    let line = failure(&register(url, "p\u{430}ypal"), 1);
    assert!(line.contains("looks like the live node 'paypal'"), "{line}");

    let center = CenterProcess::start(&["--in-memory", "--confusable-ids", "allow"]);
    let url = center.url.as_str();
    assert!(register(url, "paypal").status.success());
    assert!(register(url, "p\u{430}ypal").status.success());
    // Invisible characters stay refused whatever the setting.
    failure(&register(url, "\u{feff}paypal"), 1);
}

/// GETs `/v1/nodes` with `query` (already URL-encoded); the status and the envelope.
async fn nodes(url: &str, query: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{url}/v1/nodes?{query}"))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let envelope: Value = response.json().await.unwrap();
    assert_eq!(envelope["code"], status, "{envelope}");
    (status, envelope)
}

#[tokio::test]
async fn the_discovery_flags_reach_the_center_from_the_command_line_and_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("center.toml");
    std::fs::write(&file, "max-page = 2\nmax-filter-bytes = 30\n").unwrap();
    let center = CenterProcess::start(&[
        "--in-memory",
        "--config",
        file.to_str().unwrap(),
        "--max-cursors",
        "1",
        "--max-filter-cost",
        "500",
        "--cursor-ttl",
        "3",
    ]);
    let url = center.url.as_str();
    for i in 0..3 {
        let body = register(&format!("n{i}"), "h", json!({"role": "planner"}));
        assert_eq!(post(url, "/isek_center/register", &body).await.0, 200);
    }
    // max-page = 2 (file): a page of 2 is fine, 3 is refused.
    let (status, first) = nodes(url, "limit=2").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["data"]["nodes"].as_object().unwrap().len(), 2);
    refused_naming(nodes(url, "limit=3").await, "--max-page");
    // --max-cursors 1: the first page's cursor is open, another paged query waits.
    let (status, busy) = nodes(url, "limit=1").await;
    assert_eq!(status, 503, "{busy}");
    assert!(busy["message"].as_str().unwrap().contains("--max-cursors"));
    // max-filter-bytes = 30 (file), --max-filter-cost 500.
    refused_naming(
        nodes(
            url,
            &format!("filter=node_id+%3D%3D+%22{}%22", "x".repeat(30)),
        )
        .await,
        "--max-filter-bytes",
    );
    refused_naming(
        nodes(url, "filter=metadata.l.all(x%2C+x.all(y%2C+y))").await,
        "--max-filter-cost",
    );
    // --cursor-ttl 3: the unused cursor is dropped (410), and its place is free.
    let cursor = first["data"]["cursor"].as_str().unwrap().to_owned();
    isek_testkit::condition::wait_until("the cursor expired", || async {
        nodes(url, &format!("cursor={cursor}")).await.0 == 410
    })
    .await;
    assert_eq!(nodes(url, "limit=1").await.0, 200);
}
