"""Shared fixtures: real centers (the built `isek` binary) and a real etcd, both on
127.0.0.1 with ports the OS picks, and the original ISEK 0.2.1 modules.

Run by scripts/python-tests.sh, which sets ISEK_BIN (the debug `isek` binary) and
ISEK_ETCD_BIN (etcd).
"""

import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ISEK_BIN = os.environ.get("ISEK_BIN") or str(
    Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "isek"
)
ETCD_BIN = os.environ.get("ISEK_ETCD_BIN") or shutil.which("etcd") or "/usr/bin/etcd"

# The original logs expected failures with tracebacks; tests check behaviour instead.
logging.getLogger("isek").setLevel(logging.CRITICAL + 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(predicate, timeout: float, interval: float = 0.05):
    """Polls `predicate` until it returns a truthy value; that value, or None."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


class Center:
    """`isek center` as a child process; restartable on the same port."""

    def __init__(self, *args: str, data_dir=None):
        self.args = list(args)
        self.data_dir = data_dir
        self.port = 0
        self.process = None
        self.start()

    def start(self, data_dir=None):
        if data_dir is not None:
            self.data_dir = data_dir
        store = ["--data-dir", str(self.data_dir)] if self.data_dir else ["--in-memory"]
        command = [ISEK_BIN, "center", "--listen", f"127.0.0.1:{self.port}", *store, *self.args]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = self.process.stdout.readline()
        prefix = "isek center listening on http://127.0.0.1:"
        if not line.startswith(prefix):
            self.process.kill()
            raise RuntimeError(f"center did not start: {line!r} {self.process.stderr.read()}")
        self.port = int(line[len(prefix):].strip())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            stream.close()


@pytest.fixture
def center_factory():
    """Starts centers (`center_factory("--lease-ttl", "2")`); stops them all after."""
    started = []

    def make(*args, data_dir=None):
        center = Center(*args, data_dir=data_dir)
        started.append(center)
        return center

    yield make
    for center in started:
        center.stop()


@pytest.fixture
def center(center_factory):
    return center_factory()


class Etcd:
    """A single-member etcd on free loopback ports in a temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="isek-rs-etcd-")
        for _ in range(5):
            self.client_port, peer = free_port(), free_port()
            client_url = f"http://127.0.0.1:{self.client_port}"
            peer_url = f"http://127.0.0.1:{peer}"
            self.log = open(os.path.join(self.dir, "etcd.log"), "w")
            self.process = subprocess.Popen(
                [
                    ETCD_BIN,
                    "--name", "isek-rs-test",
                    "--data-dir", os.path.join(self.dir, "data"),
                    "--listen-client-urls", client_url,
                    "--advertise-client-urls", client_url,
                    "--listen-peer-urls", peer_url,
                    "--initial-advertise-peer-urls", peer_url,
                    "--initial-cluster", f"isek-rs-test={peer_url}",
                ],
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
            if wait_until(self._healthy, 30, 0.1):
                return
            self.process.kill()
            self.process.wait()
            self.log.close()
        raise RuntimeError(f"etcd did not start: {open(os.path.join(self.dir, 'etcd.log')).read()[-2000:]}")

    def _healthy(self):
        if self.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=1) as answer:
                return json.load(answer).get("health") == "true"
        except OSError:
            return False

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def etcd():
    server = Etcd()
    yield server
    server.stop()


@pytest.fixture
def parent():
    """A fresh etcd namespace per test, so tests share one etcd without interfering."""
    return unique("t")


def isek_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([ISEK_BIN, *args], capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"isek {' '.join(args)} failed: {result.stderr}")
    return result


@pytest.fixture(scope="session", autouse=True)
def quiet_after_the_session():
    """The original nodes' heartbeat timers outlive the servers they talked to; their
    failed renewals after the last test are expected, not worth a traceback each."""
    yield
    logging.getLogger("isek_rs").setLevel(logging.CRITICAL + 1)
