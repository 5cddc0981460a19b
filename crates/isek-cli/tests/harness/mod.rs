//! Runs the built `isek` binary: a real `isek center` child process (killed on drop)
//! and one-shot client commands.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Children for the fault scenarios (`runtime_faults.rs`, `node_faults.rs`).
pub mod fault;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub const ISEK: &str = env!("CARGO_BIN_EXE_isek");

/// How long a center may take to announce its address or to exit after a signal.
const PROCESS_DEADLINE: Duration = Duration::from_secs(60);

/// A running `isek center` child process; killed (SIGKILL) and reaped on drop.
pub struct CenterProcess {
    /// The child; `None` once it has been waited for.
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` as the center announced it.
    pub url: String,
    /// Everything the center wrote to stderr so far, for failure messages.
    stderr: Arc<Mutex<String>>,
}

impl CenterProcess {
    /// Starts `isek center --listen 127.0.0.1:0 <args>` and waits for its address;
    /// `ISEK_CENTER` and `ISEK_ADMIN_TOKEN` are not passed on from the test's environment.
    pub fn start(args: &[&str]) -> CenterProcess {
        Self::start_with_env(args, &[])
    }

    /// [`CenterProcess::start`] with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> CenterProcess {
        Self::spawn(Command::new(ISEK), args, env)
    }

    /// [`CenterProcess::start`] with at most `files` open file descriptors (soft and
    /// hard RLIMIT_NOFILE, set by prlimit(1) for the child only).
    pub fn start_with_fd_limit(files: u32, args: &[&str]) -> CenterProcess {
        let mut command = Command::new("prlimit");
        command.arg(format!("--nofile={files}:{files}")).arg(ISEK);
        Self::spawn(command, args, &[])
    }

    /// [`CenterProcess::start`] in a mount namespace of its own (`unshare -m`, private
    /// propagation: the mount is gone with the process, nothing to clean up) in which
    /// a fresh tmpfs of `size` bytes (mount(8)'s `size=`, e.g. "3m") is mounted on
    /// `dir` first, so a test can fill a small disk. `None` when that is impossible
    /// here (no `unshare`, or not root): the caller skips, or fails under CI.
    pub fn start_on_tmpfs(dir: &Path, size: &str, args: &[&str]) -> Option<CenterProcess> {
        // $0 = mount point, $1 = size, the rest = the center's command line.
        const MOUNT_THEN_EXEC: &str =
            "mount -t tmpfs -o size=\"$1\" tmpfs \"$0\" || exit 3; shift; exec \"$@\"";
        let mut command = Command::new("unshare");
        command
            .args([
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                MOUNT_THEN_EXEC,
            ])
            .arg(dir)
            .arg(size)
            .arg(ISEK);
        match Self::try_spawn(command, args, &[]) {
            Ok(process) => Some(process),
            Err(None) => None,
            Err(Some(mut process)) => {
                let status = process.wait();
                if status.code() == Some(3) {
                    return None;
                }
                panic!(
                    "isek center on a tmpfs did not announce its address ({status}); stderr:\n{}",
                    process.stderr()
                )
            }
        }
    }

    /// Runs `command` (the binary, or a wrapper ending in it) with
    /// `center --listen 127.0.0.1:0 <args>` and waits for the announced address.
    fn spawn(command: Command, args: &[&str], env: &[(&str, &str)]) -> CenterProcess {
        match Self::try_spawn(command, args, env) {
            Ok(process) => process,
            Err(None) => panic!("could not spawn isek center"),
            Err(Some(process)) => panic!(
                "isek center did not announce its address; stderr:\n{}",
                process.stderr()
            ),
        }
    }

    /// [`CenterProcess::spawn`], but a center that cannot be spawned is `Err(None)`,
    /// and one that exits (or stays silent) before announcing is `Err(Some(_))`.
    fn try_spawn(
        mut command: Command,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<CenterProcess, Option<CenterProcess>> {
        let mut child = command
            .args(["center", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("ISEK_CENTER")
            .env_remove("ISEK_ADMIN_TOKEN")
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|_| None)?;
        let (stderr, _) = collect_stderr(&mut child);
        // Read stdout on a thread so a silent center cannot hang the test; keep
        // draining it afterwards so the pipe never fills or closes under the center.
        let out_pipe = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out_pipe).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("isek center listening on ") {
                    let _ = tx.send(url.to_owned());
                    break;
                }
            }
            for _ in lines {}
        });
        let mut process = CenterProcess {
            child: Some(child),
            url: String::new(),
            stderr,
        };
        match rx.recv_timeout(PROCESS_DEADLINE) {
            Ok(url) => {
                process.url = url;
                Ok(process)
            }
            Err(_) => Err(Some(process)),
        }
    }

    /// What the center wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Process id of the center.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `signal` (e.g. "TERM", "INT") with kill(1) and waits for the exit.
    pub fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
        self.wait()
    }

    /// SIGKILL, as in a crash, and reap.
    pub fn kill_9(&mut self) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        child.kill().expect("SIGKILL the center");
        self.wait()
    }

    /// Waits for the center to exit (bounded: a hang fails the test).
    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + PROCESS_DEADLINE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("isek center did not exit; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for CenterProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Copies the child's stderr into a string on a thread (so a chatty child never
/// blocks on a full pipe); returns the string and the thread, which ends at EOF.
pub fn collect_stderr(child: &mut Child) -> (Arc<Mutex<String>>, std::thread::JoinHandle<()>) {
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err_pipe = child.stderr.take().unwrap();
    let sink = Arc::clone(&stderr);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err_pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (stderr, reader)
}

/// Runs `isek <args>` to completion, without `ISEK_CENTER`, `ISEK_ADMIN_TOKEN` or
/// `RUST_LOG` from the test's environment.
pub fn isek(args: &[&str]) -> Output {
    isek_with_env(args, &[])
}

/// Runs `isek <args>` with extra environment variables.
pub fn isek_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(ISEK);
    command
        .args(args)
        .env_remove("ISEK_CENTER")
        .env_remove("ISEK_ADMIN_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run isek")
}

/// Stdout of a command that must have succeeded.
pub fn success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "isek failed ({}): stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stderr.is_empty(),
        "unexpected stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The single stderr line of a command that must have failed with `code`.
pub fn failure(output: &Output, code: i32) -> String {
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert_eq!(
        output.status.code(),
        Some(code),
        "expected exit {code}; stdout: {} stderr: {stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        output.stdout.is_empty(),
        "stdout on failure: {:?}",
        output.stdout
    );
    assert!(
        stderr.ends_with('\n') && stderr.lines().count() == 1,
        "stderr is not exactly one line: {stderr:?}"
    );
    assert!(stderr.starts_with("error: "), "stderr: {stderr:?}");
    stderr.trim_end().to_owned()
}

/// A loopback port nothing listens on (bound, then released).
pub fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// True when `path` holds at least one file (the store wrote something).
pub fn has_files(path: &Path) -> bool {
    std::fs::read_dir(path)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false)
}

/// Now as float Unix seconds (the unit of `expires_at`).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
