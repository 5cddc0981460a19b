//! `isek` against a real `isek center` child with the security flags: signed
//! registrations with `--identity`, renew/deregister from other processes (they sign),
//! refusals without proof, `--admin-token-file`, `--require-signatures`, `--max-nodes`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::{CenterProcess, failure, isek, success};

/// `isek register` on `url` with extra flags.
fn register(url: &str, id: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "register",
        "--center",
        url,
        "--node-id",
        id,
        "--host",
        "10.0.0.1",
        "--port",
        "9000",
    ];
    args.extend_from_slice(extra);
    isek(&args)
}

#[test]
fn identities_own_their_nodes_and_the_admin_token_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let admin = dir.path().join("admin.token");
    std::fs::write(&admin, "a-long-enough-admin-token\n").unwrap();
    let admin = admin.to_str().unwrap();
    let center = CenterProcess::start(&["--in-memory", "--admin-token-file", admin]);
    let url = center.url.as_str();
    let key = dir.path().join("n.key.pem");
    let key = key.to_str().unwrap();
    success(&isek(&["keygen", "--out", key]));
    let other = dir.path().join("other.key.pem");
    let other = other.to_str().unwrap();
    success(&isek(&["keygen", "--out", other]));

    assert_eq!(
        success(&register(url, "n", &["--identity", key])),
        "Node 'n' registered successfully.\n"
    );
    // Without proof, or with another key: refused, one line, exit 1.
    for args in [
        vec!["renew", "--center", url, "--node-id", "n"],
        vec!["deregister", "--center", url, "--node-id", "n"],
        vec![
            "renew",
            "--center",
            url,
            "--node-id",
            "n",
            "--identity",
            other,
        ],
        vec![
            "deregister",
            "--center",
            url,
            "--node-id",
            "n",
            "--identity",
            other,
        ],
    ] {
        let line = failure(&isek(&args), 1);
        assert!(line.contains("permission denied"), "{line}");
    }
    let line = failure(&register(url, "n", &[]), 1);
    assert!(line.contains("needs a signature"), "{line}");
    let line = failure(&register(url, "n", &["--identity", other]), 1);
    assert!(line.contains("another key"), "{line}");
    // Another process with the key signs (it has no token).
    assert_eq!(
        success(&isek(&[
            "renew",
            "--center",
            url,
            "--node-id",
            "n",
            "--identity",
            key
        ])),
        "Lease for node 'n' renewed successfully.\n"
    );
    // A wrong admin token is refused; the right one removes the node.
    let wrong = dir.path().join("wrong.token");
    std::fs::write(&wrong, "nope").unwrap();
    let wrong = wrong.to_str().unwrap();
    let line = failure(
        &isek(&[
            "deregister",
            "--center",
            url,
            "--node-id",
            "n",
            "--admin-token-file",
            wrong,
        ]),
        1,
    );
    assert!(line.contains("permission denied"), "{line}");
    assert_eq!(
        success(&isek(&[
            "deregister",
            "--center",
            url,
            "--node-id",
            "n",
            "--admin-token-file",
            admin
        ])),
        "Node 'n' deregistered successfully.\n"
    );
    assert_eq!(
        success(&isek(&["nodes", "--center", url])),
        "No available nodes.\n"
    );
    // Signed deregistration by the owner from another process.
    success(&register(url, "m", &["--identity", key]));
    assert_eq!(
        success(&isek(&[
            "deregister",
            "--center",
            url,
            "--node-id",
            "m",
            "--identity",
            key
        ])),
        "Node 'm' deregistered successfully.\n"
    );
}

#[test]
fn require_signatures_and_max_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let center = CenterProcess::start(&["--in-memory", "--require-signatures", "--max-nodes", "1"]);
    let url = center.url.as_str();
    let line = failure(&register(url, "py", &[]), 1);
    assert!(line.contains("requires signed registrations"), "{line}");
    let key = dir.path().join("k.pem");
    let key = key.to_str().unwrap();
    success(&isek(&["keygen", "--out", key]));
    success(&register(url, "a", &["--identity", key]));
    let line = failure(&register(url, "b", &["--identity", key]), 1);
    assert!(line.contains("center is full (1 nodes)"), "{line}");
    success(&register(url, "a", &["--identity", key]));
}

#[test]
fn https_center_and_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let center = CenterProcess::start(&["--in-memory", "--tls-cert", cert, "--tls-key", key]);
    let port = center.url.rsplit(':').next().unwrap();
    assert!(center.url.starts_with("https://"), "{}", center.url);
    let url = format!("https://localhost:{port}");
    let url = url.as_str();
    let line = failure(&register(url, "n", &[]), 1);
    assert!(line.contains("unavailable"), "{line}");
    assert_eq!(
        success(&register(url, "n", &["--ca-file", cert])),
        "Node 'n' registered successfully.\n"
    );
    let out = success(&isek(&[
        "nodes",
        "--center",
        url,
        "--ca-file",
        cert,
        "--json",
    ]));
    assert!(out.contains("\"n\""), "{out}");
    // Unusable TLS files fail at start with one line.
    let line = failure(
        &isek(&[
            "center",
            "--listen",
            "127.0.0.1:0",
            "--in-memory",
            "--tls-cert",
            key,
            "--tls-key",
            key,
        ]),
        1,
    );
    assert!(line.contains("cannot serve HTTPS"), "{line}");
}

/// `isek renew --identity` of `id`.
fn signed_renew(url: &str, id: &str, key: &str) -> std::process::Output {
    isek(&["renew", "--center", url, "--node-id", id, "--identity", key])
}

#[test]
fn processes_sharing_a_key_sign_back_to_back_and_concurrently() {
    // Timestamps are Unix milliseconds and must increase per node: processes started
    // one after another (within one second) all get through, and two at once too (a
    // same-millisecond collision is retried once with a fresh signature).
    let dir = tempfile::tempdir().unwrap();
    let center = CenterProcess::start(&["--in-memory"]);
    let url = center.url.as_str();
    let key = dir.path().join("shared.key.pem");
    let key = key.to_str().unwrap();
    success(&isek(&["keygen", "--out", key]));
    success(&register(url, "n", &["--identity", key]));
    for _ in 0..4 {
        assert_eq!(
            success(&signed_renew(url, "n", key)),
            "Lease for node 'n' renewed successfully.\n"
        );
        // Re-registration from yet another process (new op proof each time).
        success(&register(url, "n", &["--identity", key]));
    }
    for _ in 0..3 {
        let a = std::thread::spawn({
            let (url, key) = (url.to_owned(), key.to_owned());
            move || signed_renew(&url, "n", &key)
        });
        let b = signed_renew(url, "n", key);
        let a = a.join().unwrap();
        assert_eq!(success(&a), "Lease for node 'n' renewed successfully.\n");
        assert_eq!(success(&b), "Lease for node 'n' renewed successfully.\n");
    }
    assert_eq!(
        success(&isek(&[
            "deregister",
            "--center",
            url,
            "--node-id",
            "n",
            "--identity",
            key
        ])),
        "Node 'n' deregistered successfully.\n"
    );
}

/// A client that opens a TCP connection to an HTTPS center and never finishes the TLS
/// handshake is cut off (the center's handshake limit is 10 s), and does not keep
/// other clients from being served meanwhile.
#[test]
fn a_stalled_tls_handshake_is_cut_off() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    // A 1 s limit (the default is 10 s): the test waits for it, and checks the flag.
    let center = CenterProcess::start(&[
        "--in-memory",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--handshake-timeout",
        "1",
    ]);
    let port = center.url.rsplit(':').next().unwrap();
    // The first bytes of a TLS record (handshake, TLS 1.0 framing), then nothing.
    let mut stalled = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).unwrap();
    // Served meanwhile.
    let url = format!("https://localhost:{port}");
    assert_eq!(
        success(&register(&url, "n", &["--ca-file", cert])),
        "Node 'n' registered successfully.\n"
    );
    // Closed by the center: EOF or a reset, not the test's own read timeout (thirty
    // times the center's limit, for a loaded machine).
    stalled
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    match stalled.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("the center answered a stalled handshake with {n} bytes"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the stalled connection was left open: {e}"
        ),
    }
    eprintln!("stalled handshake closed after {:?}", started.elapsed());
}
