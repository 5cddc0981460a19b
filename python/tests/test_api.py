"""The drop-in contract: ISEK 0.2.1's signatures, defaults, base class and exceptions."""

import inspect

import pytest

import isek_rs


@pytest.mark.parametrize("name, module", [
    ("IsekCenterRegistry", "isek.node.isek_center_registry"),
    ("EtcdRegistry", "isek.node.etcd_registry"),
])
def test_signatures_match_the_original(name, module):
    original = getattr(pytest.importorskip(module), name)
    ours = getattr(isek_rs, name)
    for method in ("__init__", "register_node", "lease_refresh", "deregister_node", "get_available_nodes"):
        theirs = inspect.signature(getattr(original, method)).parameters
        mine = inspect.signature(getattr(ours, method)).parameters
        # Every original parameter, in order, with its default; extras keyword-only.
        positional = [p for p in mine.values() if p.kind is not p.KEYWORD_ONLY]
        assert [(p.name, p.default) for p in positional] == [(p.name, p.default) for p in theirs.values()]
        assert all(p.default is not p.empty for p in mine.values() if p.kind is p.KEYWORD_ONLY)


def test_subclasses_of_isek_registry():
    from isek.node.registry import Registry

    assert issubclass(isek_rs.IsekCenterRegistry, Registry)
    assert issubclass(isek_rs.EtcdRegistry, Registry)
    assert isek_rs.Registry is Registry


def test_constructor_errors_are_the_originals():
    with pytest.raises(ValueError):
        isek_rs.IsekCenterRegistry(host="")
    with pytest.raises(ValueError):
        isek_rs.IsekCenterRegistry(port=0)
    with pytest.raises(ValueError):
        isek_rs.IsekCenterRegistry(port="8088")
    with pytest.raises(TypeError):
        isek_rs.EtcdRegistry()
    with pytest.raises(TypeError):
        isek_rs.EtcdRegistry(host="127.0.0.1")


def test_unreachable_backends():
    requests = pytest.importorskip("requests")
    from conftest import free_port

    port = free_port()
    registry = isek_rs.IsekCenterRegistry("127.0.0.1", port)  # like the original: lazy
    with pytest.raises(requests.exceptions.ConnectionError) as raised:
        registry.get_available_nodes()
    assert isinstance(raised.value, isek_rs.Unavailable)
    with pytest.raises(ConnectionError) as raised:
        isek_rs.EtcdRegistry("127.0.0.1", port, timeout=1)
    assert isinstance(raised.value, isek_rs.Unavailable)


def test_etcd_lease_refresh_logs_instead_of_raising(etcd, parent, caplog):
    host, port = etcd.endpoint.rsplit("//", 1)[1].split(":")
    registry = isek_rs.EtcdRegistry(host, int(port), parent_node_id=parent)
    assert registry.lease_refresh("ghost") is None  # the original's contract
    assert "ghost" in caplog.text
    strict = isek_rs.EtcdRegistry(host, int(port), parent_node_id=parent, strict=True)
    with pytest.raises(isek_rs.NotFound) as raised:
        strict.lease_refresh("ghost")
    assert isinstance(raised.value, ValueError)


def test_center_lease_refresh_registers_a_forgotten_node_again(center_factory, tmp_path):
    center = center_factory(data_dir=tmp_path / "a")
    registry = isek_rs.IsekCenterRegistry("127.0.0.1", center.port)
    registry.register_node("n", "10.0.0.1", 9000, {"k": "v"})
    center.kill()
    center.start(data_dir=tmp_path / "b")
    assert registry.get_available_nodes() == {}
    registry.lease_refresh("n")
    assert registry.get_available_nodes()["n"]["metadata"] == {"k": "v"}
    registry.deregister_node("n")
    center.kill()
    center.start(data_dir=tmp_path / "c")
    with pytest.raises(isek_rs.NotFound):  # deregistered: forgotten, not resurrected
        registry.lease_refresh("n")


def test_metadata_must_be_json():
    registry = isek_rs.IsekCenterRegistry("127.0.0.1", 1)
    with pytest.raises(TypeError):
        registry.register_node("n", "h", 1, {"x": object()})
    loop = {}
    loop["self"] = loop
    with pytest.raises(ValueError):
        registry.register_node("n", "h", 1, loop)
