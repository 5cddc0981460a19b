"""Entries written from Python (isek_rs) read by the original ISEK 0.2.1 classes, by
python-ecdsa and by the Rust CLI, and the other way round, on etcd and on a center."""

import base64
import hashlib
import json

import pytest
from ecdsa import NIST256p, VerifyingKey

import isek_rs
from conftest import isek_cli, unique


@pytest.fixture
def original():
    """The original classes, from the installed isek 0.2.1."""
    from isek.node.etcd_registry import EtcdRegistry
    from isek.node.isek_center_registry import IsekCenterRegistry

    return EtcdRegistry, IsekCenterRegistry


def host_port(etcd):
    host, port = etcd.endpoint.rsplit("//", 1)[1].split(":")
    return host, int(port)


def test_etcd_ours_read_by_original_and_verified_by_ecdsa(etcd, parent, original):
    OriginalEtcd, _ = original
    host, port = host_port(etcd)
    ours = isek_rs.EtcdRegistry(host, port, parent_node_id=parent)
    card = {"name": "ours", "skills": ["a", {"b": None}], "note": "héllo 🚀"}
    ours.register_node("rs-node", "10.0.0.1", 9001, card)

    theirs = OriginalEtcd(host, port, parent_node_id=parent)
    listed = theirs.get_available_nodes()
    assert listed["rs-node"]["metadata"] == card
    assert listed["rs-node"]["host"] == "10.0.0.1" and listed["rs-node"]["port"] == 9001
    assert listed["rs-node"]["public_key"] == ours.public_key

    # The stored entry verifies with python-ecdsa: SHA-256 over the original's
    # canonical bytes (json.dumps(node_info, sort_keys=True)).
    raw, _meta = theirs.etcd_client.get(f"/{parent}/rs-node", metadata=True)[0]
    entry = json.loads(raw)
    assert entry["signature_alg"] == "ES256"
    signed = json.dumps(entry["node_info"], sort_keys=True).encode("utf-8")
    key = VerifyingKey.from_string(base64.b64decode(entry["node_info"]["public_key"]), curve=NIST256p)
    assert key.verify(base64.b64decode(entry["signature"]), signed, hashfunc=hashlib.sha256)


def test_etcd_theirs_read_by_ours_and_by_the_cli(etcd, parent, original):
    OriginalEtcd, _ = original
    host, port = host_port(etcd)
    theirs = OriginalEtcd(host, port, parent_node_id=parent)
    theirs.register_node("py-node", "10.0.0.2", 9002, {"name": "theirs"})

    ours = isek_rs.EtcdRegistry(host, port, parent_node_id=parent)
    node = ours.get_available_nodes()["py-node"]
    assert node["metadata"] == {"name": "theirs"}
    assert node["public_key"] == base64.b64encode(theirs.sk.verifying_key.to_string()).decode()

    out = isek_cli("nodes", "--etcd", etcd.endpoint, "--parent", parent, "--json").stdout
    listed = json.loads(out)["py-node"]
    assert listed["verified"] is True and listed["legacy"] is True
    assert listed["host"] == "10.0.0.2" and listed["port"] == 9002

    # Ownership: our key may not remove or renew their node; the entry stays.
    with pytest.raises(isek_rs.PermissionDenied) as raised:
        ours.deregister_node("py-node")
    assert isinstance(raised.value, ValueError)  # where the original raised ValueError
    with pytest.raises(isek_rs.Conflict):
        ours.register_node("py-node", "10.6.6.6", 6666)
    assert theirs.get_available_nodes()["py-node"]["host"] == "10.0.0.2"


def test_etcd_ours_listed_by_the_cli(etcd, parent):
    host, port = host_port(etcd)
    identity = isek_rs.NodeIdentity.generate()
    ours = isek_rs.EtcdRegistry(host, port, parent_node_id=parent, identity=identity)
    ours.register_node("rs-node", "10.0.0.3", 9003, {"k": [1, 2]})
    listed = json.loads(isek_cli("nodes", "--etcd", etcd.endpoint, "--parent", parent, "--json").stdout)
    entry = listed["rs-node"]
    assert entry["verified"] is True and entry["legacy"] is False
    assert entry["public_key"] == identity.public_key
    assert entry["metadata"] == {"k": [1, 2]}


def test_etcd_client_argument_is_an_etcd3gw_client(etcd, parent):
    import etcd3gw

    host, port = host_port(etcd)
    ours = isek_rs.EtcdRegistry(etcd_client=etcd3gw.client(host=host, port=port), parent_node_id=parent)
    ours.register_node("via-client", "10.0.0.4", 9004)
    assert "via-client" in ours.get_available_nodes()


def test_center_both_ways(center, original):
    _, OriginalCenter = original
    ours = isek_rs.IsekCenterRegistry("127.0.0.1", center.port)
    theirs = OriginalCenter("127.0.0.1", center.port)
    ours.register_node("rs-node", "10.0.0.1", 9001, {"name": "ours"})
    theirs.register_node("py-node", "10.0.0.2", 9002, {"name": "theirs"})
    assert set(theirs.get_available_nodes()) == set(ours.get_available_nodes()) == {"rs-node", "py-node"}
    assert theirs.get_available_nodes()["rs-node"]["metadata"] == {"name": "ours"}
    assert ours.get_available_nodes()["py-node"]["metadata"] == {"name": "theirs"}
    listed = json.loads(isek_cli("nodes", "--center", center.url, "--json").stdout)
    assert listed["rs-node"]["metadata"] == {"name": "ours"}
    assert listed["py-node"]["metadata"] == {"name": "theirs"}
    # Renew and deregister across languages: unsigned nodes are anyone's.
    theirs.lease_refresh("rs-node")
    ours.deregister_node("py-node")
    assert set(theirs.get_available_nodes()) == {"rs-node"}


def test_center_signed_registration_with_lease_token(center, original):
    _, OriginalCenter = original
    owner = isek_rs.IsekCenterRegistry("127.0.0.1", center.port, identity=isek_rs.NodeIdentity.generate())
    owner.register_node("signed", "10.0.0.1", 9001)
    token = owner.lease_token("signed")
    assert token
    owner.lease_refresh("signed")

    # Neither an unsigned client (ours or the original) nor another key can take it.
    stranger = isek_rs.IsekCenterRegistry("127.0.0.1", center.port, identity=isek_rs.NodeIdentity.generate())
    requests = pytest.importorskip("requests")
    with pytest.raises(isek_rs.PermissionDenied) as raised:
        stranger.deregister_node("signed")
    assert isinstance(raised.value, requests.HTTPError)
    with pytest.raises(requests.HTTPError):
        OriginalCenter("127.0.0.1", center.port).deregister_node("signed")
    assert "signed" in owner.get_available_nodes()
    owner.deregister_node("signed")
    assert owner.lease_token("signed") is None


def test_identity_files_shared_with_the_cli(tmp_path):
    path = tmp_path / "cli.pem"
    printed = isek_cli("keygen", "--out", str(path)).stdout
    loaded = isek_rs.NodeIdentity.load(path)
    assert loaded.public_key in printed

    saved = tmp_path / "py.pem"
    loaded.save(saved)
    assert isek_rs.NodeIdentity.load(saved) == loaded
    assert (saved.stat().st_mode & 0o777) == 0o600
    with pytest.raises(isek_rs.Conflict):
        loaded.save(saved)
    with pytest.raises(isek_rs.NotFound):
        isek_rs.NodeIdentity.load(tmp_path / "missing.pem")
    with pytest.raises(isek_rs.InvalidArgument):
        isek_rs.NodeIdentity.from_pem("not a key")


def test_identity_signatures_verify_with_ecdsa():
    identity = isek_rs.NodeIdentity.generate()
    key = VerifyingKey.from_string(base64.b64decode(identity.public_key), curve=NIST256p)
    message = b'{"host": "h", "node_id": "n"}'
    assert key.verify(identity.sign(message), message, hashfunc=hashlib.sha256)
    assert key.verify(identity.sign_legacy(message), message)  # python-ecdsa's SHA-1 default
    assert isek_rs.NodeIdentity.from_pem(identity.to_pem()) == identity
