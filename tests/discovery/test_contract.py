"""The store contract, run against every backend (memory, file, real etcd, real Consul).

What callers rely on: keys round-trip exactly; a transaction is all or nothing and one
writer wins a race; a lease that is not kept alive takes its keys with it and watchers
hear of it; a watch delivers every change in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from discovery import (
    Compare,
    Delete,
    Event,
    EventType,
    InvalidArgument,
    LeaseNotFound,
    Put,
    Store,
    open_store,
)
from discovery.contract import MAX_VALUE_BYTES


async def collect(store: Store, prefix: str, start: int, count: int, within: float) -> list[Event]:
    events: list[Event] = []

    async def run() -> None:
        async for event in store.watch(prefix, start_revision=start):
            events.append(event)
            if len(events) >= count:
                return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run(), within)
    return events


async def test_put_get_list_delete(store: Store) -> None:
    assert await store.get("a/b") is None
    rev = await store.put("a/b", b"one")
    kv = await store.get("a/b")
    assert kv is not None
    assert kv.value == b"one"
    assert kv.mod_revision == rev
    assert kv.create_revision == rev
    rev2 = await store.put("a/b", b"two")
    assert rev2 > rev
    kv2 = await store.get("a/b")
    assert kv2 is not None
    assert (kv2.value, kv2.create_revision, kv2.mod_revision) == (b"two", rev, rev2)
    await store.put("a/c", b"three")
    await store.put("ab", b"not under a/")
    listing = await store.list("a/")
    assert [kv.key for kv in listing.items] == ["a/b", "a/c"]
    assert listing.revision >= rev2
    assert await store.delete("a/b") is True
    assert await store.delete("a/b") is False
    assert await store.get("a/b") is None
    assert [kv.key for kv in (await store.list("a/")).items] == ["a/c"]


@pytest.mark.parametrize(
    "key",
    ["nodes/x/y/z", "services/my service", "labels/zone=ünïcödé-東京", "a b/c d", "x.y-z_1"],
)
async def test_awkward_keys_round_trip(store: Store, key: str) -> None:
    await store.put(key, key.encode())
    kv = await store.get(key)
    assert kv is not None
    assert kv.key == key
    assert kv.value == key.encode()
    assert [item.key for item in (await store.list(key)).items] == [key]


async def test_large_and_binary_values(store: Store) -> None:
    big = bytes(range(256)) * (MAX_VALUE_BYTES // 256)
    assert len(big) == MAX_VALUE_BYTES
    await store.put("big", big)
    kv = await store.get("big")
    assert kv is not None
    assert kv.value == big
    await store.put("empty", b"")
    empty = await store.get("empty")
    assert empty is not None
    assert empty.value == b""
    with pytest.raises(InvalidArgument):
        await store.put("too-big", big + b"x")


async def test_empty_key_is_refused(store: Store) -> None:
    with pytest.raises(InvalidArgument):
        await store.put("", b"x")


async def test_txn_compares_then_applies_all_or_nothing(store: Store) -> None:
    rev_a = await store.put("a", b"1")
    result = await store.txn(
        [Compare("a", rev_a), Compare("b", 0)], [Put("b", b"2"), Delete("a"), Put("c", b"3")]
    )
    assert result.succeeded
    assert await store.get("a") is None
    b = await store.get("b")
    c = await store.get("c")
    assert b is not None
    assert c is not None
    assert b.mod_revision == c.mod_revision  # one transaction, one revision
    # a stale compare changes nothing
    failed = await store.txn([Compare("b", rev_a)], [Put("b", b"stale"), Delete("c")])
    assert not failed.succeeded
    assert failed.found["b"] == b.mod_revision
    b_after = await store.get("b")
    assert b_after is not None
    assert b_after.value == b"2"
    assert await store.get("c") is not None


async def test_create_if_absent_race_has_exactly_one_winner(store: Store, store_url: str) -> None:
    writers = [await open_store(store_url) for _ in range(10)]
    try:
        results = await asyncio.gather(
            *(
                w.txn([Compare("leader-race", 0)], [Put("leader-race", f"w{i}".encode())])
                for i, w in enumerate(writers)
            )
        )
    finally:
        for w in writers:
            await w.close()
    winners = [i for i, r in enumerate(results) if r.succeeded]
    assert len(winners) == 1
    kv = await store.get("leader-race")
    assert kv is not None
    assert kv.value == f"w{winners[0]}".encode()


async def test_lease_keeps_keys_while_renewed_and_removes_them_after(store: Store) -> None:
    ttl = store.min_lease_ttl if store.min_lease_ttl > 1 else 1.0
    lease = await store.grant(ttl)
    start = (await store.list("leased/")).revision + 1
    await store.put("leased/a", b"x", lease=lease.id)
    await store.put("leased/b", b"y", lease=lease.id)
    await store.put("leased/durable", b"z")
    # renewed for more than one TTL: still there
    renew_until = time.monotonic() + ttl * 1.5
    while time.monotonic() < renew_until:
        await store.keep_alive(lease.id)
        await asyncio.sleep(ttl / 4)
    assert await store.get("leased/a") is not None
    # then left alone: gone within TTL + the backend's documented slack
    stopped = time.monotonic()
    deadline = stopped + ttl + store.lease_expiry_slack + 1.0
    while await store.get("leased/a") is not None:
        assert time.monotonic() < deadline, "leased key outlived its lease"
        await asyncio.sleep(0.1)
    assert await store.get("leased/b") is None
    assert await store.get("leased/durable") is not None
    events = await collect(store, "leased/", start, 5, within=5)
    deletes = {e.key for e in events if e.type is EventType.DELETE}
    assert deletes == {"leased/a", "leased/b"}
    with pytest.raises(LeaseNotFound):
        await store.keep_alive(lease.id)


async def test_many_leases_renewed_at_once_keep_their_keys_and_ended_ones_are_named(
    store: Store,
) -> None:
    ttl = store.min_lease_ttl if store.min_lease_ttl > 1 else 1.0
    leases = [(await store.grant(ttl)).id for _ in range(100)]
    for index, lease in enumerate(leases):
        await store.put(f"many/{index}", b"x", lease=lease)
    ended = {leases[3], leases[70]}
    for lease in ended:
        await store.revoke(lease)
    # renewed together for more than one TTL: every key of a live lease is still there
    renew_until = time.monotonic() + ttl * 1.5
    while time.monotonic() < renew_until:
        assert await store.keep_alive_many([*leases, leases[0]]) == ended
        await asyncio.sleep(ttl / 4)
    listing = await store.list("many/")
    assert len(listing.items) == len(leases) - len(ended)
    assert await store.keep_alive_many([]) == set()


async def test_revoke_removes_keys_at_once(store: Store) -> None:
    lease = await store.grant(max(store.min_lease_ttl, 30))
    await store.put("session/k", b"v", lease=lease.id)
    kv = await store.get("session/k")
    assert kv is not None
    assert kv.lease == lease.id
    await store.revoke(lease.id)
    assert await store.get("session/k") is None
    with pytest.raises(LeaseNotFound):
        await store.put("session/k2", b"v", lease=lease.id)


async def test_watch_sees_2000_puts_in_order(store: Store, store_url: str) -> None:
    start = (await store.list("stream/")).revision + 1
    count = 2000

    async def write() -> None:
        async with await open_store(store_url) as writer:
            for i in range(count):
                await writer.put(f"stream/{i:05d}", str(i).encode())

    watcher = asyncio.ensure_future(collect(store, "stream/", start, count, within=120))
    await write()
    events = await watcher
    assert len(events) == count
    assert [e.key for e in events] == [f"stream/{i:05d}" for i in range(count)]
    assert [e.value for e in events] == [str(i).encode() for i in range(count)]
    revisions = [e.revision for e in events]
    assert revisions == sorted(revisions)
    assert len(set(revisions)) == count


async def test_watch_from_listing_revision_replays_what_happened_since(store: Store) -> None:
    await store.put("w/keep", b"0")
    await store.put("w/gone", b"0")
    listing = await store.list("w/")
    # changes after the listing, before the watch starts
    await store.put("w/keep", b"1")
    await store.delete("w/gone")
    await store.put("w/new", b"2")
    await store.put("other/x", b"not watched")
    events = await collect(store, "w/", listing.revision + 1, 3, within=10)
    expected = [
        (EventType.PUT, "w/keep", b"1"),
        (EventType.DELETE, "w/gone", None),
        (EventType.PUT, "w/new", b"2"),
    ]
    seen = [(e.type, e.key, e.value) for e in events]
    if store.exact_history:
        assert seen == expected
    else:  # level-triggered: the same changes, a delete's position approximate
        assert sorted(seen, key=repr) == sorted(expected, key=repr)


async def test_watch_reports_deletes_and_txn_changes(store: Store) -> None:
    start = (await store.list("t/")).revision + 1
    await store.put("t/a", b"1")
    await store.txn([], [Put("t/b", b"2"), Delete("t/a")])
    if not store.exact_history:
        # level-triggered: t/a's put and delete may collapse into nothing; the final
        # state must still arrive, and a delivered put of t/a must be followed by its delete
        events = await collect(store, "t/", start, 3, within=5)
        seen = [(e.type, e.key) for e in events]
        assert (EventType.PUT, "t/b") in seen
        if (EventType.PUT, "t/a") in seen:
            assert seen.index((EventType.DELETE, "t/a")) > seen.index((EventType.PUT, "t/a"))
        return
    events = await collect(store, "t/", start, 3, within=10)
    assert len(events) == 3
    if store.exact_history:
        assert (events[0].type, events[0].key) == (EventType.PUT, "t/a")
    # the transaction's two changes share one revision, after the first put
    assert {(e.type, e.key) for e in events[-2:]} == {
        (EventType.PUT, "t/b"),
        (EventType.DELETE, "t/a"),
    }
    assert events[-1].revision == events[-2].revision > events[0].revision
