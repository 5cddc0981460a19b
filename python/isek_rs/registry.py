"""The drop-in registry classes: ``IsekCenterRegistry`` and ``EtcdRegistry``.

Signatures, defaults, return shapes and exceptions are those of ISEK 0.2.1's
``isek.node.isek_center_registry.IsekCenterRegistry`` and
``isek.node.etcd_registry.EtcdRegistry``; extra options are keyword-only, so every
call that worked on the original works here. The work is done by the Rust core
(``isek_rs._core.CoreRegistry``), which keeps the fixed behaviour of the Rust isek
crate: each etcd registry signs with its own key and refuses to touch entries of
another key, and ``lease_refresh`` registers a node again when the registry lost it
(a center restarted on an empty store, a lease lost in a long network cut).
"""

import abc
import logging
from typing import Any, Dict, Optional

from ._core import CoreRegistry, Node, NodeIdentity, PeerView, Watch
from .errors import center_errors, etcd_errors

__all__ = ["Registry", "IsekCenterRegistry", "EtcdRegistry"]

log = logging.getLogger("isek_rs")

try:  # ISEK's abstract base, when ISEK is installed: Node(registry=...) takes us.
    from isek.node.registry import Registry
except Exception:  # noqa: BLE001 - any failure to import ISEK means "not installed"

    class Registry(abc.ABC):  # type: ignore[no-redef]
        """ISEK's registry interface (a copy, used when ``isek`` is not installed)."""

        @abc.abstractmethod
        def register_node(
            self,
            node_id: str,
            host: str,
            port: int,
            metadata: Optional[Dict[str, str]] = None,
        ):
            """Registers ``node_id`` at ``host:port``."""

        @abc.abstractmethod
        def get_available_nodes(self) -> dict:
            """Every live node, keyed by node id."""

        @abc.abstractmethod
        def deregister_node(self, node_id: str):
            """Removes the node."""

        @abc.abstractmethod
        def lease_refresh(self, node_id: str):
            """Extends the node's lease."""


class _Extras:
    """What both classes offer beyond ISEK's interface."""

    _core: CoreRegistry

    def watch(self, poll_interval: float = 5.0, exclude: Optional[str] = None) -> Watch:
        """Membership changes: the current nodes as ``join`` events, then every
        ``join``, ``update`` and ``leave``. Iterate it (``for event in ...``) or
        ``async for`` it; ``close()`` it, or use it as a (async) context manager.
        Follows the backend's change stream, or polls every ``poll_interval``
        seconds where there is none (the original center)."""
        return self._core.watch(poll_interval, exclude)

    def peer_view(self, poll_interval: float = 5.0, exclude: Optional[str] = None) -> PeerView:
        """A live copy of the membership with lookups (``peers()``, ``peer(id)``,
        ``find(...)``), kept current in the background until ``close()``."""
        return self._core.peer_view(poll_interval, exclude)

    def node(self, host: str, port: int, **options: Any) -> Node:
        """A :class:`isek_rs.Node` in this registry (use it with ``with``)."""
        return Node(self, host, port, **options)


class IsekCenterRegistry(Registry, _Extras):
    """A registry backed by an Isek Center over HTTP (ours, or the original).

    Drop-in for ``isek.node.isek_center_registry.IsekCenterRegistry``. Failures raise
    ``requests.exceptions.HTTPError`` (the center refused: unknown node, bad input,
    owned by another key) or ``requests.exceptions.ConnectionError`` (unreachable),
    each also an :class:`isek_rs.IsekError` of the matching kind.

    Keyword-only extras: ``identity`` (a :class:`isek_rs.NodeIdentity`: registrations
    are signed, renewals prove ownership with the lease token the center returns),
    ``url`` (instead of host and port, e.g. ``https://...``), ``ca_file`` (an extra
    CA for https), ``timeout`` and ``renew_timeout`` (seconds; the original's 10 and 5).
    """

    def __init__(
        self,
        host: str = "localhost",
        port: int = 8088,
        *,
        identity: Optional[NodeIdentity] = None,
        url: Optional[str] = None,
        ca_file: Optional[str] = None,
        timeout: float = 10.0,
        renew_timeout: float = 5.0,
    ):
        if url is None:
            if not host:
                raise ValueError("Host for Isek Center cannot be empty.")
            if not isinstance(port, int) or not (0 < port < 65536):
                raise ValueError(f"Invalid port number for Isek Center: {port}")
            url = f"http://{host}:{port}"
        self.center_address: str = url.rstrip("/")
        self._core = CoreRegistry.center(
            self.center_address,
            identity=identity,
            errors=center_errors(),
            timeout=timeout,
            renew_timeout=renew_timeout,
            ca_file=ca_file,
        )
        log.debug("IsekCenterRegistry initialized. Center address: %s", self.center_address)

    def register_node(
        self,
        node_id: str,
        host: str,
        port: int,
        metadata: Optional[Dict[str, str]] = None,
    ) -> None:
        """Registers (or replaces) ``node_id`` at ``host:port`` with a fresh lease;
        ``metadata`` (default ``{}``) is the node's agent card."""
        self._core.register_node(node_id, host, port, metadata)

    def lease_refresh(self, node_id: str) -> None:
        """Extends the node's lease. If the center no longer knows a node this object
        registered, registers it again (the original raised and the node stayed gone)."""
        self._core.lease_refresh(node_id)

    def get_available_nodes(self) -> Dict[str, Dict[str, Any]]:
        """Every live node: ``{node_id: {"node_id", "host", "port", "metadata",
        "expires_at"}}``, as the center lists them."""
        return self._core.get_available_nodes()

    def deregister_node(self, node_id: str) -> None:
        """Removes the node at once."""
        self._core.deregister_node(node_id)

    def lease_token(self, node_id: str) -> Optional[str]:
        """The lease token of ``node_id``'s signed registration (needs ``identity``)."""
        return self._core.lease_token(node_id)

    def __repr__(self) -> str:
        return f"IsekCenterRegistry({self.center_address!r})"


def _endpoint_of(client: Any) -> str:
    """The endpoint of an ``etcd3gw`` client (or anything with host and port)."""
    host = getattr(client, "host", None)
    port = getattr(client, "port", None)
    if not host or not port:
        raise TypeError(
            "etcd_client must be an etcd3gw client (or have 'host' and 'port' attributes)"
        )
    protocol = getattr(client, "protocol", None) or "http"
    return f"{protocol}://{host}:{port}"


class EtcdRegistry(Registry, _Extras):
    """A registry writing ISEK entries straight into etcd.

    Drop-in for ``isek.node.etcd_registry.EtcdRegistry``: same key layout
    (``/{parent_node_id}/{node_id}``), same entry format, one lease per node, so
    original ISEK nodes and these read each other. Unlike the original, the registry's
    key is the node's own: it refuses to renew, replace or remove entries signed by
    another key (``ValueError``, as the original's failed signature check). Entries
    are signed with SHA-256 and marked ``"signature_alg": "ES256"``.

    ``etcd_client`` may be an ``etcd3gw`` client: its host, port and protocol are used
    (the Rust core speaks etcd's gRPC API on the same port). Keyword-only extras:
    ``identity`` (a :class:`isek_rs.NodeIdentity`, default a fresh key, like the
    original), ``endpoints`` (a list, instead of host and port), ``timeout`` (seconds,
    bounds every etcd call), ``strict`` (``lease_refresh`` raises instead of logging,
    which is what the original did).
    """

    def __init__(
        self,
        host: Optional[str] = None,
        port: Optional[int] = None,
        parent_node_id: Optional[str] = "root",
        etcd_client: Optional[Any] = None,
        ttl: int = 30,
        *,
        identity: Optional[NodeIdentity] = None,
        endpoints: Optional[list] = None,
        timeout: float = 5.0,
        strict: bool = False,
    ):
        if host and port and etcd_client:
            log.warning("Both 'host/port' and 'etcd_client' provided. Using 'etcd_client'.")
        if etcd_client:
            targets = [_endpoint_of(etcd_client)]
        elif host and port:
            targets = [f"http://{host}:{port}"]
        elif endpoints:
            targets = list(endpoints)
        else:
            raise TypeError("Either 'host' and 'port' or 'etcd_client' must be provided.")
        self.etcd_client = etcd_client
        self.parent_node_id: str = parent_node_id or "root"
        self.ttl = ttl
        self.strict = strict
        self._core = CoreRegistry.etcd(
            targets,
            parent_node_id=self.parent_node_id,
            ttl=float(ttl),
            identity=identity,
            errors=etcd_errors(),
            timeout=timeout,
        )

    def register_node(
        self,
        node_id: str,
        host: str,
        port: int,
        metadata: Optional[Dict[str, str]] = None,
    ) -> None:
        """Writes the signed entry of ``node_id`` with a fresh lease of ``ttl`` seconds."""
        self._core.register_node(node_id, host, port, metadata)

    def lease_refresh(self, node_id: str) -> None:
        """Keeps the node's lease alive; registers the node again if its lease was lost.
        Failures are logged, not raised (as the original), unless ``strict``."""
        try:
            self._core.lease_refresh(node_id)
        except Exception as error:  # noqa: BLE001 - the original's contract
            if self.strict:
                raise
            log.exception("Lease renewal failed for node %s: %s", node_id, error)

    def get_available_nodes(self) -> Dict[str, dict]:
        """Every live node with a valid signature: ``{node_id: {"node_id", "host",
        "port", "public_key", "metadata"}}`` (the stored ``node_info``)."""
        return self._core.get_available_nodes()

    def deregister_node(self, node_id: str) -> None:
        """Deletes the node's entry and revokes its lease."""
        self._core.deregister_node(node_id)

    @property
    def public_key(self) -> str:
        """The base64 public key this registry signs entries with."""
        return self._core.public_key or ""

    def __repr__(self) -> str:
        return f"EtcdRegistry(parent_node_id={self.parent_node_id!r}, ttl={self.ttl!r})"
