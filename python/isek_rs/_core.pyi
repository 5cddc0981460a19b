"""Type stubs of isek_rs._core, the native half of isek_rs (built from python/src)."""

import os
from typing import Any, AsyncIterator, Callable, Dict, Iterator, List, Literal, Mapping, Optional, Type

__version__: str

NodeDict = Dict[str, Any]
"""A node as registries list it: node_id, host, port, metadata, and public_key (etcd)
or expires_at (a center)."""

class NodeIdentity:
    """A node's own P-256 key pair: the proof that it owns its registry entry."""

    @staticmethod
    def generate() -> "NodeIdentity":
        """A fresh random key pair."""
    @staticmethod
    def load(path: "os.PathLike[str] | str") -> "NodeIdentity":
        """Loads a PKCS#8 PEM key file (from `isek keygen` or `save`).
        Raises NotFound (missing file), InvalidArgument (not a P-256 key)."""
    @staticmethod
    def from_pem(pem: str) -> "NodeIdentity":
        """Parses a PKCS#8 PEM private key."""
    def to_pem(self) -> str:
        """The private key as PKCS#8 PEM text."""
    def save(self, path: "os.PathLike[str] | str") -> None:
        """Writes the key to a new file (mode 0600); Conflict if the file exists."""
    @property
    def public_key(self) -> str:
        """Base64 of the raw 64-byte X||Y public key, as ISEK stores it."""
    def sign(self, message: bytes) -> bytes:
        """ECDSA P-256 / SHA-256 signature, raw 64-byte r||s."""
    def sign_legacy(self, message: bytes) -> bytes:
        """ECDSA P-256 / SHA-1 signature (ISEK 0.2.1's), raw 64-byte r||s."""

class CoreRegistry:
    """A center or etcd client; the engine behind IsekCenterRegistry and EtcdRegistry."""

    @staticmethod
    def center(
        url: str,
        identity: Optional[NodeIdentity] = None,
        errors: Optional[Mapping[str, Type[BaseException]]] = None,
        timeout: float = 10.0,
        renew_timeout: float = 5.0,
        ca_file: Optional[str] = None,
    ) -> "CoreRegistry": ...
    @staticmethod
    def etcd(
        endpoints: List[str],
        parent_node_id: str = "root",
        ttl: float = 30.0,
        identity: Optional[NodeIdentity] = None,
        errors: Optional[Mapping[str, Type[BaseException]]] = None,
        timeout: float = 5.0,
    ) -> "CoreRegistry": ...
    def register_node(self, node_id: str, host: str, port: int, metadata: Optional[Mapping[str, Any]] = None) -> None: ...
    def lease_refresh(self, node_id: str) -> None: ...
    def deregister_node(self, node_id: str) -> None: ...
    def get_available_nodes(self) -> Dict[str, NodeDict]: ...
    def lease_token(self, node_id: str) -> Optional[str]: ...
    @property
    def public_key(self) -> Optional[str]: ...
    @property
    def ttl(self) -> Optional[float]: ...
    def watch(self, poll_interval: float = 5.0, exclude: Optional[str] = None, capacity: int = 1024) -> "Watch": ...
    def peer_view(self, poll_interval: float = 5.0, exclude: Optional[str] = None) -> "PeerView": ...

class WatchEvent:
    """One membership change."""

    @property
    def kind(self) -> Literal["join", "update", "leave"]: ...
    @property
    def node_id(self) -> str: ...
    @property
    def node(self) -> NodeDict:
        """The entry (its last one, for a leave)."""
    @property
    def previous(self) -> Optional[NodeDict]:
        """The entry before an update."""

class Watch(Iterator[WatchEvent], AsyncIterator[WatchEvent]):
    """Membership changes: the current nodes as joins, then every change. Iterate
    (blocking, GIL released, Ctrl-C honoured) or `async for`; close() to stop."""

    def __iter__(self) -> "Watch": ...
    def __next__(self) -> WatchEvent: ...
    def __aiter__(self) -> "Watch": ...
    async def __anext__(self) -> WatchEvent: ...
    def next_event(self, timeout: Optional[float] = None) -> Optional[WatchEvent]:
        """The next event, or None after `timeout` seconds or once closed."""
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> "Watch": ...
    def __exit__(self, *args: object) -> bool: ...
    async def __aenter__(self) -> "Watch": ...
    async def __aexit__(self, *args: object) -> bool: ...

class PeerView:
    """A live, read-only copy of the registry's membership."""

    def peers(self) -> Dict[str, NodeDict]: ...
    def peer(self, node_id: str) -> Optional[NodeDict]: ...
    def find(
        self,
        predicate: Optional[Callable[[NodeDict], bool]] = None,
        *,
        filter: Optional[str] = None,
        **metadata: Any,
    ) -> List[NodeDict]:
        """Peers that match the CEL `filter` (e.g. 'metadata.role == "planner"'),
        whose metadata has every given key with an equal value, and for which
        `predicate` (if given) is true, in node id order. A bad filter raises
        InvalidArgument."""
    @property
    def revision(self) -> int: ...
    @property
    def sync(self) -> Literal["pending", "live", "stale", "closed"]: ...
    @property
    def source(self) -> Optional[Literal["stream", "poll"]]: ...
    def wait_live(self, timeout: Optional[float] = None) -> bool: ...
    def close(self) -> None: ...
    def __len__(self) -> int: ...
    def __contains__(self, node_id: str) -> bool: ...
    def __enter__(self) -> "PeerView": ...
    def __exit__(self, *args: object) -> bool: ...

class Node:
    """A node kept registered from a Rust thread (renew at TTL/3, register again when
    lost, back off while unreachable), deregistered on exit. `with` / `async with`,
    or start() / stop(). A running Node dropped without stop() stops renewing without
    deregistering (its entry expires with its lease, as after a crash)."""

    def __init__(
        self,
        registry: Any,
        host: str,
        port: int,
        *,
        node_id: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        ttl: Optional[float] = None,
        follow_peers: bool = True,
        include_self: bool = False,
        poll_interval: float = 5.0,
    ) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def __enter__(self) -> "Node": ...
    def __exit__(self, exc_type: object, exc_value: object, traceback: object) -> bool: ...
    async def __aenter__(self) -> "Node": ...
    async def __aexit__(self, exc_type: object, exc_value: object, traceback: object) -> bool: ...
    @property
    def node_id(self) -> str: ...
    @property
    def state(self) -> Literal["new", "registered", "retrying", "lost", "stopped", "failed"]: ...
    def state_info(self) -> Dict[str, Any]:
        """{"state", "since" (Unix seconds or None), "attempts", "error"}."""
    @property
    def registered(self) -> bool: ...
    def wait_registered(self, timeout: Optional[float] = None) -> bool: ...
    @property
    def peers(self) -> PeerView: ...

def _resolve(future: Any, method: str, value: Any) -> None: ...
def _runtime_stats() -> Dict[str, int]: ...
def _sleep(seconds: float) -> None: ...
