//! `isek run --agent-card FILE|URL` (issue 11): the card is read from a file or fetched
//! from a real HTTP server on a loopback port, validated before registering, and
//! registered as `metadata.agent_card` on a real center; a card that is malformed,
//! not JSON, too large, too slow or missing ends the command with one line naming
//! the source (and the field, or the flag of the limit) before anything registers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::io::{Read, Write};
use std::net::TcpListener;

use harness::fault::{Center, list, run_node};
use harness::{failure, isek};
use serde_json::Value;

/// A valid A2A 0.3 card from the testkit's generator.
fn valid_card() -> Value {
    let node = isek_testkit::agents::agent_node(0, 10);
    isek_testkit::agents::card_of(&node).unwrap().clone()
}

/// Serves `body` with status 200 to every connection, on a free loopback port; with
/// `silent`, accepts and never answers. Returns the URL of `/card.json`.
fn serve(body: Vec<u8>, silent: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/card.json", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            if silent {
                held.push(stream);
                continue;
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    url
}

/// `isek run --agent-card <source>` registers the card it read.
fn registers(center: &Center, port: u16, source: &str) {
    let mut node = run_node(
        &center.url,
        port,
        &["--node-id", "carded", "--agent-card", source],
    );
    node.line("registered", |l| l.starts_with("registered carded"));
    let nodes = list(&center.url);
    assert_eq!(nodes["carded"].metadata["agent_card"], valid_card());
    node.signal("TERM");
    assert!(node.wait().success());
}

#[test]
fn a_card_from_a_file_or_a_url_is_registered() {
    let center = Center::start(&["--in-memory"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("card.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&valid_card()).unwrap()).unwrap();
    registers(&center, 9101, file.to_str().unwrap());
    let url = serve(serde_json::to_vec(&valid_card()).unwrap(), false);
    registers(&center, 9102, &url);
}

/// `isek run` with `extra` flags must fail in one line containing every `wanted`, and
/// register nothing.
fn refused(center: &Center, extra: &[&str], wanted: &[&str]) {
    let mut args = vec![
        "run",
        "--center",
        &center.url,
        "--host",
        "127.0.0.1",
        "--port",
        "9100",
    ];
    args.extend_from_slice(extra);
    let line = failure(&isek(&args), 1);
    for part in wanted {
        assert!(line.contains(part), "{line:?} lacks {part:?}");
    }
    assert!(list(&center.url).is_empty());
}

#[test]
fn bad_cards_are_refused_in_one_line_before_registering() {
    let center = Center::start(&["--in-memory"]);
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();

    let mut card = valid_card();
    card["skills"][1].as_object_mut().unwrap().remove("id");
    std::fs::write(path("bad.json"), serde_json::to_vec(&card).unwrap()).unwrap();
    refused(
        &center,
        &["--agent-card", &path("bad.json")],
        &["bad.json", "metadata.agent_card.skills[1].id", "missing"],
    );
    let url = serve(serde_json::to_vec(&card).unwrap(), false);
    refused(
        &center,
        &["--agent-card", &url],
        &["metadata.agent_card.skills[1].id"],
    );

    std::fs::write(path("text.json"), b"name: not json").unwrap();
    refused(
        &center,
        &["--agent-card", &path("text.json")],
        &["is not JSON"],
    );
    refused(
        &center,
        &["--agent-card", &path("absent.json")],
        &["cannot load --agent-card", "absent.json"],
    );
    let big = serve(serde_json::to_vec(&valid_card()).unwrap(), false);
    refused(
        &center,
        &["--agent-card", &big, "--agent-card-max-bytes", "100"],
        &["--agent-card-max-bytes"],
    );
    refused(
        &center,
        &[
            "--agent-card",
            &path("bad.json"),
            "--agent-card-max-bytes",
            "100",
        ],
        &["--agent-card-max-bytes"],
    );
    let silent = serve(Vec::new(), true);
    refused(
        &center,
        &["--agent-card", &silent, "--agent-card-timeout", "0.3"],
        &["--agent-card-timeout"],
    );
    refused(
        &center,
        &[
            "--agent-card",
            &path("bad.json"),
            "--metadata",
            r#"{"agent_card": {}}"#,
        ],
        &["give the card once"],
    );
}
