"""An in-process store for unit tests: the contract's reference implementation.

`memory://name` opens the store called `name`; every open of the same name in one
process shares its keys, so a test can run a manager and several agents against it.
It keeps the whole history up to `HISTORY` events, so it behaves like etcd, including
`RevisionCompacted` once a watcher falls further behind than that.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Self

from discovery.contract import (
    Compare,
    Delete,
    Event,
    EventType,
    KeyValue,
    Lease,
    Listing,
    Op,
    Put,
    Store,
    TxnResult,
    check_key,
    check_txn_size,
    check_value,
)
from discovery.errors import (
    InvalidArgument,
    InvalidStoreURL,
    LeaseNotFound,
    RevisionCompacted,
)
from discovery.url import scheme_of

HISTORY = 100_000


@dataclass
class _LeaseState:
    ttl: float
    deadline: float
    keys: set[str] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None


class _State:
    def __init__(self) -> None:
        self.revision = 0
        self.data: dict[str, KeyValue] = {}
        self.history: list[Event] = []
        self.leases: dict[int, _LeaseState] = {}
        self.lease_ids = itertools.count(1)
        self.changed = asyncio.Event()

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def oldest(self) -> int:
        return self.history[0].revision if self.history else self.revision + 1

    def apply(self, ops: Sequence[Op]) -> int:
        """Apply ops at one new revision; the caller has validated them."""
        self.revision += 1
        rev = self.revision
        for op in ops:
            if isinstance(op, Put):
                old = self.data.get(op.key)
                if old is not None and old.lease is not None and old.lease != op.lease:
                    self._unbind(old.key, old.lease)
                if op.lease is not None:
                    self.leases[op.lease].keys.add(op.key)
                created = old.create_revision if old is not None else rev
                self.data[op.key] = KeyValue(op.key, op.value, created, rev, op.lease)
                self.history.append(Event(EventType.PUT, op.key, op.value, rev))
            else:
                old = self.data.pop(op.key, None)
                if old is None:
                    continue
                if old.lease is not None:
                    self._unbind(old.key, old.lease)
                self.history.append(Event(EventType.DELETE, op.key, None, rev))
        if len(self.history) > 2 * HISTORY:
            del self.history[:-HISTORY]
        self.notify()
        return rev

    def _unbind(self, key: str, lease: int) -> None:
        state = self.leases.get(lease)
        if state is not None:
            state.keys.discard(key)

    def end_lease(self, lease: int) -> None:
        state = self.leases.pop(lease, None)
        if state is None:
            return
        if state.timer is not None:
            state.timer.cancel()
        doomed = sorted(k for k in state.keys if k in self.data)
        if doomed:
            self.apply([Delete(k) for k in doomed])


_STATES: dict[str, _State] = {}


class MemoryStore(Store):
    scheme = "memory"
    min_lease_ttl = 0.1
    #: No server to protect: large, so that callers batch as the file store lets them.
    max_txn_ops = 4096
    lease_expiry_slack = 0.1

    def __init__(self, name: str) -> None:
        self.name = name
        self._state = _STATES.setdefault(name, _State())

    @classmethod
    async def open(cls, url: str) -> Self:
        if scheme_of(url) != "memory":
            raise InvalidStoreURL(f"{url!r} is not a memory:// URL")
        name = url.split("://", 1)[1].strip("/")
        if not name:
            raise InvalidStoreURL(f"discovery URL {url!r} names no store: use memory://name")
        return cls(name)

    @staticmethod
    def reset(name: str | None = None) -> None:
        """Forget one named store, or all of them (between tests)."""
        if name is None:
            _STATES.clear()
        else:
            _STATES.pop(name, None)

    async def get(self, key: str) -> KeyValue | None:
        check_key(key)
        return self._state.data.get(key)

    async def list(self, prefix: str) -> Listing:
        items = sorted(
            (kv for k, kv in self._state.data.items() if k.startswith(prefix)),
            key=lambda kv: kv.key,
        )
        return Listing(items, self._state.revision)

    async def put(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        result = await self.txn([], [Put(key, value, lease)])
        return result.revision

    async def delete(self, key: str) -> bool:
        check_key(key)
        if key not in self._state.data:
            return False
        self._state.apply([Delete(key)])
        return True

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        check_txn_size(self, compares, ops)
        state = self._state
        for op in ops:
            check_key(op.key)
            if isinstance(op, Put):
                check_value(op.value)
                if op.lease is not None and op.lease not in state.leases:
                    raise LeaseNotFound(f"lease {op.lease} does not exist (expired or revoked)")
        found = {}
        for cmp in compares:
            kv = state.data.get(cmp.key)
            found[cmp.key] = kv.mod_revision if kv is not None else 0
        if any(found[c.key] != c.mod_revision for c in compares):
            return TxnResult(False, state.revision, found)
        if not ops:
            return TxnResult(True, state.revision)
        return TxnResult(True, state.apply(ops))

    async def grant(self, ttl: float) -> Lease:
        if ttl <= 0:
            raise InvalidArgument(f"lease TTL must be positive, not {ttl}")
        ttl = max(ttl, self.min_lease_ttl)
        lease_id = next(self._state.lease_ids)
        loop = asyncio.get_running_loop()
        self._state.leases[lease_id] = _LeaseState(ttl, loop.time() + ttl)
        self._arm(lease_id)
        return Lease(lease_id, ttl)

    def _arm(self, lease_id: int) -> None:
        lease = self._state.leases[lease_id]
        if lease.timer is not None:
            lease.timer.cancel()
        loop = asyncio.get_running_loop()
        lease.deadline = loop.time() + lease.ttl
        lease.timer = loop.call_at(lease.deadline, self._state.end_lease, lease_id)

    async def keep_alive(self, lease: int) -> None:
        if lease not in self._state.leases:
            raise LeaseNotFound(f"lease {lease} expired or was revoked")
        self._arm(lease)

    async def revoke(self, lease: int) -> None:
        self._state.end_lease(lease)

    async def watch(self, prefix: str, *, start_revision: int) -> AsyncIterator[Event]:
        state = self._state
        next_rev = max(start_revision, 1)
        while True:
            if next_rev < state.oldest() and next_rev <= state.revision:
                raise RevisionCompacted(next_rev, state.oldest())
            changed = state.changed
            start = bisect.bisect_left(state.history, next_rev, key=lambda e: e.revision)
            pending = state.history[start:]
            for event in pending:
                next_rev = event.revision + 1
                if event.key.startswith(prefix):
                    yield event
            if not pending:
                await changed.wait()

    async def close(self) -> None:
        return None
