"""The type stubs describe the installed package: mypy checks the pure-Python half
against `_core.pyi`, and a typical program type-checks with precise types."""

import subprocess
import sys
import textwrap

import pytest


pytest.importorskip("mypy")

PROGRAM = textwrap.dedent(
    """
    import isek_rs

    registry = isek_rs.IsekCenterRegistry("127.0.0.1", 8088, identity=isek_rs.NodeIdentity.generate())
    nodes = registry.get_available_nodes()
    with isek_rs.Node(registry, "10.0.0.1", 9000, node_id="a") as node:
        state: str = node.state
        peers = node.peers.find(role="coder")
    for event in registry.watch():
        reveal_type(event.node)
        break
    """
)


def mypy(*args):
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--no-incremental", *args],
        capture_output=True, text=True, timeout=300,
    )


def test_package_checks_against_its_stubs():
    # By name (-p), as a program importing it sees it: installed, with py.typed.
    result = mypy("-p", "isek_rs")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_program_gets_precise_types():
    result = mypy("-c", PROGRAM)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dict[" in result.stdout and "str, Any]" in result.stdout, result.stdout
