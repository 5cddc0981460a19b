"""Blocking calls release the GIL and honour Ctrl-C within a second."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import isek_rs

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import isek_rs
    registry = isek_rs.IsekCenterRegistry("127.0.0.1", int(sys.argv[1]), timeout=60)
    call = sys.argv[2]
    print("ready", flush=True)
    try:
        if call == "register":
            registry.register_node("n", "10.0.0.1", 9000)   # the server never answers
        elif call == "watch":
            next(iter(registry.watch()))                      # no node ever comes
        elif call == "node":
            with isek_rs.Node(registry, "10.0.0.1", 9000, node_id="n"):
                pass
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(42)
    """
)


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield listener.getsockname()[1]
    listener.close()


@pytest.mark.parametrize("call", ["register", "watch", "node"])
def test_ctrl_c_interrupts_a_blocking_call_within_a_second(silent_server, center, call):
    port = silent_server if call != "watch" else center.port
    child = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(port), call],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # well inside the blocking call
        assert child.poll() is None, child.stderr.read()
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        code = child.wait(timeout=10)
        took = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert code == 42, child.stderr.read()
    assert took < 1.0, f"took {took:.2f} s"


def test_blocking_calls_release_the_gil(silent_server):
    registry = isek_rs.IsekCenterRegistry("127.0.0.1", silent_server, timeout=1.5)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        with pytest.raises(isek_rs.Unavailable):
            registry.register_node("n", "10.0.0.1", 9000)  # waits out the 1.5 s timeout
    finally:
        stop.set()
        thread.join()
    # Python code ran the whole time the call blocked.
    assert len(ticks) > 50
