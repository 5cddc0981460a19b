"""The cases of `isek_testkit::conformance`, through the Python classes, on both
backends: a real center (the built binary) and a real etcd."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import isek_rs
from conftest import unique, wait_until

LONG_TTL = 30
SHORT_TTL = 2


def sample_metadata(name):
    """Nesting, arrays, numbers, booleans, null and non-ASCII text (the Rust suite's)."""
    return {
        "name": name,
        "url": f"http://{name}.example:9000/a2a",
        "card": {
            "skills": ["search", {"id": "summarize", "tags": ["text", None]}],
            "version": 3,
            "score": 0.75,
            "public": True,
        },
        "note": "héllo wörld, 你好, 🚀",
    }


@pytest.fixture(params=["center", "etcd"])
def make(request, center_factory):
    """`make(ttl)`: a fresh, empty registry of the backend granting `ttl`-second leases."""

    def make_registry(ttl=LONG_TTL):
        if request.param == "center":
            center = center_factory("--lease-ttl", str(ttl))
            return isek_rs.IsekCenterRegistry("127.0.0.1", center.port)
        etcd = request.getfixturevalue("etcd")
        host, port = etcd.endpoint.rsplit("//", 1)[1].split(":")
        return isek_rs.EtcdRegistry(host, int(port), parent_node_id=unique("c"), ttl=ttl, strict=True)

    make_registry.backend = request.param
    return make_registry


def expect_node(nodes, node_id, host, port, metadata):
    node = nodes[node_id]
    assert node["node_id"] == node_id
    assert node["host"] == host
    assert node["port"] == port
    assert node["metadata"] == metadata


def test_register_and_list(make):
    registry = make()
    registry.register_node("node-a", "10.0.0.1", 9001, sample_metadata("a"))
    registry.register_node("node-b", "10.0.0.2", 9002)
    nodes = registry.get_available_nodes()
    assert set(nodes) == {"node-a", "node-b"}
    expect_node(nodes, "node-a", "10.0.0.1", 9001, sample_metadata("a"))
    expect_node(nodes, "node-b", "10.0.0.2", 9002, {})
    # The original classes' shapes: the center lists `expires_at` (a float in the
    # future), etcd the entry's `public_key`.
    if make.backend == "center":
        assert set(nodes["node-a"]) == {"node_id", "host", "port", "metadata", "expires_at"}
        assert isinstance(nodes["node-a"]["expires_at"], float)
        assert nodes["node-a"]["expires_at"] > time.time()
    else:
        assert set(nodes["node-a"]) == {"node_id", "host", "port", "metadata", "public_key"}
        assert nodes["node-a"]["public_key"] == registry.public_key


def test_renew_keeps_entry(make):
    registry = make()
    registry.register_node("node-a", "10.0.0.1", 9001, sample_metadata("a"))
    before = registry.get_available_nodes()["node-a"]
    assert registry.lease_refresh("node-a") is None
    after = registry.get_available_nodes()["node-a"]
    before.pop("expires_at", None)
    after.pop("expires_at", None)
    assert before == after


def test_reregister_replaces(make):
    registry = make()
    registry.register_node("node-a", "10.0.0.1", 9001, sample_metadata("a"))
    registry.register_node("node-a", "10.0.0.9", 9009, {"moved": True})
    nodes = registry.get_available_nodes()
    assert list(nodes) == ["node-a"]
    expect_node(nodes, "node-a", "10.0.0.9", 9009, {"moved": True})


def test_deregister_removes(make):
    registry = make()
    registry.register_node("node-a", "10.0.0.1", 9001)
    registry.register_node("node-b", "10.0.0.2", 9002)
    assert registry.deregister_node("node-a") is None
    assert set(registry.get_available_nodes()) == {"node-b"}
    with pytest.raises(isek_rs.NotFound):
        registry.deregister_node("node-a")


def test_unknown_node(make):
    registry = make()
    with pytest.raises(isek_rs.NotFound):
        registry.lease_refresh("ghost")
    with pytest.raises(isek_rs.NotFound):
        registry.deregister_node("ghost")
    assert registry.get_available_nodes() == {}


@pytest.mark.parametrize(
    "node_id, host, port",
    [("", "127.0.0.1", 8000), ("empty-host", "", 8000), ("port-zero", "127.0.0.1", 0),
     ("a/b", "127.0.0.1", 8000), ("bad\nid", "127.0.0.1", 8000),
     ("big-port", "127.0.0.1", 70000)],
)
def test_invalid_input(make, node_id, host, port):
    registry = make()
    with pytest.raises(isek_rs.InvalidArgument) as raised:
        registry.register_node(node_id, host, port)
    assert isinstance(raised.value, ValueError)
    assert registry.get_available_nodes() == {}


def test_invalid_renew_and_deregister(make):
    registry = make()
    with pytest.raises(isek_rs.InvalidArgument):
        registry.lease_refresh("")
    with pytest.raises(isek_rs.InvalidArgument):
        registry.deregister_node("")
    with pytest.raises(isek_rs.InvalidArgument):
        registry.register_node("list-metadata", "127.0.0.1", 8000, ["not", "an", "object"])
    assert registry.get_available_nodes() == {}


def test_concurrent_registrations(make):
    registry = make()
    ids = [f"node-{i:03}" for i in range(64)]
    # Many threads at once: only possible because every call releases the GIL.
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: registry.register_node(ids[i], "127.0.0.1", 10_000 + i,
                                                       sample_metadata(ids[i])), range(64)))
    nodes = registry.get_available_nodes()
    assert len(nodes) == 64
    for i, node_id in enumerate(ids):
        expect_node(nodes, node_id, "127.0.0.1", 10_000 + i, sample_metadata(node_id))


def test_expiry_on_time(make):
    registry = make(SHORT_TTL)
    registry.register_node("expires", "127.0.0.1", 8001)
    registry.register_node("renewed", "127.0.0.1", 8002)
    deadline = time.monotonic() + SHORT_TTL + 6
    gone = False
    while time.monotonic() < deadline:
        registry.lease_refresh("renewed")
        nodes = registry.get_available_nodes()
        assert "renewed" in nodes
        if "expires" not in nodes:
            gone = True
            break
        time.sleep(0.3)
    assert gone, "an unrenewed node outlived its TTL by 6 s"


def test_reregister_restarts_lease(make):
    registry = make(SHORT_TTL)
    registry.register_node("node-a", "127.0.0.1", 8001)
    time.sleep(SHORT_TTL * 0.6)
    registry.register_node("node-a", "127.0.0.1", 8001)
    time.sleep(SHORT_TTL * 0.6)
    # 1.2 TTL after the first registration, 0.6 after the second: still there.
    assert "node-a" in registry.get_available_nodes()
    assert wait_until(lambda: "node-a" not in registry.get_available_nodes(), SHORT_TTL + 6)
