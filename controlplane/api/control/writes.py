"""Writing desired state safely from any manager: create-if-absent and compare-and-swap.

Any manager may write services and node specs, so two of them (or a manager and the
leader) can race on one key. Every write here is a transaction guarded by the key's
revision as read: a create compares against "absent", an update against the revision
it started from, and a lost race is retried from a fresh read. Nothing is ever written
from a stale read, and a refused change (a `ControlError` from `change`) writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from controlplane.api.control.errors import Conflict, NotFound
from controlplane.models.base import Document
from discovery import Compare, Put, Store

D = TypeVar("D", bound=Document)

ATTEMPTS = 8


async def create(store: Store, key: str, document: Document) -> int | None:
    """Write `document` at `key` unless the key exists; the revision, or None if it did."""
    result = await store.txn([Compare(key, 0)], [Put(key, document.dump())])
    return result.revision if result.succeeded else None


async def modify(
    store: Store,
    key: str,
    *,
    model: type[D],
    change: Callable[[D], D],
    kind: str,
    ref: str,
) -> tuple[D, int]:
    """Replace the document at `key` with `change(current)`; returns it and the revision.

    `change` returns its argument itself to mean "nothing to change": nothing is written.

    Raises `NotFound` when the key is absent, and `Conflict` when other writers win
    `ATTEMPTS` races in a row (a hot key: the caller may simply retry).
    """
    for _ in range(ATTEMPTS):
        kv = await store.get(key)
        if kv is None:
            raise NotFound(kind, ref)
        current = model.load(kv.value)
        updated = change(current)
        if updated is current:  # nothing to change: no write, no event
            return current, kv.mod_revision
        result = await store.txn([Compare(key, kv.mod_revision)], [Put(key, updated.dump())])
        if result.succeeded:
            return updated, result.revision
    raise Conflict(f"{kind} {ref!r} is being changed by others; try again")
