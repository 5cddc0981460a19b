//! The `isek` binary against a real etcd (started by the testkit on free ports):
//! `keygen`, the `--etcd` client commands with `--identity`, the operator's view
//! `nodes --etcd`, and failures (foreign keys, missing identity, unreachable etcd).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harness::{ISEK, dead_port, failure, success};
use isek::identity::{NodeIdentity, PublicKey};
use isek_testkit::etcd::EtcdNamespace;
use serde_json::Value;

/// Runs `isek <args>` in `dir` with `env`, and nothing from the test's environment
/// that would pick a backend or turn logs on.
fn isek_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(ISEK);
    command
        .args(args)
        .current_dir(dir)
        .env_remove("ISEK_CENTER")
        .env_remove("ISEK_ETCD")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run isek")
}

/// How long a long-running `isek` may take to print an expected line or to exit: a
/// bound against hangs, not a speed check.
const DEADLINE: Duration = Duration::from_secs(60);

/// A long-running `isek` child (`run`, `watch`): stdout lines arrive on a channel;
/// killed and reaped on drop.
struct Daemon {
    /// The child process.
    child: Child,
    /// Its stdout, line by line.
    lines: mpsc::Receiver<String>,
    /// Lines read so far, for failure messages.
    seen: Vec<String>,
}

impl Daemon {
    /// Starts `isek <args>` in `dir`, with a clean environment as [`isek_in`].
    fn spawn(dir: &Path, args: &[&str]) -> Daemon {
        let mut child = Command::new(ISEK)
            .args(args)
            .current_dir(dir)
            .env_remove("ISEK_CENTER")
            .env_remove("ISEK_ETCD")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn isek");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stdout line equal to `wanted`, skipping others.
    fn expect_line(&mut self, wanted: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == wanted => {
                    self.seen.push(line);
                    return;
                }
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no line {wanted:?}; stdout so far: {:?}", self.seen),
            }
        }
    }

    /// SIGTERM, then waits for the exit.
    fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "isek did not exit on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `isek keygen --out <dir>/<name>`: the printed public key.
fn keygen(dir: &Path, name: &str) -> String {
    let out = success(&isek_in(dir, &["keygen", "--out", name], &[]));
    out.trim_end().to_owned()
}

/// `isek nodes --etcd <endpoint> --json [extra]`, parsed.
fn listing(dir: &Path, endpoint: &str, parent: &str) -> Value {
    let args = ["nodes", "--etcd", endpoint, "--parent", parent, "--json"];
    serde_json::from_str(&success(&isek_in(dir, &args, &[]))).unwrap()
}

/// The ISEK samples captured from the original Python implementation.
fn samples() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../isek/tests/fixtures/etcd_entries.json"
    );
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    spec["samples"].clone()
}

#[test]
fn keygen_writes_an_owner_only_key_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let printed = keygen(dir.path(), "node.pem");
    let path = dir.path().join("node.pem");

    assert_eq!(printed.lines().count(), 1);
    let public = PublicKey::from_base64(&printed).unwrap();
    let loaded = NodeIdentity::load(&path).unwrap();
    assert_eq!(loaded.public_key(), &public);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");

    let line = failure(
        &isek_in(dir.path(), &["keygen", "--out", "node.pem"], &[]),
        1,
    );
    assert!(line.contains("already exists"), "{line}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

    // Two keys are two identities.
    assert_ne!(keygen(dir.path(), "other.pem"), printed);
}

#[tokio::test]
async fn register_renew_and_deregister_from_separate_processes_with_one_identity() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let endpoint = etcd.endpoint();
    let e = endpoint.as_str();
    let p = etcd.parent();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let owner_key = keygen(d, "owner.pem");
    keygen(d, "intruder.pem");

    let metadata = r#"{"name": "alpha", "card": {"skills": ["a"], "n": 1.5}}"#;
    let out = success(&isek_in(
        d,
        &[
            "register",
            "--etcd",
            e,
            "--parent",
            p,
            "--identity",
            "owner.pem",
            "--node-id",
            "alpha",
            "--host",
            "10.0.0.1",
            "--port",
            "8080",
            "--metadata",
            metadata,
        ],
        &[],
    ));
    assert_eq!(out, "Node 'alpha' registered successfully.\n");

    // The operator's table.
    let table = success(&isek_in(d, &["nodes", "--etcd", e, "--parent", p], &[]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NODE_ID", "HOST", "PORT", "VERIFIED", "LEGACY", "METADATA"]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..5], ["alpha", "10.0.0.1", "8080", "yes", "no"]);

    // And as JSON: the entry's fields plus verified/legacy.
    let before = listing(d, e, p);
    let alpha = &before["alpha"];
    assert_eq!(alpha["node_id"], "alpha");
    assert_eq!(alpha["host"], "10.0.0.1");
    assert_eq!(alpha["port"], 8080);
    assert_eq!(
        alpha["metadata"],
        serde_json::from_str::<Value>(metadata).unwrap()
    );
    assert_eq!(alpha["public_key"], owner_key.as_str());
    assert_eq!(alpha["verified"], true);
    assert_eq!(alpha["legacy"], false);
    assert!(alpha["lease"].as_i64().unwrap() != 0);

    // $ISEK_ETCD selects etcd when no flag does; --parent namespaces are separate.
    let from_env: Value = serde_json::from_str(&success(&isek_in(
        d,
        &["nodes", "--json", "--parent", p],
        &[("ISEK_ETCD", e)],
    )))
    .unwrap();
    assert_eq!(from_env, before);
    assert_eq!(
        listing(d, e, &etcd.parent_for("elsewhere")),
        serde_json::json!({})
    );

    // Renew from another process, with the same key file.
    let renew = |key: &str| {
        isek_in(
            d,
            &[
                "renew",
                "--etcd",
                e,
                "--parent",
                p,
                "--identity",
                key,
                "--node-id",
                "alpha",
            ],
            &[],
        )
    };
    assert_eq!(
        success(&renew("owner.pem")),
        "Lease for node 'alpha' renewed successfully.\n"
    );

    // Another key may neither renew, nor replace, nor remove the node.
    let line = failure(&renew("intruder.pem"), 1);
    assert!(line.starts_with("error: permission denied:"), "{line}");
    assert!(line.contains("alpha"), "{line}");
    let line = failure(
        &isek_in(
            d,
            &[
                "deregister",
                "--etcd",
                e,
                "--parent",
                p,
                "--identity",
                "intruder.pem",
                "--node-id",
                "alpha",
            ],
            &[],
        ),
        1,
    );
    assert!(line.starts_with("error: permission denied:"), "{line}");
    let line = failure(
        &isek_in(
            d,
            &[
                "register",
                "--etcd",
                e,
                "--parent",
                p,
                "--identity",
                "intruder.pem",
                "--node-id",
                "alpha",
                "--host",
                "evil",
                "--port",
                "1",
            ],
            &[],
        ),
        1,
    );
    assert!(line.starts_with("error: conflict:"), "{line}");
    assert_eq!(listing(d, e, p), before, "the node was touched");

    // Without an identity, renew and deregister say what they need.
    for command in ["renew", "deregister"] {
        let line = failure(
            &isek_in(
                d,
                &[command, "--etcd", e, "--parent", p, "--node-id", "alpha"],
                &[],
            ),
            1,
        );
        assert_eq!(
            line,
            format!(
                "error: {command} on etcd needs --identity KEYFILE (the key the node was registered with)"
            )
        );
    }
    let line = failure(&renew("missing.pem"), 1);
    assert!(
        line.contains("missing.pem") && line.contains("does not exist"),
        "{line}"
    );

    // The owner removes it, from yet another process.
    let out = success(&isek_in(
        d,
        &[
            "deregister",
            "--etcd",
            e,
            "--parent",
            p,
            "--identity",
            "owner.pem",
            "--node-id",
            "alpha",
        ],
        &[],
    ));
    assert_eq!(out, "Node 'alpha' deregistered successfully.\n");
    assert_eq!(listing(d, e, p), serde_json::json!({}));
    assert_eq!(
        success(&isek_in(d, &["nodes", "--etcd", e, "--parent", p], &[])),
        format!("No entries under /{p}/.\n")
    );
    let line = failure(&renew("owner.pem"), 1);
    assert!(line.starts_with("error: not found:"), "{line}");
}

#[tokio::test]
async fn register_without_identity_saves_the_new_key_next_to_the_caller() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let endpoint = etcd.endpoint();
    let e = endpoint.as_str();
    let p = etcd.parent();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let register = [
        "register",
        "--etcd",
        e,
        "--parent",
        p,
        "--node-id",
        "beta",
        "--host",
        "h",
        "--port",
        "9",
    ];

    let output = isek_in(d, &register, &[]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "Node 'beta' registered successfully.\n"
    );
    let note = String::from_utf8(output.stderr).unwrap();
    assert_eq!(note.lines().count(), 1, "{note}");
    assert!(note.starts_with("note: "), "{note}");
    assert!(note.contains("./beta.key.pem"), "{note}");

    let path = d.join("beta.key.pem");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let saved = NodeIdentity::load(&path).unwrap();
    let listed = listing(d, e, p);
    assert_eq!(listed["beta"]["public_key"], saved.public_key().to_base64());
    assert_eq!(listed["beta"]["verified"], true);

    // The saved key is the node's identity from now on.
    let with_key = |command: &str| {
        isek_in(
            d,
            &[
                command,
                "--etcd",
                e,
                "--parent",
                p,
                "--identity",
                "beta.key.pem",
                "--node-id",
                "beta",
            ],
            &[],
        )
    };
    success(&with_key("renew"));
    // A second identity-less register would need a second file: refused, nothing changes.
    let line = failure(&isek_in(d, &register, &[]), 1);
    assert!(line.contains("./beta.key.pem already exists"), "{line}");
    assert_eq!(listing(d, e, p), listed);
    assert_eq!(
        NodeIdentity::load(&path).unwrap().public_key(),
        saved.public_key()
    );
    success(&with_key("deregister"));
    assert_eq!(listing(d, e, p), serde_json::json!({}));
}

#[tokio::test]
async fn operator_view_shows_legacy_and_tampered_entries() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let endpoint = etcd.endpoint();
    let e = endpoint.as_str();
    let p = etcd.parent();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let samples = samples();
    let legacy = &samples["ascii"];
    let tampered = &samples["no_metadata"];
    let original = tampered["value_exact"].as_str().unwrap();
    let forged = original.replace("\"port\": 9003", "\"port\": 9999");
    assert_ne!(forged, original);

    // Written raw, as the original Python ISEK (and a forger) would.
    let mut raw = etcd_client::Client::connect([endpoint.clone()], None)
        .await
        .unwrap();
    // The samples' keys are under the default parent `root`: moved into this namespace.
    let key_of = |sample: &Value| {
        let key = sample["key"].as_str().unwrap();
        etcd.key(key.strip_prefix("/root/").unwrap())
    };
    for (key, value) in [
        (key_of(legacy), legacy["value_exact"].as_str().unwrap()),
        (key_of(tampered), forged.as_str()),
        (etcd.key("garbage"), "not json"),
    ] {
        raw.put(key, value, None).await.unwrap();
    }

    let listed = listing(d, e, p);
    let a = &listed["node-a"];
    assert_eq!(a["verified"], true, "{a}");
    assert_eq!(a["legacy"], true, "{a}");
    assert_eq!(a["host"], "127.0.0.1");
    assert_eq!(a["port"], 9001);
    assert_eq!(a["public_key"], legacy["public_key_base64"]);
    let b = &listed["node-b"];
    assert_eq!(b["verified"], false, "{b}");
    assert_eq!(b["legacy"], true, "{b}");
    assert_eq!(b["port"], 9999);
    assert!(
        b["error"].as_str().unwrap().contains("verification failed"),
        "{b}"
    );
    let garbage = &listed["garbage"];
    assert_eq!(garbage["verified"], false, "{garbage}");
    assert_eq!(garbage["key"], etcd.key("garbage"));
    assert!(garbage.get("host").is_none(), "{garbage}");

    let table = success(&isek_in(d, &["nodes", "--etcd", e, "--parent", p], &[]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "{table}");
    let cells = |line: &str| {
        line.split_whitespace()
            .take(5)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(cells(lines[1]), "garbage - - no no");
    assert_eq!(cells(lines[2]), "node-a 127.0.0.1 9001 yes yes");
    assert_eq!(cells(lines[3]), "node-b localhost 9999 no yes");
    let flagged = |id: &str| format!("! {}: ", etcd.key(id));
    assert!(lines[4].starts_with(&flagged("garbage")), "{table}");
    assert!(lines[5].starts_with(&flagged("node-b")), "{table}");
}

#[tokio::test]
async fn run_and_watch_drive_etcd() {
    let etcd = EtcdNamespace::new().await.unwrap();
    let endpoint = etcd.endpoint();
    let e = endpoint.as_str();
    let p = etcd.parent();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "run.pem");

    let mut watch = Daemon::spawn(d, &["watch", "--etcd", e, "--parent", p]);
    watch.expect_line("# live (change stream), 0 nodes");
    let mut run = Daemon::spawn(
        d,
        &[
            "run",
            "--etcd",
            e,
            "--parent",
            p,
            "--identity",
            "run.pem",
            "--node-id",
            "runner",
            "--host",
            "h",
            "--port",
            "7",
            "--ttl",
            "2",
        ],
    );
    run.expect_line("registered runner h:7");
    watch.expect_line("+ runner h:7");
    let listed = listing(d, e, p);
    assert_eq!(listed["runner"]["public_key"], key.as_str());
    assert_eq!(listed["runner"]["verified"], true);
    // Another process with the same key may renew the node `run` keeps alive.
    success(&isek_in(
        d,
        &[
            "renew",
            "--etcd",
            e,
            "--parent",
            p,
            "--identity",
            "run.pem",
            "--node-id",
            "runner",
        ],
        &[],
    ));

    assert!(run.terminate().success());
    run.expect_line("stopped runner");
    watch.expect_line("- runner");
    assert_eq!(listing(d, e, p), serde_json::json!({}));
    assert!(watch.terminate().success());
}

#[test]
fn unreachable_etcd_and_bad_selections_fail_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dead = format!("http://127.0.0.1:{}", dead_port());
    keygen(d, "k.pem");

    for args in [
        &["nodes", "--etcd", dead.as_str()][..],
        &[
            "renew",
            "--etcd",
            &dead,
            "--identity",
            "k.pem",
            "--node-id",
            "x",
        ],
        &[
            "register",
            "--etcd",
            &dead,
            "--identity",
            "k.pem",
            "--node-id",
            "x",
            "--host",
            "h",
            "--port",
            "1",
        ],
    ] {
        let line = failure(&isek_in(d, args, &[]), 1);
        assert!(line.starts_with("error: unavailable:"), "{args:?}: {line}");
        assert!(line.contains(&dead), "{args:?}: {line}");
    }
    // Nothing was saved for a registration that failed.
    let line = failure(
        &isek_in(
            d,
            &[
                "register",
                "--etcd",
                &dead,
                "--node-id",
                "y",
                "--host",
                "h",
                "--port",
                "1",
            ],
            &[],
        ),
        1,
    );
    assert!(line.starts_with("error: unavailable:"), "{line}");
    assert!(!d.join("y.key.pem").exists());

    // --center and --etcd exclude each other (a usage error, status 2).
    let line = failure(
        &isek_in(d, &["nodes", "--center", "http://c", "--etcd", &dead], &[]),
        2,
    );
    assert!(line.contains("cannot be used with"), "{line}");
    // etcd-only flags with a center, and an ambiguous environment.
    let line = failure(
        &isek_in(d, &["nodes", "--center", "http://c", "--parent", "p"], &[]),
        1,
    );
    assert_eq!(
        line,
        "error: etcd-only flags without etcd: --parent (select etcd with --etcd ENDPOINTS or ISEK_ETCD)"
    );
    let line = failure(
        &isek_in(
            d,
            &["nodes"],
            &[("ISEK_ETCD", dead.as_str()), ("ISEK_CENTER", "http://c")],
        ),
        1,
    );
    assert!(
        line.contains("both ISEK_ETCD and ISEK_CENTER are set"),
        "{line}"
    );
}
