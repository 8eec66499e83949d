"""The node's heartbeat: `nodes/<id>` kept alive on a lease, so that a dead node vanishes.

Registration is a create-if-absent transaction on `nodes/<id>`, bound to a fresh lease
of TTL = 3 heartbeat periods, renewed every period ± 10 %. The key exists exactly while
some agent keeps its lease alive, which is what lets registration catch two agents
claiming one id: if the key is already there, its holder is either a live agent (a
copied state directory) or our own previous incarnation killed without revoking its
lease. We wait up to one TTL for the key to vanish; if it does not, the holder is alive
and we refuse to start (`NodeIdConflict`), naming it.

Losing the store never ends the heartbeat: a renewal that fails is retried with capped
exponential backoff; when the store answers again and says the lease is gone, the agent
registers again under the same node id with a new lease and carries on. The operator's
half of the node, `node-specs/<id>`, is created here when absent and never overwritten.

Renewals go through the store connection's `LeaseRenewer`, which gathers the renewals
asked for within `RENEW_WINDOW` into one `Store.keep_alive_many` call: a hollow fleet's
thousand nodes renew in a few requests a period (on etcd, one LeaseKeepAlive stream
each) instead of a thousand, and each node still learns on its own that its lease ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from controlplane import keys
from controlplane.agent.backoff import Backoff, jittered
from controlplane.agent.futures import settle
from controlplane.agent.identity import node_file
from controlplane.models import NodeInfo, NodeSpec
from discovery import Compare, LeaseNotFound, Put, Store, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Heartbeat period jitter: each renewal comes after period ± this fraction of it.
JITTER = 0.1
#: How often registration looks again at a node key held by someone else.
CONFLICT_POLL = 0.25
#: Seconds a renewer waits for more renewals before it sends what it has.
RENEW_WINDOW = 0.1


class LeaseRenewer:
    """Renews the leases of every heartbeat on one store connection together."""

    def __init__(self, store: Store, *, window: float = RENEW_WINDOW) -> None:
        self._store = store
        self._window = window
        self._queue: dict[int, list[asyncio.Future[None]]] = {}
        self._sender: asyncio.Task[None] | None = None
        #: Store calls made, and leases they renewed: for tests and benchmarks.
        self.calls = 0
        self.renewals = 0

    async def renew(self, lease: int) -> None:
        """Renew `lease` with the others of its batch; raises `LeaseNotFound` when it
        ended, or what the store raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.setdefault(lease, []).append(future)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="lease renewer")
        await future

    async def _send(self) -> None:
        try:
            await asyncio.sleep(self._window)
            while self._queue:
                batch, self._queue = self._queue, {}
                await self._send_one(batch)
        finally:  # cancelled with its loop: nobody waits forever
            for futures in self._queue.values():
                for future in futures:
                    future.cancel()

    async def _send_one(self, batch: dict[int, list[asyncio.Future[None]]]) -> None:
        leases = [lease for lease, futures in batch.items() if not all(f.done() for f in futures)]
        if not leases:
            return
        self.calls += 1
        self.renewals += len(leases)
        try:
            lost = await self._store.keep_alive_many(leases)
        except Exception as exc:  # each heartbeat handles it as its own renewal's failure
            for futures in batch.values():
                for future in futures:
                    settle(future, exc)
            return
        for lease, futures in batch.items():
            error = (
                LeaseNotFound(f"lease {lease} expired or was revoked") if lease in lost else None
            )
            for future in futures:
                settle(future, error)


_renewers: weakref.WeakKeyDictionary[Store, LeaseRenewer] = weakref.WeakKeyDictionary()


def renewer_for(store: Store) -> LeaseRenewer:
    """The one renewer of this store connection, shared by every heartbeat on it."""
    found = _renewers.get(store)
    if found is None:
        found = _renewers[store] = LeaseRenewer(store)
    return found


class NodeIdConflict(Exception):
    """Another live agent holds this node id; the message names it and says what to do."""

    def __init__(
        self, *, node_id: str, holder: NodeInfo | None, state_dir: Path | None, waited: float
    ) -> None:
        self.node_id = node_id
        self.holder = holder
        if holder is not None:
            started = datetime.fromtimestamp(holder.started, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            who = (
                f"another agent (hostname {holder.hostname}, address {holder.addr}, "
                f"started {started})"
            )
        else:
            who = "another agent (its heartbeat document could not be read)"
        advice = "Was this state directory copied from another host?"
        if state_dir is not None:
            advice += f" Remove {node_file(state_dir)} to join as a new node."
        super().__init__(
            f"node id {node_id} is already in use by {who}, which was still alive after "
            f"{waited:.0f} s. {advice}"
        )


class Heartbeat:
    """Registers one node and keeps its key alive; never gives up on a store that is down."""

    def __init__(
        self,
        store: Store,
        *,
        info: NodeInfo,
        spec: NodeSpec,
        period: float,
        state_dir: Path | None = None,
        on_reconnect: Callable[[], None] | None = None,
        renewer: LeaseRenewer | None = None,
    ) -> None:
        self._store = store
        self._info = info
        self._spec = spec
        self.period = period
        self._state_dir = state_dir
        self._on_reconnect = on_reconnect
        self._renewer = renewer or renewer_for(store)
        self.lease: int | None = None
        self._claiming = 0  # the lease a registration in progress holds
        self._stopped = False
        self.registrations = 0  # how many times the node key was created (1 + re-registrations)

    @property
    def node_id(self) -> str:
        return self._info.id

    @property
    def ttl(self) -> float:
        return max(3 * self.period, self._store.min_lease_ttl)

    async def register(self) -> None:
        """Create `node-specs/<id>` if absent, then `nodes/<id>` on a new lease.

        Waits up to one TTL (+ the store's expiry slack) for a key left by someone else
        to vanish; raises `NodeIdConflict` if it does not. Store errors propagate.
        """
        spec_key = keys.node_spec(self.node_id)
        await self._bounded(
            self._store.txn([Compare(spec_key, 0)], [Put(spec_key, self._spec.dump())])
        )
        lease = await self._claim()
        if self._stopped:  # stopped while registering: leave no key behind
            await self._revoke_quietly(lease)
            return
        self.lease = lease
        self.registrations += 1

    async def _claim(self) -> int:
        """Create the node key on a new lease; returns the lease."""
        lease = (await self._bounded(self._store.grant(self.ttl))).id
        try:
            return await self._claim_with(lease)
        except BaseException:
            await self._revoke_quietly(self._claiming)
            raise

    async def _claim_with(self, lease: int) -> int:
        self._claiming = lease
        key = keys.node(self.node_id)
        value = self._info.dump()
        patience = self.ttl + self._store.lease_expiry_slack + 1.0
        deadline = time.monotonic() + patience
        announced = False
        while True:
            result = await self._bounded(
                self._store.txn([Compare(key, 0)], [Put(key, value, lease)])
            )
            if result.succeeded:
                return lease
            held = await self._bounded(self._store.get(key))
            if held is None:
                continue  # vanished between the two calls
            holder = _parse_info(held.value)
            if holder is not None and holder.instance == self._info.instance:
                # our own key, on a lease we no longer renew: take it over
                taken = await self._bounded(
                    self._store.txn([Compare(key, held.mod_revision)], [Put(key, value, lease)])
                )
                if taken.succeeded:
                    return lease
                continue
            if time.monotonic() >= deadline:
                raise NodeIdConflict(
                    node_id=self.node_id, holder=holder, state_dir=self._state_dir, waited=patience
                )
            if not announced:
                where = f"{holder.hostname} at {holder.addr}" if holder else "an unknown agent"
                log.warning(
                    "node id %s is held by %s; waiting up to %.0f s for its lease to expire",
                    self.node_id,
                    where,
                    patience,
                )
                announced = True
            await asyncio.sleep(CONFLICT_POLL)
            try:  # keep our own lease alive while we wait
                await self._bounded(self._store.keep_alive(lease))
            except LeaseNotFound:
                lease = self._claiming = (await self._bounded(self._store.grant(self.ttl))).id

    async def run(self) -> None:
        """Renew the lease every period ± jitter, forever; re-register when it is lost."""
        if self.lease is None:
            await self._register_until_done()
        backoff = Backoff(first=0.2, cap=self.period)
        failing = False
        while True:
            await asyncio.sleep(jittered(self.period, JITTER))
            while True:
                lease = self.lease
                if lease is None or self._stopped:
                    return
                try:
                    await self._bounded(self._renewer.renew(lease))
                except LeaseNotFound:
                    log.warning("node %s lost its lease; registering again", self.node_id)
                    self.lease = None
                    await self._register_until_done()
                    failing = False
                    self._reconnected()
                    backoff.reset()
                    break
                except (StoreUnavailable, TimeoutError) as exc:
                    if not failing:
                        log.warning("node %s cannot renew its lease: %s", self.node_id, exc)
                    failing = True
                    await asyncio.sleep(backoff.next_delay())
                    continue
                if failing:
                    log.info("node %s renewed its lease again", self.node_id)
                    failing = False
                    self._reconnected()
                backoff.reset()
                break

    async def _register_until_done(self) -> None:
        backoff = Backoff(first=0.2, cap=self.period)
        while not self._stopped:
            try:
                await self.register()
            except (StoreUnavailable, TimeoutError, LeaseNotFound) as exc:
                log.debug("node %s cannot register yet: %s", self.node_id, exc)
            except NodeIdConflict as exc:
                log.error("%s", exc)
            else:
                log.info("node %s registered again", self.node_id)
                return
            await asyncio.sleep(backoff.next_delay())

    async def stop(self) -> None:
        """Revoke the lease, so that the node key vanishes at once (best effort)."""
        self._stopped = True
        lease, self.lease = self.lease, None
        if lease is not None:
            await self._revoke_quietly(lease)

    async def _revoke_quietly(self, lease: int) -> None:
        try:
            async with asyncio.timeout(min(self.period, 5.0)):
                await self._store.revoke(lease)
        except (StoreUnavailable, LeaseNotFound, TimeoutError) as exc:
            log.info("could not revoke lease %s of node %s: %s", lease, self.node_id, exc)

    def _reconnected(self) -> None:
        if self._on_reconnect is not None:
            self._on_reconnect()

    async def _bounded(self, call: Awaitable[T]) -> T:
        async with asyncio.timeout(max(self.period, 1.0)):  # not wait_for: it can lose a cancel
            return await call


def _parse_info(raw: bytes) -> NodeInfo | None:
    try:
        return NodeInfo.load(raw)
    except ValidationError:
        return None
