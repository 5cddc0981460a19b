//! `isek run --check URL|CMD` (issue 11): the lease is tied to the agent's own health
//! check. With a real center (30 s leases, so a node that leaves did so by
//! deregistering, not by expiring) and a real check (a shell command testing a file;
//! an HTTP server on a loopback port answering 200 or 503), a check that starts
//! failing makes the node deregister after `--check-failures` failures (an `unhealthy`
//! line, gone from the listing), and passing again registers it again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use harness::fault::{Center, Proc, eventually, list};

/// `isek run` of node `id` with `--check check` every 0.2 s, unhealthy after 3.
fn checked_node(center: &Center, id: &str, check: &str) -> Proc {
    Proc::spawn(
        id,
        &[
            "run",
            "--center",
            &center.url,
            "--node-id",
            id,
            "--host",
            "127.0.0.1",
            "--port",
            "9200",
            "--ttl",
            "30",
            "--check",
            check,
            "--check-interval",
            "0.2",
            "--check-timeout",
            "1",
            "--check-failures",
            "3",
        ],
    )
}

/// Registered, withdrawn while `fail` holds, back once `pass` ran.
fn leaves_and_returns(center: &Center, id: &str, check: &str, fail: impl Fn(), pass: impl Fn()) {
    let mut node = checked_node(center, id, check);
    node.line("registered", |l| l.starts_with(&format!("registered {id}")));
    assert!(list(&center.url).contains_key(id));

    fail();
    let line = node.line("unhealthy", |l| l.starts_with(&format!("unhealthy {id}")));
    assert!(line.text.contains("3 failed checks"), "{}", line.text);
    // Deregistered before the line was printed: gone at once, long before its 30 s lease.
    assert!(!list(&center.url).contains_key(id), "{}", node.transcript());

    pass();
    node.line("registered again", |l| {
        l.starts_with(&format!("registered {id}"))
    });
    eventually(
        "the node is listed again",
        || list(&center.url).contains_key(id),
        || node.transcript(),
    );
    node.signal("TERM");
    assert!(node.wait().success(), "{}", node.transcript());
    assert!(!list(&center.url).contains_key(id));
}

#[test]
fn a_failing_command_check_withdraws_the_node_until_it_passes() {
    let center = Center::start_with_ttl("30", &["--in-memory"]);
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("healthy");
    std::fs::write(&flag, b"").unwrap();
    let check = format!("test -f '{}'", flag.display());
    leaves_and_returns(
        &center,
        "cmd-checked",
        &check,
        || std::fs::remove_file(&flag).unwrap(),
        || std::fs::write(&flag, b"").unwrap(),
    );
}

#[test]
fn a_failing_http_check_withdraws_the_node_until_it_passes() {
    let center = Center::start_with_ttl("30", &["--in-memory"]);
    let healthy = Arc::new(AtomicBool::new(true));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/healthz", listener.local_addr().unwrap());
    let state = Arc::clone(&healthy);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 2048];
            let _ = stream.read(&mut request);
            let status = if state.load(Ordering::SeqCst) {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    leaves_and_returns(
        &center,
        "http-checked",
        &url,
        || healthy.store(false, Ordering::SeqCst),
        || healthy.store(true, Ordering::SeqCst),
    );
}
