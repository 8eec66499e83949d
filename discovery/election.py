"""Leader election with a fencing token, written once on the store contract.

A candidate holds a lease and tries to create the leader key bound to it (a
create-if-absent transaction); whoever succeeds leads until the lease ends. The key's
`mod_revision` at that moment is the **fencing token**: it only grows, because every
new leadership is a new write to the store. A leader guards each of its writes with
`Compare(leader_key, token)`, so a deposed leader (its lease expired while it was
paused, partitioned or slow) cannot land a single write after a successor exists: its
compare fails. Correctness rests on the fence, not on timing; timing only decides how
fast a successor takes over.

Timing, per backend (TTL = the lease TTL asked for):
- etcd, file, memory: a dead leader's key vanishes within TTL (+ about 1 s for the file
  store's sweep); a waiting candidate sees the delete and wins at once.
- Consul: sessions expire between TTL and 2 x TTL (Consul's own rule), and the minimum
  TTL is 10 s; shoal's sessions use no lock-delay (the fence makes it unnecessary), so a
  successor leads within 2 x TTL + a poll.

A leader gives up on its own (sets `lost`) as soon as it cannot prove its lease alive:
the lease is gone, the key changed hands, or the store has not answered a renewal for
`ttl - 2 x renew period` seconds. It then stops writing before anyone else can lead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from discovery.contract import Compare, EventType, KeyValue, Op, Put, Store, TxnResult
from discovery.errors import DiscoveryError, LeaseNotFound, RevisionCompacted, StoreUnavailable

log = logging.getLogger(__name__)


class NotLeader(DiscoveryError):
    """A fenced write failed: this process no longer leads. Stop writing."""


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    value: bytes
    token: int  # the leader key's mod_revision: the current term's fencing token


class Leadership:
    """One term as leader. `lost` is set the moment the term is over."""

    def __init__(self, *, store: Store, key: str, lease: int, token: int, ttl: float) -> None:
        self.store = store
        self.key = key
        self.lease = lease
        self.token = token
        self.ttl = ttl
        self.lost = asyncio.Event()
        self.reason = ""
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def is_lost(self) -> bool:
        return self.lost.is_set()

    def fence(self) -> Compare:
        """The compare that makes a write succeed only while this term lasts."""
        return Compare(self.key, self.token)

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        """A fenced transaction. Raises `NotLeader` when the fence fails; returns the
        result (possibly failed on the caller's own compares) otherwise."""
        if self.is_lost:
            raise NotLeader(f"leadership (term {self.token}) was lost: {self.reason}")
        result = await self.store.txn([self.fence(), *compares], ops)
        if not result.succeeded and result.found.get(self.key, self.token) != self.token:
            self._lose("the leader key changed hands (a fenced write was refused)")
            raise NotLeader(f"term {self.token} is over: another leader holds {self.key!r}")
        return result

    async def wait_lost(self) -> str:
        await self.lost.wait()
        return self.reason

    async def resign(self) -> None:
        """Step down now: the key is deleted, a waiting candidate leads at once."""
        self._lose("resigned")
        with contextlib.suppress(DiscoveryError):
            await self.store.revoke(self.lease)

    def _lose(self, reason: str) -> None:
        if self.lost.is_set():
            return
        self.reason = reason
        self.lost.set()
        level = logging.INFO if reason == "resigned" else logging.WARNING
        log.log(level, "leadership of %s (term %d) lost: %s", self.key, self.token, reason)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()

    def _start(self, renew_every: float) -> None:
        self._tasks = [
            asyncio.create_task(self._renew(renew_every), name=f"renew {self.key}"),
            asyncio.create_task(self._watch_key(), name=f"watch {self.key}"),
        ]

    async def _renew(self, every: float) -> None:
        last_ok = time.monotonic()
        give_up_after = max(self.ttl - 2 * every, every)
        while not self.is_lost:
            await asyncio.sleep(every)
            try:
                await self.store.keep_alive(self.lease)
                last_ok = time.monotonic()
            except LeaseNotFound:
                self._lose("the leader lease expired")
            except DiscoveryError as exc:
                silent = time.monotonic() - last_ok
                if silent >= give_up_after:
                    self._lose(f"the store did not answer for {silent:.1f} s ({exc})")

    async def _watch_key(self) -> None:
        start = self.token + 1
        while not self.is_lost:
            try:
                async for event in self.store.watch(self.key, start_revision=start):
                    if event.key != self.key:
                        continue
                    start = event.revision + 1
                    if event.type is EventType.DELETE:
                        self._lose("the leader key was deleted (lease ended)")
                    elif event.revision != self.token:
                        self._lose("the leader key was overwritten")
                    if self.is_lost:
                        return
            except RevisionCompacted:
                kv = await self.store.get(self.key)
                if kv is None or kv.mod_revision != self.token:
                    self._lose("the leader key is gone or changed hands")
                    return
                start = (await self.store.list(self.key)).revision + 1
            except StoreUnavailable:
                await asyncio.sleep(0.5)


class Election:
    """Campaign for, and observe, one leader key.

    `campaign()` blocks until this candidate leads (or is cancelled) and returns the
    `Leadership`; `observe()` yields the current leader whenever it changes.
    """

    def __init__(self, store: Store, *, key: str, value: bytes, ttl: float = 10.0) -> None:
        self.store = store
        self.key = key
        self.value = value
        self.ttl = max(ttl, store.min_lease_ttl)

    @property
    def renew_every(self) -> float:
        return self.ttl / 3

    async def current(self) -> LeaderInfo | None:
        kv = await self.store.get(self.key)
        return _info(kv)

    async def campaign(self) -> Leadership:
        lease = await self._grant()
        try:
            while True:
                try:
                    leadership = await self._try_lead(lease)
                except LeaseNotFound:
                    lease = await self._grant()
                    continue
                except StoreUnavailable:
                    await asyncio.sleep(min(1.0, self.renew_every))
                    continue
                if leadership is not None:
                    leadership._start(self.renew_every)
                    return leadership
                await self._wait_vacancy(lease)
        except BaseException:
            with contextlib.suppress(DiscoveryError, asyncio.CancelledError):
                await asyncio.shield(self.store.revoke(lease))
            raise

    async def _grant(self) -> int:
        while True:
            try:
                return (await self.store.grant(self.ttl)).id
            except StoreUnavailable:
                await asyncio.sleep(min(1.0, self.renew_every))

    async def _try_lead(self, lease: int) -> Leadership | None:
        result = await self.store.txn([Compare(self.key, 0)], [Put(self.key, self.value, lease)])
        if result.succeeded:
            return Leadership(
                store=self.store, key=self.key, lease=lease, token=result.revision, ttl=self.ttl
            )
        kv = await self.store.get(self.key)
        if kv is not None and kv.lease == lease:  # our own earlier write whose reply was lost
            return Leadership(
                store=self.store, key=self.key, lease=lease, token=kv.mod_revision, ttl=self.ttl
            )
        return None

    async def _wait_vacancy(self, lease: int) -> None:
        """Wait until the leader key is deleted, keeping our own lease alive meanwhile."""
        listing = await self.store.list(self.key)
        if not any(kv.key == self.key for kv in listing.items):
            return
        watch = self._deleted(listing.revision + 1)
        waiter = asyncio.ensure_future(watch)
        try:
            while not waiter.done():
                done, _ = await asyncio.wait({waiter}, timeout=self.renew_every)
                if not done:
                    await self.store.keep_alive(lease)  # LeaseNotFound: re-grant upstream
            waiter.result()
        finally:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError, DiscoveryError):
                await waiter

    async def _deleted(self, start: int) -> None:
        try:
            async for event in self.store.watch(self.key, start_revision=start):
                if event.key == self.key and event.type is EventType.DELETE:
                    return
        except RevisionCompacted:
            return  # look again from scratch

    async def observe(self) -> AsyncIterator[LeaderInfo | None]:
        """The current leader now, then after every change (None: no leader)."""
        while True:
            try:
                listing = await self.store.list(self.key)
                kv = next((item for item in listing.items if item.key == self.key), None)
                current = _info(kv)
                yield current
                async for event in self.store.watch(self.key, start_revision=listing.revision + 1):
                    if event.key != self.key:
                        continue
                    if event.type is EventType.DELETE:
                        current = None
                    else:
                        assert event.value is not None
                        current = LeaderInfo(event.value, event.revision)
                    yield current
            except (RevisionCompacted, StoreUnavailable):
                await asyncio.sleep(0.5)


def _info(kv: KeyValue | None) -> LeaderInfo | None:
    return None if kv is None else LeaderInfo(kv.value, kv.mod_revision)
