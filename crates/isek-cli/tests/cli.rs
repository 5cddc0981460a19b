//! The `isek` binary against a real `isek center` child process: output and exit
//! codes of every command, and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::time::{Duration, Instant};

use harness::{CenterProcess, dead_port, failure, isek, isek_with_env, success, unix_now};

/// Rounding between the center's listed deadline and this process's clock (the same
/// clock).
const SLACK: f64 = 0.005;
use serde_json::{Value, json};

#[test]
fn client_commands_round_trip_through_a_center() {
    let center = CenterProcess::start(&["--in-memory"]);
    let url = center.url.as_str();

    let out = success(&isek(&["nodes", "--center", url]));
    assert_eq!(out, "No available nodes.\n");
    assert_eq!(
        success(&isek(&["nodes", "--center", url, "--json"])),
        "{}\n"
    );

    let metadata = r#"{"name": "alpha", "card": {"skills": ["a", {"b": null}], "n": 1.5}, "note": "héllo 你好"}"#;
    let out = success(&isek(&[
        "register",
        "--center",
        url,
        "--node-id",
        "alpha",
        "--host",
        "10.0.0.1",
        "--port",
        "8080",
        "--metadata",
        metadata,
    ]));
    assert_eq!(out, "Node 'alpha' registered successfully.\n");
    let out = success(&isek(&[
        "register",
        "--center",
        url,
        "--node-id",
        "beta",
        "--host",
        "beta.local",
        "--port",
        "65535",
    ]));
    assert_eq!(out, "Node 'beta' registered successfully.\n");

    let table = success(&isek(&["nodes", "--center", url]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NODE_ID", "HOST", "PORT", "EXPIRES_IN", "METADATA"]
    );
    let alpha: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&alpha[..3], ["alpha", "10.0.0.1", "8080"]);
    assert!(alpha[3].ends_with('s'), "{table}");
    assert!(lines[1].contains(r#"{"card":{"#), "{table}");
    let beta: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(&beta[..3], ["beta", "beta.local", "65535"]);
    assert_eq!(beta[4], "{}");

    let listing: Value =
        serde_json::from_str(&success(&isek(&["nodes", "--center", url, "--json"]))).unwrap();
    let expected_metadata: Value = serde_json::from_str(metadata).unwrap();
    assert_eq!(listing["alpha"]["node_id"], "alpha");
    assert_eq!(listing["alpha"]["host"], "10.0.0.1");
    assert_eq!(listing["alpha"]["port"], 8080);
    assert_eq!(listing["alpha"]["metadata"], expected_metadata);
    assert!(listing["alpha"]["expires_at"].as_f64().unwrap() > 1.0e9);
    assert_eq!(listing["beta"]["metadata"], json!({}));

    let out = success(&isek(&["renew", "--center", url, "--node-id", "alpha"]));
    assert_eq!(out, "Lease for node 'alpha' renewed successfully.\n");
    let out = success(&isek(&[
        "deregister",
        "--center",
        url,
        "--node-id",
        "alpha",
    ]));
    assert_eq!(out, "Node 'alpha' deregistered successfully.\n");
    let listing: Value =
        serde_json::from_str(&success(&isek(&["nodes", "--center", url, "--json"]))).unwrap();
    assert_eq!(
        listing.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["beta"]
    );
}

#[test]
fn failures_are_one_line_on_stderr_with_a_non_zero_exit() {
    let center = CenterProcess::start(&["--in-memory"]);
    let url = center.url.as_str();

    // Errors from the center: the typed error, then the center's message.
    let line = failure(&isek(&["renew", "--center", url, "--node-id", "ghost"]), 1);
    assert_eq!(
        line,
        "error: not found: Node 'ghost' not found for lease renewal."
    );
    let line = failure(
        &isek(&["deregister", "--center", url, "--node-id", "ghost"]),
        1,
    );
    assert_eq!(
        line,
        "error: not found: Node 'ghost' not found for deregistration."
    );
    let line = failure(
        &isek(&[
            "register",
            "--center",
            url,
            "--node-id",
            "a/b",
            "--host",
            "h",
            "--port",
            "1",
        ]),
        1,
    );
    assert!(line.starts_with("error: invalid argument: "), "{line}");

    // Bad command lines, rejected before any call.
    let register = |extra: &[&str]| {
        let mut args = vec!["register", "--center", url, "--node-id", "n", "--host", "h"];
        args.extend_from_slice(extra);
        isek(&args)
    };
    let line = failure(&register(&["--port", "1", "--metadata", "{bad"]), 2);
    assert!(
        line.contains("--metadata") && line.contains("not valid JSON"),
        "{line}"
    );
    let line = failure(&register(&["--port", "1", "--metadata", "[1, 2]"]), 2);
    assert!(
        line.contains("must be a JSON object, not an array"),
        "{line}"
    );
    let line = failure(&register(&["--port", "1", "--metadata", "\"card\""]), 2);
    assert!(line.contains("not a string"), "{line}");
    let line = failure(&register(&["--port", "0"]), 2);
    assert!(line.contains("--port"), "{line}");
    let line = failure(&register(&["--port", "70000"]), 2);
    assert!(line.contains("--port"), "{line}");
    let line = failure(&register(&["--port", "eighty"]), 2);
    assert!(line.contains("--port"), "{line}");
    let line = failure(&register(&[]), 2);
    assert!(line.contains("--port"), "{line}");
    let line = failure(&isek(&["renew", "--center", url]), 2);
    assert!(line.contains("--node-id"), "{line}");
    let line = failure(&isek(&["frobnicate"]), 2);
    assert!(line.contains("frobnicate"), "{line}");
    let line = failure(&isek(&["nodes", "--center", url, "--bogus"]), 2);
    assert!(line.contains("--bogus"), "{line}");

    // Nothing was registered by any of it.
    assert_eq!(
        success(&isek(&["nodes", "--center", url])),
        "No available nodes.\n"
    );
}

#[test]
fn unreachable_or_malformed_center_urls_fail_fast() {
    let dead = format!("http://127.0.0.1:{}", dead_port());
    for args in [
        vec!["nodes", "--center", &dead],
        vec!["renew", "--center", &dead, "--node-id", "n"],
        vec!["deregister", "--center", &dead, "--node-id", "n"],
        vec![
            "register",
            "--center",
            &dead,
            "--node-id",
            "n",
            "--host",
            "h",
            "--port",
            "1",
        ],
    ] {
        let line = failure(&isek(&args), 1);
        assert!(line.starts_with("error: unavailable: "), "{line}");
        assert!(line.contains(&dead), "{line}");
    }
    let line = failure(&isek(&["nodes", "--center", "ftp://example.org"]), 1);
    assert!(line.contains("ftp://example.org"), "{line}");
}

#[test]
fn isek_center_environment_variable_is_the_default_center() {
    let center = CenterProcess::start(&["--in-memory"]);
    let env = [("ISEK_CENTER", center.url.as_str())];
    let out = success(&isek_with_env(
        &["register", "--node-id", "env", "--host", "h", "--port", "9"],
        &env,
    ));
    assert_eq!(out, "Node 'env' registered successfully.\n");
    let listing: Value =
        serde_json::from_str(&success(&isek_with_env(&["nodes", "--json"], &env))).unwrap();
    assert_eq!(listing["env"]["port"], 9);

    // --center wins over the variable.
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let line = failure(&isek_with_env(&["nodes", "--center", &dead], &env), 1);
    assert!(line.contains(&dead), "{line}");
    let stray = [("ISEK_CENTER", dead.as_str())];
    let out = success(&isek_with_env(
        &["renew", "--center", &center.url, "--node-id", "env"],
        &stray,
    ));
    assert_eq!(out, "Lease for node 'env' renewed successfully.\n");
}

#[test]
fn center_shuts_down_cleanly_on_sigterm_and_sigint() {
    for signal in ["TERM", "INT"] {
        let mut center = CenterProcess::start(&["--in-memory"]);
        success(&isek(&[
            "register",
            "--center",
            &center.url,
            "--node-id",
            "n",
            "--host",
            "h",
            "--port",
            "1",
        ]));
        let status = center.signal_and_wait(signal);
        assert!(
            status.success(),
            "SIG{signal}: exit {status}; stderr:\n{}",
            center.stderr()
        );
        // It really stopped serving.
        let line = failure(&isek(&["nodes", "--center", &center.url]), 1);
        assert!(line.starts_with("error: unavailable: "), "{line}");
    }
}

#[test]
fn center_flags_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let line = failure(&isek(&["center", "--data-dir", data_dir, "--in-memory"]), 2);
    assert!(
        line.contains("--in-memory") && line.contains("--data-dir"),
        "{line}"
    );
    let line = failure(&isek(&["center", "--in-memory", "--lease-ttl", "0"]), 2);
    assert!(line.contains("--lease-ttl"), "{line}");
    let line = failure(&isek(&["center", "--in-memory", "--lease-ttl", "soon"]), 2);
    assert!(line.contains("--lease-ttl"), "{line}");
    let line = failure(
        &isek(&["center", "--in-memory", "--listen", "not an address"]),
        1,
    );
    assert!(line.contains("cannot listen on not an address"), "{line}");
    // A data directory that cannot be created (its parent is a file).
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let below_file = file.join("store");
    let line = failure(
        &isek(&[
            "center",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            below_file.to_str().unwrap(),
        ]),
        1,
    );
    assert!(line.contains("cannot create the data directory"), "{line}");
    // A port that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let line = failure(&isek(&["center", "--in-memory", "--listen", &address]), 1);
    assert!(line.contains(&address), "{line}");
}

#[test]
fn leases_expire_after_lease_ttl() {
    let center = CenterProcess::start(&["--in-memory", "--lease-ttl", "1"]);
    let url = center.url.as_str();
    // The lease runs for 1 s from the registration, which starts after this.
    let registering = unix_now();
    success(&isek(&[
        "register",
        "--center",
        url,
        "--node-id",
        "brief",
        "--host",
        "h",
        "--port",
        "1",
    ]));
    let listing: Value =
        serde_json::from_str(&success(&isek(&["nodes", "--center", url, "--json"]))).unwrap();
    // Listed with a deadline a full TTL from the registration, if the answer came
    // before the lease could have run out (a slower machine checks the deadline only).
    let answered = unix_now();
    match listing["brief"]["expires_at"].as_f64() {
        Some(expires_at) => assert!(expires_at >= registering + 1.0 - SLACK, "{listing}"),
        None => assert!(
            answered >= registering + 1.0,
            "not listed at once: {listing}"
        ),
    }
    // Wait (bounded) for the lease to run out: the suite checks that it does, not how
    // fast; and not before the deadline the center announced.
    let expires_at = listing["brief"]["expires_at"].as_f64();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let asked = unix_now();
        let listing: Value =
            serde_json::from_str(&success(&isek(&["nodes", "--center", url, "--json"]))).unwrap();
        if listing.get("brief").is_none() {
            if let Some(expires_at) = expires_at {
                assert!(
                    unix_now() >= expires_at - SLACK,
                    "gone at {asked}, before its deadline {expires_at}"
                );
            }
            break;
        }
        assert!(Instant::now() < deadline, "node never expired: {listing}");
    }
    let line = failure(&isek(&["renew", "--center", url, "--node-id", "brief"]), 1);
    assert_eq!(
        line,
        "error: not found: Node 'brief' not found for lease renewal."
    );
}

#[test]
fn help_and_version_succeed() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["center", "--help"],
        &["register", "--help"],
    ] {
        let output = isek(args);
        assert!(output.status.success(), "{args:?}");
        assert!(!output.stdout.is_empty(), "{args:?}");
    }
    let help = String::from_utf8(isek(&["nodes", "--help"]).stdout).unwrap();
    assert!(help.contains("ISEK_CENTER"), "{help}");
}
