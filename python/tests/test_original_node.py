"""The original ISEK node (`isek.node.node_v2.Node` from PyPI isek 0.2.1, unchanged)
running on our registries: it registers, a second node finds it, and with our
IsekCenterRegistry it survives a center restart on an empty store (with the original
registry it stays gone: its heartbeat's renew fails forever)."""

import threading

import pytest

import isek_rs
from conftest import free_port, unique, wait_until


@pytest.fixture
def node_v2():
    return pytest.importorskip("isek.node.node_v2")


def start_node(node_v2, registry, node_id):
    from isek.protocol.a2a_protocol import A2AProtocol

    class LoopbackA2AProtocol(A2AProtocol):
        """The original A2A server, bound to 127.0.0.1 instead of its hard-coded
        0.0.0.0 (tests listen on loopback only)."""

        def bootstrap_server(self):
            import uvicorn

            uvicorn.run(self.a2a_application.build(), host="127.0.0.1", port=self.port, log_level="warning")

    port = free_port()
    protocol = LoopbackA2AProtocol(host="127.0.0.1", port=port, p2p=False)
    node = node_v2.Node(host="127.0.0.1", port=port, node_id=node_id, registry=registry, protocol=protocol)
    node.build_server(daemon=True)  # registers, starts the 5 s heartbeat and the A2A server
    return node


def test_original_node_on_our_center_registry_survives_a_restart(node_v2, center_factory, tmp_path):
    from isek.node.registry import Registry

    center = center_factory(data_dir=tmp_path / "first")
    registry = isek_rs.IsekCenterRegistry("127.0.0.1", center.port)
    assert isinstance(registry, Registry)
    first = start_node(node_v2, registry, unique("orig"))
    second = start_node(node_v2, isek_rs.IsekCenterRegistry("127.0.0.1", center.port), unique("peer"))
    # The second node's first heartbeat listed the first one.
    assert first.node_id in second.all_nodes
    assert second.all_nodes[first.node_id]["metadata"]["url"] == f"http://127.0.0.1:{first.port}"

    center.kill()
    center.start(data_dir=tmp_path / "empty")  # same port, nothing remembered
    probe = isek_rs.IsekCenterRegistry("127.0.0.1", center.port)
    assert first.node_id not in probe.get_available_nodes()
    # The original heartbeat (every 5 s) calls lease_refresh; ours registers again.
    assert wait_until(lambda: {first.node_id, second.node_id} <= set(probe.get_available_nodes()), 12, 0.2)


def test_original_node_on_our_etcd_registry(node_v2, etcd, parent):
    host, port = etcd.endpoint.rsplit("//", 1)[1].split(":")
    registry = isek_rs.EtcdRegistry(host, int(port), parent_node_id=parent)
    first = start_node(node_v2, registry, unique("orig"))
    second = start_node(
        node_v2, isek_rs.EtcdRegistry(host, int(port), parent_node_id=parent), unique("peer")
    )
    assert first.node_id in second.all_nodes
    assert second.all_nodes[first.node_id]["public_key"] == registry.public_key
    # Keys are the nodes' own: the second node's registry cannot remove the first.
    with pytest.raises(ValueError):
        second.registry.deregister_node(first.node_id)
    assert first.node_id in registry.get_available_nodes()
    assert threading.active_count() > 1  # the original's heartbeat timers and servers run
