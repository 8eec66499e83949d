"""Leader election on every backend: one leader at a time, proven by fenced writes.

The chaos test freezes leaders at random (their renewals stop, as in a SIGKILL or a
long pause) while they keep trying to write, as a paused process would when it wakes.
Writes go through a compare-and-swap counter, so the successful writes form one total
order; the fence is correct when the terms in that order never go backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field

import pytest

from discovery import Compare, Put, Store, open_store
from discovery.election import Election, Leadership, NotLeader


def election_ttl(store: Store) -> float:
    return max(store.min_lease_ttl, 2.0)


def failover_bound(store: Store, ttl: float) -> float:
    """How soon a successor must lead after a leader stops renewing."""
    return ttl + store.lease_expiry_slack + 2.0


async def test_one_leader_then_handover_on_resign(store: Store, store_url: str) -> None:
    ttl = election_ttl(store)
    async with await open_store(store_url) as other:
        first = Election(store, key="leader", value=b"a", ttl=ttl)
        second = Election(other, key="leader", value=b"b", ttl=ttl)
        term_a = await asyncio.wait_for(first.campaign(), 10)
        waiting = asyncio.ensure_future(second.campaign())
        await asyncio.sleep(0.5)
        assert not waiting.done(), "a second candidate must wait while the first leads"
        info = await second.current()
        assert info is not None
        assert (info.value, info.token) == (b"a", term_a.token)
        await term_a.resign()
        term_b = await asyncio.wait_for(waiting, failover_bound(store, ttl))
        assert term_b.token > term_a.token
        assert term_a.is_lost
        with pytest.raises(NotLeader):
            await term_a.txn([], [Put("x", b"from the old leader")])
        await term_b.txn([], [Put("x", b"from the new leader")])
        kv = await store.get("x")
        assert kv is not None
        assert kv.value == b"from the new leader"
        await term_b.resign()


async def test_deposed_leader_cannot_write(store: Store, store_url: str) -> None:
    ttl = election_ttl(store)
    async with await open_store(store_url) as other:
        old = await asyncio.wait_for(
            Election(store, key="leader", value=b"old", ttl=ttl).campaign(), 10
        )
        freeze(old)  # a paused process: no renewals, no watching
        await store.revoke(old.lease)  # its lease ends, as it would by expiry
        new = await asyncio.wait_for(
            Election(other, key="leader", value=b"new", ttl=ttl).campaign(),
            failover_bound(store, ttl),
        )
        assert not old.is_lost  # it has not noticed: only the fence protects us now
        with pytest.raises(NotLeader):
            await old.txn([], [Put("state", b"stale write")])
        assert await store.get("state") is None
        assert old.is_lost
        await new.resign()


async def test_leader_notices_loss_of_its_key(store: Store) -> None:
    ttl = election_ttl(store)
    term = await asyncio.wait_for(Election(store, key="leader", value=b"a", ttl=ttl).campaign(), 10)
    await store.revoke(term.lease)
    reason = await asyncio.wait_for(term.wait_lost(), ttl + store.lease_expiry_slack + 2)
    assert reason


async def test_observe_follows_leader_changes(store: Store, store_url: str) -> None:
    ttl = election_ttl(store)
    seen: list[bytes | None] = []
    watcher = Election(store, key="leader", value=b"-", ttl=ttl)

    async def follow() -> None:
        async for info in watcher.observe():
            seen.append(None if info is None else info.value)
            if len(seen) >= 3:
                return

    follower = asyncio.ensure_future(follow())
    deadline = time.monotonic() + 10
    while not seen:  # the follower has read the (empty) starting state
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    async with await open_store(store_url) as other:
        term = await Election(other, key="leader", value=b"a", ttl=ttl).campaign()
        deadline = time.monotonic() + 10
        while b"a" not in seen:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await term.resign()
        await asyncio.wait_for(follower, 10 + store.lease_expiry_slack)
    assert seen == [None, b"a", None]


def freeze(term: Leadership) -> None:
    """Stop a leader's renewals and key watch without telling it: a frozen process."""
    for task in term._tasks:
        task.cancel()


@dataclass
class Ledger:
    writes: list[tuple[int, int, str]] = field(default_factory=list)  # (counter, token, who)
    terms: list[tuple[float, int, str]] = field(default_factory=list)  # (won at, token, who)
    frozen: list[tuple[float, int]] = field(default_factory=list)  # (frozen at, token)


async def fenced_increment(term: Leadership, who: str, ledger: Ledger) -> None:
    kv = await term.store.get("fence/counter")
    n, rev = (json.loads(kv.value)["n"], kv.mod_revision) if kv else (0, 0)
    body = json.dumps({"n": n + 1, "token": term.token}).encode()
    result = await term.txn([Compare("fence/counter", rev)], [Put("fence/counter", body)])
    if result.succeeded:
        ledger.writes.append((n + 1, term.token, who))


@pytest.mark.slow
async def test_chaos_never_two_leaders_and_fast_failover(store: Store, store_url: str) -> None:
    ttl = election_ttl(store)
    duration = 30.0 if store.scheme in ("etcd", "consul", "file") else 10.0
    rng = random.Random(7)
    ledger = Ledger()
    current: dict[str, Leadership] = {}
    stores = [await open_store(store_url) for _ in range(5)]
    stop = asyncio.Event()

    async def candidate(i: int, own: Store) -> None:
        who = f"c{i}"
        while not stop.is_set():
            term = await Election(own, key="leader", value=who.encode(), ttl=ttl).campaign()
            ledger.terms.append((time.monotonic(), term.token, who))
            current[who] = term
            try:
                while not stop.is_set():
                    await fenced_increment(term, who, ledger)
                    await asyncio.sleep(0.02)
            except NotLeader:
                pass  # deposed (after a freeze): campaign again, as a restarted process
            finally:
                current.pop(who, None)
                await term.resign()

    async def killer() -> None:
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(0.5, 1.5) * ttl)
            if current:
                who = rng.choice(sorted(current))
                term = current[who]
                if not term.is_lost and (0, term.token) not in [(0, t) for _, t in ledger.frozen]:
                    freeze(term)
                    ledger.frozen.append((time.monotonic(), term.token))

    tasks = [asyncio.ensure_future(candidate(i, s)) for i, s in enumerate(stores)]
    chaos = asyncio.ensure_future(killer())
    await asyncio.sleep(duration)
    stop.set()
    chaos.cancel()
    for task in tasks:
        task.cancel()
    for task in [*tasks, chaos]:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    for s in stores:
        await s.close()

    assert ledger.frozen, "the chaos loop froze no leader"
    assert len(ledger.terms) >= 2
    # one total order of writes; within it, terms never go backwards
    ordered = sorted(ledger.writes)
    assert [n for n, _, _ in ordered] == list(range(1, len(ordered) + 1))
    tokens = [token for _, token, _ in ordered]
    assert tokens == sorted(tokens), "a deposed leader's write landed after its successor's"
    # each freeze is followed by a new term within the failover bound
    bound = failover_bound(store, ttl)
    for frozen_at, token in ledger.frozen:
        later = [won for won, t, _ in ledger.terms if t > token]
        if not later:
            continue  # frozen too close to the end of the run
        assert min(later) - frozen_at <= bound, (
            f"no new leader {min(later) - frozen_at:.1f} s after a freeze (bound {bound} s)"
        )


@pytest.mark.parametrize("cluster_fixture", ["etcd_cluster", "consul_cluster"])
async def test_election_works_with_one_member_of_three_down(
    request: pytest.FixtureRequest, cluster_fixture: str
) -> None:
    cluster = request.getfixturevalue(cluster_fixture)
    cluster.stop_member(0)  # the first endpoint listed: clients must fail over
    try:
        url = cluster.url()
        async with await open_store(url) as one, await open_store(url) as two:
            ttl = election_ttl(one)
            first = await asyncio.wait_for(
                Election(one, key="leader", value=b"a", ttl=ttl).campaign(), 30
            )
            await first.txn([], [Put("state", b"a")])
            waiting = asyncio.ensure_future(
                Election(two, key="leader", value=b"b", ttl=ttl).campaign()
            )
            await first.resign()
            second = await asyncio.wait_for(waiting, failover_bound(one, ttl) + 10)
            assert second.token > first.token
            with pytest.raises(NotLeader):
                await first.txn([], [Put("state", b"stale")])
            await second.txn([], [Put("state", b"b")])
            kv = await one.get("state")
            assert kv is not None
            assert kv.value == b"b"
            await second.resign()
    finally:
        cluster.start_member(0)
