"""isek_rs: ISEK's registry classes, backed by the Rust isek core.

Drop-in for ISEK 0.2.1 (PyPI ``isek``): change one import and nothing else::

    # from isek.node.isek_center_registry import IsekCenterRegistry
    from isek_rs import IsekCenterRegistry
    # from isek.node.etcd_registry import EtcdRegistry
    from isek_rs import EtcdRegistry

Same constructor signatures and defaults, same methods and return shapes, same
exception types where the original raised them (see :mod:`isek_rs.errors`); where
``isek`` is installed the classes subclass ``isek.node.registry.Registry``, so
``isek.node.node_v2.Node(registry=...)`` takes them. On top of the original:

- :class:`NodeIdentity`: a node's own P-256 key (generate, load and save PEM);
  registries given one sign registrations and get lease tokens;
- ``registry.watch()``: membership changes as an iterator and an async iterator;
- :class:`Node`: a context manager (``with`` / ``async with``) keeping a node
  registered from a Rust thread (renew, re-register, backoff), deregistering on exit;
- :class:`PeerView`: a live copy of the membership with lookups.

Blocking calls release the GIL and are interrupted by Ctrl-C.
"""

from ._core import NodeIdentity, Node, PeerView, Watch, WatchEvent, __version__
from .errors import (
    Backend,
    BackendError,
    Conflict,
    InvalidArgument,
    IsekError,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from .registry import EtcdRegistry, IsekCenterRegistry, Registry

__all__ = [
    "IsekCenterRegistry",
    "EtcdRegistry",
    "Registry",
    "NodeIdentity",
    "Node",
    "PeerView",
    "Watch",
    "WatchEvent",
    "IsekError",
    "NotFound",
    "Conflict",
    "InvalidArgument",
    "PermissionDenied",
    "Unavailable",
    "BackendError",
    "Backend",
    "__version__",
]
