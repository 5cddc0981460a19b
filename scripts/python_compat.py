"""Drives an Isek Center with the ORIGINAL Python client, unchanged.

Usage: python python_compat.py PORT   (run by scripts/python-compat.sh)

Loads `isek.node.isek_center_registry.IsekCenterRegistry` from the installed isek
0.2.1 package without importing the package's heavy `__init__` (agents, LLM
adapters), then registers, renews, lists and deregisters, and checks the answers
the way an ISEK node depends on them. Exits non-zero on the first mismatch.
"""

import importlib.util
import logging
import os
import sys
import types

PORT = int(sys.argv[1])
# Locate the installed package without running its __init__.
BASE = importlib.util.find_spec("isek").submodule_search_locations[0]


def stub_package(name, path=None):
    module = types.ModuleType(name)
    if path is not None:
        module.__path__ = [path]
    sys.modules[name] = module
    return module


stub_package("isek", BASE)
stub_package("isek.utils", os.path.join(BASE, "utils"))
# The original logs expected failures (the 404s below) with tracebacks: keep quiet.
quiet = logging.getLogger("isek")
quiet.setLevel(logging.CRITICAL + 1)
stub_package("isek.utils.log").log = quiet
stub_package("isek.node", os.path.join(BASE, "node"))

from isek.node.isek_center_registry import IsekCenterRegistry  # noqa: E402

registry = IsekCenterRegistry(host="127.0.0.1", port=PORT)
card = {"name": "py", "url": "http://10.0.0.9:9999", "card": {"skills": ["a", {"b": None}]}, "note": "héllo"}

registry.register_node("py-node", "10.0.0.9", 9999, card)
registry.register_node("py-peer", "10.0.0.8", 9998, {})
registry.lease_refresh("py-node")
nodes = registry.get_available_nodes()
assert set(nodes) == {"py-node", "py-peer"}, nodes
node = nodes["py-node"]
assert node["node_id"] == "py-node" and node["host"] == "10.0.0.9" and node["port"] == 9999, node
assert node["metadata"] == card, node
assert isinstance(node["expires_at"], float), node

registry.register_node("py-node", "10.0.0.7", 9997, {"moved": True})
assert registry.get_available_nodes()["py-node"]["host"] == "10.0.0.7"

registry.deregister_node("py-node")
assert set(registry.get_available_nodes()) == {"py-peer"}

for call in (registry.lease_refresh, registry.deregister_node):
    try:
        call("ghost")
    except Exception as error:  # the original raises requests' HTTPError on 404
        assert "404" in str(error), error
    else:
        raise AssertionError(f"{call.__name__}('ghost') did not fail")

print("python-compat: the original isek 0.2.1 IsekCenterRegistry works against this center")
