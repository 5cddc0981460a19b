//! `isek nodes --filter EXPR [--limit N]` (issue 11) against a real center process
//! (the filter evaluated from its indexes, pages followed) and a real etcd (evaluated
//! here by the same code), and the one-line errors of a bad expression: refused before
//! sending (line:column), or refused by the center under its own limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::{CenterProcess, failure, isek, success};
use isek::etcd::{EtcdConfig, EtcdRegistry};
use isek::identity::NodeIdentity;
use isek::{IsekCenterRegistry, Registry};
use isek_testkit::etcd::EtcdNamespace;
use serde_json::{Value, json};

/// The filter of these tests: three of the five nodes [`populate`] registers.
const PLANNERS: &str = r#"metadata.role == "planner" && "search" in metadata.skills.map(s, s.id)"#;

/// Registers `a`..`e`: a, c, e are planners with the `search` skill; b is a planner
/// without it; d is a worker with it.
async fn populate(registry: &dyn Registry) {
    for (i, id) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
        let role = if id == "d" { "worker" } else { "planner" };
        let skill = if id == "b" { "chat" } else { "search" };
        let card = json!({"role": role, "skills": [{"id": skill}]});
        let Value::Object(metadata) = card else {
            unreachable!()
        };
        registry
            .register_node(id, "127.0.0.1", 9000 + i as u16, metadata)
            .await
            .unwrap();
    }
}

/// The ids of `isek nodes --json` output.
fn ids(stdout: &str) -> Vec<String> {
    let listing: serde_json::Map<String, Value> = serde_json::from_str(stdout).unwrap();
    listing.keys().cloned().collect()
}

#[tokio::test]
async fn nodes_filter_against_a_center_walks_its_pages() {
    let center = CenterProcess::start(&["--in-memory", "--max-page", "2"]);
    let client = IsekCenterRegistry::new(&center.url).unwrap();
    populate(&client).await;
    let url = center.url.as_str();

    // Three matches on pages of two: every page is followed.
    let out = success(&isek(&[
        "nodes", "--center", url, "--filter", PLANNERS, "--json",
    ]));
    assert_eq!(ids(&out), ["a", "c", "e"]);
    // --limit: the first matches only, and the table says more match.
    let out = success(&isek(&[
        "nodes", "--center", url, "--filter", PLANNERS, "--limit", "1",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[1].starts_with("a "), "{out}");
    assert_eq!(lines[2], "(more nodes match; raise --limit to list them)");
    // --limit alone pages the whole listing.
    let out = success(&isek(&["nodes", "--center", url, "--limit", "2", "--json"]));
    assert_eq!(ids(&out), ["a", "b"]);

    // A bad expression never leaves the client: one line with its position.
    let line = failure(
        &isek(&["nodes", "--center", url, "--filter", "metadata.role =="]),
        1,
    );
    assert!(
        line.starts_with("error: invalid --filter: filter 1:"),
        "{line}"
    );
    let line = failure(
        &isek(&["nodes", "--center", url, "--filter", "rolee == 1"]),
        1,
    );
    assert!(line.contains("unknown name 'rolee'"), "{line}");
}

#[tokio::test]
async fn a_filter_the_center_refuses_is_one_line() {
    let center = CenterProcess::start(&["--in-memory", "--max-filter-bytes", "16"]);
    let line = failure(
        &isek(&["nodes", "--center", &center.url, "--filter", PLANNERS]),
        1,
    );
    assert!(line.contains("--max-filter-bytes"), "{line}");
}

#[tokio::test]
async fn nodes_filter_on_etcd_is_evaluated_by_the_client() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let mut config = EtcdConfig::new([etcd.endpoint()]);
    config.parent_node_id = etcd.parent().to_owned();
    let registry = EtcdRegistry::connect(config, NodeIdentity::generate())
        .await
        .unwrap();
    populate(&registry).await;
    let endpoint = etcd.endpoint();
    let base = ["nodes", "--etcd", &endpoint, "--parent", etcd.parent()];
    let mut args = base.to_vec();
    args.extend(["--filter", PLANNERS, "--json"]);
    assert_eq!(ids(&success(&isek(&args))), ["a", "c", "e"]);
    let mut args = base.to_vec();
    args.extend(["--filter", r#"metadata.role == "worker""#, "--json"]);
    assert_eq!(ids(&success(&isek(&args))), ["d"]);
    let mut args = base.to_vec();
    args.extend(["--filter", PLANNERS, "--limit", "2", "--json"]);
    assert_eq!(ids(&success(&isek(&args))), ["a", "c"]);
}

#[test]
fn watch_filter_prints_only_matching_nodes() {
    use harness::fault::Proc;
    let center = CenterProcess::start(&["--in-memory"]);
    let url = center.url.clone();
    let mut watch = Proc::spawn(
        "watch",
        &[
            "watch",
            "--center",
            &url,
            "--filter",
            r#"metadata.role == "planner""#,
        ],
    );
    watch.line("live", |l| l.starts_with("# live"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = IsekCenterRegistry::new(&url).unwrap();
        for (id, role) in [("w", "worker"), ("p", "planner")] {
            let Value::Object(metadata) = json!({ "role": role }) else {
                unreachable!()
            };
            client
                .register_node(id, "127.0.0.1", 9400, metadata)
                .await
                .unwrap();
        }
    });
    let line = watch.line("a join", |l| l.starts_with("+ "));
    assert_eq!(line.text, "+ p 127.0.0.1:9400", "{}", watch.transcript());
    let line = failure(&isek(&["watch", "--center", &url, "--filter", "port >"]), 1);
    assert!(
        line.starts_with("error: invalid --filter: filter 1:"),
        "{line}"
    );
}
