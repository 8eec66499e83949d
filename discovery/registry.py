"""Opening a store from a URL: a table of schemes, extended by entry points.

Built-in backends are named here as "module:Class" and imported only when used, so
that `file://` users never import gRPC. Third-party packages add schemes through the
entry-point group `shoal.discovery` (name = scheme, value = "module:Class"). Two
claims on one scheme are an error, never a silent override.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from discovery.contract import Store
from discovery.errors import DuplicateScheme, InvalidStoreURL, UnknownScheme
from discovery.url import scheme_of

ENTRY_POINT_GROUP = "shoal.discovery"

BUILTIN: dict[str, str] = {
    "etcd": "discovery.backends.etcd:EtcdStore",
    "consul": "discovery.backends.consul:ConsulStore",
    "file": "discovery.backends.file:FileStore",
    "memory": "discovery.backends.memory:MemoryStore",
}

_INSTALL_HINT = {
    "etcd": "pip install aetcd",
    "consul": "pip install httpx",
}


def known_schemes() -> dict[str, str]:
    """Every scheme with its "module:Class", built-ins first; duplicates raise."""
    table = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in table:
            raise DuplicateScheme(
                f"discovery scheme {ep.name!r} is claimed twice: by {table[ep.name]} and "
                f"by {ep.value} (entry point of {ep.dist.name if ep.dist else 'unknown'})"
            )
        table[ep.name] = ep.value
    return table


def backend_class(scheme: str) -> type[Store]:
    table = known_schemes()
    target = table.get(scheme)
    if target is None:
        known = ", ".join(f"{name}://" for name in sorted(table))
        raise UnknownScheme(f"unknown discovery scheme {scheme!r}; known schemes: {known}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = _INSTALL_HINT.get(scheme)
        extra = f" (try: {hint})" if hint else ""
        raise InvalidStoreURL(f"the {scheme}:// backend cannot be loaded: {exc}{extra}") from exc
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Store)):
        raise InvalidStoreURL(f"{target} is not a discovery Store class")
    return cls


async def open_store(url: str) -> Store:
    """Open the store a discovery URL names. Raises `InvalidStoreURL` on a bad URL."""
    cls = backend_class(scheme_of(url))
    return await cls.open(url)
