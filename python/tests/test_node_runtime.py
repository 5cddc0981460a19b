"""isek_rs.Node, PeerView and watch() against real servers."""

import asyncio
import os
import subprocess
import sys
import textwrap
import time

import pytest

import isek_rs
from conftest import unique, wait_until


def etcd_registry(etcd, parent, **options):
    host, port = etcd.endpoint.rsplit("//", 1)[1].split(":")
    return isek_rs.EtcdRegistry(host, int(port), parent_node_id=parent, **options)


def test_node_is_back_within_a_third_of_the_ttl_after_a_restart_on_an_empty_store(center_factory, tmp_path):
    ttl = 3.0
    center = center_factory("--lease-ttl", str(ttl), data_dir=tmp_path / "first")
    registry = isek_rs.IsekCenterRegistry("127.0.0.1", center.port)
    probe = isek_rs.IsekCenterRegistry("127.0.0.1", center.port)
    with isek_rs.Node(registry, "10.0.0.1", 9001, node_id="kept", ttl=ttl, metadata={"name": "kept"}) as node:
        assert node.wait_registered(5)
        assert probe.get_available_nodes()["kept"]["metadata"] == {"name": "kept"}
        center.kill()
        time.sleep(0.5)  # the node notices: renewals fail, it backs off
        center.start(data_dir=tmp_path / "empty")
        restarted = time.monotonic()
        assert "kept" not in probe.get_available_nodes()
        back = wait_until(lambda: "kept" in probe.get_available_nodes(), ttl / 3 + 1, 0.02)
        took = time.monotonic() - restarted
        assert back, f"not back within TTL/3 + 1 s ({ttl / 3 + 1:.1f} s); state {node.state_info()}"
        print(f"back {took:.2f} s after the restart")
    # Exit deregistered it at once.
    assert "kept" not in probe.get_available_nodes()
    assert node.state == "stopped"


def test_node_on_etcd_with_peers(etcd, parent):
    registry = etcd_registry(etcd, parent, ttl=5)
    other = etcd_registry(etcd, parent)
    other.register_node("peer-a", "10.0.0.2", 9002, {"role": "planner"})
    other.register_node("peer-b", "10.0.0.3", 9003, {"role": "coder"})
    with isek_rs.Node(registry, "10.0.0.1", 9001, node_id="me", poll_interval=0.2) as node:
        assert node.registered and node.state == "registered"
        assert "me" in other.get_available_nodes()
        view = node.peers
        assert view.wait_live(5)
        assert wait_until(lambda: len(view) == 2, 5)
        assert "me" not in view  # a node is not its own peer
        assert "peer-a" in view and view.peer("peer-a")["port"] == 9002
        assert [n["node_id"] for n in view.find(role="coder")] == ["peer-b"]
        assert [n["node_id"] for n in view.find(lambda n: n["port"] > 9002)] == ["peer-b"]
        assert [n["node_id"] for n in view.find(filter='metadata.role in ["coder", "x"] && port > 9000')] == ["peer-b"]
        assert view.find(filter='metadata.role == "planner"', role="coder") == []
        with pytest.raises(isek_rs.InvalidArgument, match="filter"):
            view.find(filter="metadata.role ==")
        assert view.peer("ghost") is None
        other.deregister_node("peer-a")
        assert wait_until(lambda: "peer-a" not in view, 5)
    assert "me" not in other.get_available_nodes()
    assert len(view) == 0 and view.sync == "closed"


def test_node_refused_for_good_raises_on_enter(etcd, parent):
    owner = etcd_registry(etcd, parent)
    owner.register_node("taken", "10.0.0.1", 9001)
    with pytest.raises(isek_rs.Conflict):
        with isek_rs.Node(etcd_registry(etcd, parent), "10.0.0.9", 9009, node_id="taken"):
            pass
    assert owner.get_available_nodes()["taken"]["host"] == "10.0.0.1"


def test_watch_iterator(center):
    registry = isek_rs.IsekCenterRegistry("127.0.0.1", center.port)
    registry.register_node("before", "10.0.0.1", 9001)
    with registry.watch() as watch:
        first = watch.next_event(5)
        assert (first.kind, first.node_id) == ("join", "before")
        registry.register_node("during", "10.0.0.2", 9002, {"v": 1})
        event = next(watch)
        assert (event.kind, event.node_id, event.node["metadata"]) == ("join", "during", {"v": 1})
        registry.register_node("during", "10.0.0.2", 9003, {"v": 2})
        event = next(watch)
        assert event.kind == "update" and event.previous["port"] == 9002 and event.node["port"] == 9003
        registry.deregister_node("during")
        event = next(watch)
        assert (event.kind, event.node_id) == ("leave", "during")
        assert watch.next_event(0.3) is None
    assert list(watch) == []  # closed: iteration ends


def test_async_node_and_watch_on_etcd(etcd, parent):
    registry = etcd_registry(etcd, parent)

    async def scenario():
        seen = []
        async with isek_rs.Node(registry, "10.0.0.1", 9001, node_id="async-node") as node:
            assert node.registered
            async with registry.watch() as watch:
                async for event in watch:
                    seen.append((event.kind, event.node_id))
                    if event.kind == "join":
                        break
        async with registry.watch() as watch:
            registry.register_node("late", "10.0.0.2", 9002)
            event = await asyncio.wait_for(watch.__anext__(), 5)
            seen.append((event.kind, event.node_id))
            # Cancelling a pending __anext__ is safe and aborts the Rust side.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(watch.__anext__(), 0.2)
        return seen

    assert asyncio.run(scenario()) == [("join", "async-node"), ("join", "late")]
    assert "async-node" not in registry.get_available_nodes()


def test_standalone_peer_view(center):
    registry = isek_rs.IsekCenterRegistry("127.0.0.1", center.port)
    with registry.peer_view(poll_interval=0.2) as view:
        assert view.wait_live(5)
        registry.register_node("p", "10.0.0.1", 9001, {"tags": ["a"]})
        assert wait_until(lambda: "p" in view, 5)
        assert view.peers()["p"]["metadata"] == {"tags": ["a"]}
        assert view.source in ("stream", "poll")
    assert view.sync == "closed"


LEAK_SCRIPT = textwrap.dedent(
    """
    import os, sys, threading, time
    import isek_rs
    from isek_rs import _core

    def os_threads():
        return len(os.listdir("/proc/self/task"))

    def settle(limit, probe):
        deadline = time.monotonic() + 5
        while probe() > limit and time.monotonic() < deadline:
            time.sleep(0.05)
        return probe()

    registry = isek_rs.IsekCenterRegistry("127.0.0.1", int(sys.argv[1]))
    def cycle(i):
        with isek_rs.Node(registry, "10.0.0.1", 9000 + i, node_id=f"leak-{i}", ttl=3, poll_interval=0.1) as node:
            assert node.wait_registered(5)
            node.peers.wait_live(5)
            with registry.watch(poll_interval=0.1) as watch:
                watch.next_event(0.2)
    cycle(0)  # warm up: the runtime, the connection pool
    time.sleep(1.5)
    py_threads, threads, tasks = threading.active_count(), os_threads(), _core._runtime_stats()["alive_tasks"]
    for i in range(1, 6):
        cycle(i)
    after_threads = settle(threads, os_threads)
    after_tasks = settle(tasks, lambda: _core._runtime_stats()["alive_tasks"])
    print(py_threads, threading.active_count(), threads, after_threads, tasks, after_tasks)
    assert threading.active_count() == py_threads
    assert after_threads <= threads, (threads, after_threads)
    assert after_tasks <= tasks, (tasks, after_tasks)
    assert registry.get_available_nodes() == {}
    """
)


def test_no_leaked_threads_or_tasks_after_nodes_exit(center):
    # A fresh interpreter, so other tests' threads (the original nodes) do not count.
    result = subprocess.run(
        [sys.executable, "-c", LEAK_SCRIPT, str(center.port)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
