//! Operating a center from the command line: the `--config` file (the example in the
//! repository included), `--log-format json`, and the audit trail, which names nodes
//! and outcomes but never a secret.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::path::Path;

use harness::CenterProcess;
use isek::identity::NodeIdentity;
use isek::wire::proof::{ProofRequest, SignedRegisterRequest};
use serde_json::{Value, json};

/// The example configuration at the root of the repository.
fn example_file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../isek-center.example.toml")
}

/// POSTs `body` to `path` of `url`; status and JSON answer.
async fn post(url: &str, path: &str, body: Value, bearer: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .json(&body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Each stderr line as JSON; fails on any line that is not.
fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

#[tokio::test]
async fn the_example_config_file_starts_a_center() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let example = example_file();
    // The example's listen address and data directory yield to the command line.
    let mut center = CenterProcess::start(&[
        "--config",
        example.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let (status, _) = post(
        &center.url,
        "/isek_center/register",
        json!({"node_id": "n1", "host": "127.0.0.1", "port": 9000}),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(center.signal_and_wait("TERM").success());
    assert!(data.join("isek-center.sqlite3").exists());
}

#[tokio::test]
async fn file_keys_apply_and_flags_win_over_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("isek.toml");
    std::fs::write(
        &file,
        "lease-ttl = 2.5\nrequire-signatures = true\nlog-format = \"json\"\ndata-dir = \"/nonexistent/never-used\"\n",
    )
    .unwrap();
    // --in-memory excludes the file's data-dir; --lease-ttl replaces the file's.
    let mut center = CenterProcess::start(&[
        "--config",
        file.to_str().unwrap(),
        "--in-memory",
        "--lease-ttl",
        "4",
    ]);
    let (status, body) = post(
        &center.url,
        "/isek_center/register",
        json!({"node_id": "n1", "host": "127.0.0.1", "port": 9000}),
        None,
    )
    .await;
    assert_eq!(status, 401, "require-signatures from the file: {body}");
    assert!(center.signal_and_wait("TERM").success());
    let lines = json_lines(&center.stderr());
    let start = lines
        .iter()
        .find(|l| l["message"] == "starting")
        .unwrap_or_else(|| panic!("no start line: {lines:?}"));
    assert_eq!(start["store"], "memory");
    assert_eq!(start["lease_ttl"], "4s");
}

#[test]
fn an_unknown_key_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("isek.toml");
    std::fs::write(&file, "lease-tll = 5\n").unwrap();
    let output = harness::isek(&["center", "--config", file.to_str().unwrap()]);
    let line = harness::failure(&output, 2);
    assert!(line.contains("unknown key 'lease-tll'"), "{line}");
}

#[tokio::test]
async fn json_audit_lines_name_nodes_and_outcomes_but_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let admin = "admin-0123456789-abcdef";
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, admin).unwrap();
    let mut center = CenterProcess::start(&[
        "--in-memory",
        "--log-format",
        "json",
        "--admin-token-file",
        token_file.to_str().unwrap(),
    ]);
    let url = center.url.clone();

    let identity = NodeIdentity::generate();
    let signed =
        SignedRegisterRequest::sign(&identity, "agent-7", "127.0.0.1", 9000, Default::default());
    let sent = serde_json::to_value(&signed).unwrap();
    let (status, answer) = post(&url, "/isek_center/register", sent.clone(), None).await;
    assert_eq!(status, 200, "{answer}");
    let token = answer["data"]["lease_token"].as_str().unwrap().to_owned();
    let renew = serde_json::to_value(ProofRequest::with_token("agent-7", &token)).unwrap();
    assert_eq!(post(&url, "/isek_center/renew", renew, None).await.0, 200);
    // A refused attempt with a wrong token, then the operator's deregistration.
    let wrong = serde_json::to_value(ProofRequest::with_token("agent-7", "forged-token")).unwrap();
    assert_eq!(
        post(&url, "/isek_center/deregister", wrong, None).await.0,
        403
    );
    let (status, _) = post(
        &url,
        "/isek_center/deregister",
        json!({"node_id": "agent-7"}),
        Some(admin),
    )
    .await;
    assert_eq!(status, 200);
    assert!(center.signal_and_wait("TERM").success());

    let stderr = center.stderr();
    let lines = json_lines(&stderr);
    let about = |needle: &str| {
        lines
            .iter()
            .filter(|l| l["node_id"] == "agent-7" && l.to_string().contains(needle))
            .count()
    };
    assert!(about("register") >= 1, "no register audit line:\n{stderr}");
    assert!(
        about("deregister") >= 2,
        "no deregister audit lines:\n{stderr}"
    );
    let secrets = [
        token.as_str(),
        admin,
        "forged-token",
        sent["signature"].as_str().unwrap(),
        sent["op_signature"].as_str().unwrap(),
    ];
    for secret in secrets {
        assert!(!stderr.contains(secret), "a secret is logged:\n{stderr}");
    }
}

/// The "listening" line used to come before the store was opened and the replay floor
/// set, so a node signing as soon as it read the line could be refused as "signed
/// before this center started".
#[tokio::test]
async fn a_node_signing_as_soon_as_the_address_is_announced_is_accepted() {
    let identity = NodeIdentity::generate();
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let center = CenterProcess::start(&["--data-dir", dir.path().to_str().unwrap()]);
        let signed =
            SignedRegisterRequest::sign(&identity, "n1", "127.0.0.1", 9000, Default::default());
        let body = serde_json::to_value(&signed).unwrap();
        let (status, answer) = post(&center.url, "/isek_center/register", body, None).await;
        assert_eq!(status, 200, "round {round}: {answer}");
    }
}
