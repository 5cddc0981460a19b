"""Exceptions of isek_rs, named like the kinds of the Rust ``isek::Error``.

Every exception the package raises for a registry failure derives from
:class:`IsekError` and from the class of its kind (:class:`NotFound`,
:class:`Conflict`, :class:`InvalidArgument`, :class:`PermissionDenied`,
:class:`Unavailable`, :class:`BackendError`), so ``except isek_rs.NotFound`` works
whatever the backend.

The drop-in registry classes raise subclasses that also derive from what ISEK 0.2.1
raised in the same place, so code written against the original keeps catching them:

- ``IsekCenterRegistry``: a refusal by the center (HTTP 4xx/5xx) is also a
  ``requests.exceptions.HTTPError``, an unreachable center also a
  ``requests.exceptions.ConnectionError`` (both ``RequestException``), when
  ``requests`` is installed.
- ``EtcdRegistry``: a missing node and a node owned by another key are also a
  ``ValueError`` (the original raised ``ValueError("Node ... not found")`` and
  ``ValueError("Signature verification failed ...")``); an unreachable etcd is also
  a ``ConnectionError`` (and an ``etcd3gw`` ``ConnectionFailedError`` when etcd3gw is
  installed).
"""

from typing import Dict, Tuple, Type

__all__ = [
    "IsekError",
    "NotFound",
    "Conflict",
    "InvalidArgument",
    "PermissionDenied",
    "Unavailable",
    "BackendError",
    "Backend",
    "KIND_CLASSES",
    "CENTER_ERRORS",
    "ETCD_ERRORS",
    "center_errors",
    "etcd_errors",
]


class IsekError(Exception):
    """A registry operation failed; ``kind`` names the ``isek::Error`` variant."""

    kind: str = ""


class NotFound(IsekError):
    """The node (or its lease) does not exist; registering it again may help."""

    kind = "NotFound"


class Conflict(IsekError):
    """The node exists and belongs to someone else, or a write raced another one."""

    kind = "Conflict"


class InvalidArgument(IsekError, ValueError):
    """The request is malformed (bad node id, host, port or metadata)."""

    kind = "InvalidArgument"


class PermissionDenied(IsekError):
    """The caller lacks the proof of ownership (key, lease token) the call needs."""

    kind = "PermissionDenied"


class Unavailable(IsekError, ConnectionError):
    """The registry could not be reached or is overloaded; retrying later may work."""

    kind = "Unavailable"


class BackendError(IsekError):
    """The registry answered something unexpected or failed internally."""

    kind = "Backend"


#: The Rust variant's own name.
Backend = BackendError

#: Kind name -> the plain class of that kind.
KIND_CLASSES: Dict[str, Type[IsekError]] = {
    cls.kind: cls
    for cls in (NotFound, Conflict, InvalidArgument, PermissionDenied, Unavailable, BackendError)
}


def _table(prefix: str, extra: Dict[str, Tuple[type, ...]]) -> Dict[str, Type[IsekError]]:
    """Subclasses of each kind class that also derive from ``extra[kind]``."""
    table: Dict[str, Type[IsekError]] = {}
    for kind, base in KIND_CLASSES.items():
        bases = tuple(b for b in extra.get(kind, ()) if not issubclass(base, b))
        if not bases:
            table[kind] = base
            continue
        table[kind] = type(
            prefix + base.__name__,
            (base,) + bases,
            {"__module__": __name__, "__doc__": base.__doc__},
        )
    return table


def _center_extra() -> Dict[str, Tuple[type, ...]]:
    try:
        from requests.exceptions import ConnectionError as RequestsConnectionError
        from requests.exceptions import HTTPError
    except ImportError:
        return {}
    refused = (HTTPError,)
    return {
        "NotFound": refused,
        "Conflict": refused,
        "InvalidArgument": refused,
        "PermissionDenied": refused,
        "Backend": refused,
        "Unavailable": (RequestsConnectionError,),
    }


def _etcd_extra() -> Dict[str, Tuple[type, ...]]:
    extra: Dict[str, Tuple[type, ...]] = {
        "NotFound": (ValueError,),
        "PermissionDenied": (ValueError,),
    }
    try:
        from etcd3gw.exceptions import ConnectionFailedError
    except ImportError:
        pass
    else:
        extra["Unavailable"] = (ConnectionFailedError,)
    return extra


_tables: Dict[str, Dict[str, Type[IsekError]]] = {}


def _cached(name: str, prefix: str, extra) -> Dict[str, Type[IsekError]]:
    """Builds a table once. Built on first use, not at import: ``requests`` and
    ``etcd3gw`` take a third of a second to import, paid only by a program that
    constructs the class that needs them (as the original modules did on import)."""
    table = _tables.get(name)
    if table is None:
        table = _tables[name] = _table(prefix, extra())
        for cls in table.values():
            globals().setdefault(cls.__name__, cls)
    return table


def center_errors() -> Dict[str, Type[IsekError]]:
    """What ``IsekCenterRegistry`` raises, by kind."""
    return _cached("CENTER_ERRORS", "Center", _center_extra)


def etcd_errors() -> Dict[str, Type[IsekError]]:
    """What ``EtcdRegistry`` raises, by kind."""
    return _cached("ETCD_ERRORS", "Etcd", _etcd_extra)


def __getattr__(name: str):
    """``CENTER_ERRORS`` and ``ETCD_ERRORS``, built on first access."""
    if name == "CENTER_ERRORS":
        return center_errors()
    if name == "ETCD_ERRORS":
        return etcd_errors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
