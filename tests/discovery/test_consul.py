"""The Consul backend against real Consul servers, beyond the shared contract suite.

What users of a Consul-backed cluster care about: a watch survives a Consul restart and
resumes with nothing missed and nothing twice; losing one server of three (a follower,
then the leader) leaves reads, writes, sessions and watches working through a URL that
lists all three; a down store raises `StoreUnavailable` quickly and the same store object
recovers by itself; leases end between TTL and 2 x TTL; and what the backend writes is
what Consul's own tools expect (a leased key is a lock held by a `delete` session).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

from discovery import (
    Compare,
    Delete,
    Event,
    EventType,
    InvalidArgument,
    InvalidStoreURL,
    KeyValue,
    LeaseNotFound,
    Put,
    RevisionCompacted,
    Store,
    StoreUnavailable,
    open_store,
)
from discovery.backends.consul import ConsulStore, diff_snapshots
from tests.harness.consul import ConsulCluster, ConsulServer
from tests.harness.process import free_port

T = TypeVar("T")


# --- helpers -------------------------------------------------------------------------
async def until(check: Callable[[], bool], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.05)


async def eventually(call: Callable[[], Awaitable[T]], *, within: float) -> T:
    """`call()` once the store answers again, retrying StoreUnavailable until `within`."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await call()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def following(store: Store, prefix: str, start: int) -> AsyncIterator[list[Event]]:
    """Watch `prefix` from `start` in the background; yields the list events land in."""
    events: list[Event] = []

    async def run() -> None:
        async for event in store.watch(prefix, start_revision=start):
            events.append(event)

    task = asyncio.ensure_future(run())
    try:
        yield events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # re-raises what ended the watch early, if anything did


def seen(events: list[Event]) -> list[tuple[EventType, str, bytes | None]]:
    return [(e.type, e.key, e.value) for e in events]


# --- no server needed ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("consul://h:8500/shoal?colour=red", "unknown option 'colour'"),
        ("consul://h:8500/shoal?scheme=ftp", "scheme='ftp' must be http or https"),
        ("consul://h:8500/shoal?ca=/etc/ca.pem", "gives ca= but not scheme=https"),
        ("consul://h:8500/shoal?scheme=https&ca=/no/such/ca.pem", "is not a readable file"),
        ("consul://h:8500/shoal?scheme=https&key=/k.pem", "key= without cert="),
        ("consul://h:8500/shoal?timeout=soon", "timeout='soon' must be a number"),
        ("consul://h:8500/shoal/../other", "'..' path segment"),
    ],
)
async def test_bad_consul_urls_get_one_line_before_connecting(url: str, names: str) -> None:
    with pytest.raises(InvalidStoreURL) as err:
        await open_store(url)
    assert names in str(err.value)
    assert "\n" not in str(err.value)


async def test_open_needs_no_server_and_calls_fail_fast_naming_the_endpoint() -> None:
    port = free_port()  # nothing listens there
    store = await open_store(f"consul://127.0.0.1:{port}/shoal?token=secret-token")
    assert isinstance(store, ConsulStore)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as err:
            await store.get("k")
        assert time.monotonic() - started < 1.0
        assert f"127.0.0.1:{port}" in str(err.value)
        assert "secret-token" not in str(err.value)
        with pytest.raises(InvalidArgument):
            await store.put("a//b", b"x")  # Consul's HTTP paths cannot carry it
    finally:
        await store.close()


def test_diff_orders_puts_by_index_then_deletes_at_the_snapshot_index() -> None:
    def kv(key: str, rev: int) -> KeyValue:
        return KeyValue(key, key.encode(), rev, rev)

    before = {"a": kv("a", 5), "b": kv("b", 6), "c": kv("c", 7)}
    after = {"a": kv("a", 5), "c": kv("c", 12), "d": kv("d", 10)}
    events = diff_snapshots(before, after, index=14, vanished=["e", "a"])
    assert [(e.type, e.key, e.revision) for e in events] == [
        (EventType.PUT, "d", 10),
        (EventType.PUT, "c", 12),
        (EventType.DELETE, "b", 14),
        (EventType.DELETE, "e", 14),  # seen to exist since `before`, gone from both
    ]


# --- one dev agent ---------------------------------------------------------------------
@pytest.mark.consul
async def test_leased_key_is_a_consul_lock_held_by_a_delete_session(
    consul_server: ConsulServer, consul_url: str
) -> None:
    async with await open_store(consul_url) as store:
        lease = await store.grant(3)  # rounded up to Consul's minimum
        assert lease.ttl == 10
        await store.put("nodes/n1", b"up", lease=lease.id)
        session = str(uuid.UUID(int=lease.id))
        prefix = consul_url.rsplit("/", 1)[1]
        # what an operator sees with Consul's own tools (py-consul here)
        client = consul_server.client()
        _, info = client.session.info(session)
        assert (info["Behavior"], info["LockDelay"], info["TTL"]) == ("delete", 0, "10s")
        assert info["NodeChecks"] == []  # lives by its TTL, not with the agent's health
        _, entry = client.kv.get(f"{prefix}/nodes/n1")
        assert entry["Session"] == session
        kv = await store.get("nodes/n1")
        assert kv is not None
        assert kv.lease == lease.id
        await store.revoke(lease.id)
        assert await store.get("nodes/n1") is None
        with pytest.raises(LeaseNotFound):
            await store.keep_alive(lease.id)


@pytest.mark.consul
async def test_put_moves_a_key_between_leases_like_etcd(consul_url: str) -> None:
    big = os.urandom(500 * 1024)  # too large for a Consul transaction: the KV endpoint
    async with await open_store(consul_url) as store:
        first = await store.grant(30)
        second = await store.grant(30)
        for key, value in (("small", b"v"), ("big", big)):
            await store.put(key, value, lease=first.id)
            rev = await store.put(key, value, lease=second.id)  # another session held it
            kv = await store.get(key)
            assert kv is not None
            assert (kv.lease, kv.mod_revision, kv.value) == (second.id, rev, value)
            await store.revoke(first.id)
            assert await store.get(key) is not None  # no longer the first lease's key
            rev = await store.put(key, value)  # and without a lease: off the second one too
            kv = await store.get(key)
            assert kv is not None
            assert (kv.lease, kv.mod_revision) == (None, rev)
            first = await store.grant(30)
        await store.revoke(second.id)
        assert await store.get("small") is not None
        assert await store.get("big") is not None


@pytest.mark.consul
async def test_transaction_limits_and_dead_leases_are_reported(consul_url: str) -> None:
    async with await open_store(consul_url) as store:
        lease = await store.grant(10)
        await store.revoke(lease.id)
        with pytest.raises(LeaseNotFound):
            await store.txn([Compare("x", 0)], [Put("x", b"1", lease=lease.id)])
        with pytest.raises(InvalidArgument, match="at most 64 compares and operations"):
            await store.txn([], [Put(f"k{i}", b"") for i in range(65)])
        rev = await store.put("a", b"1")
        result = await store.txn([Compare("a", rev), Compare("b", 0)], [Delete("a")])
        assert result.succeeded
        assert result.revision > rev  # a delete-only transaction still reports a revision
        failed = await store.txn([Compare("a", rev)], [Put("a", b"2")])
        assert not failed.succeeded
        assert failed.found == {"a": 0}


@pytest.mark.consul
async def test_watch_without_a_listing_starts_now_or_says_compacted(consul_url: str) -> None:
    async with await open_store(consul_url) as writer:
        first = await writer.put("x/1", b"1")
        # a store that never listed has no baseline to replay from...
        fresh = await open_store(consul_url)
        assert isinstance(fresh, ConsulStore)
        try:
            with pytest.raises(RevisionCompacted) as err:
                await anext(aiter(fresh.watch("x/", start_revision=first)))
            assert err.value.oldest == first + 1
            # ...but nothing changed since `first`, so watching from first + 1 works
            blocking = asyncio.Event()
            snapshot = fresh._snapshot

            async def observed(prefix: str, **options: Any) -> Any:
                if options.get("index") is not None:
                    blocking.set()  # the watch has its baseline and waits for changes
                return await snapshot(prefix, **options)

            fresh._snapshot = observed  # type: ignore[method-assign]
            async with following(fresh, "x/", first + 1) as events:
                await asyncio.wait_for(blocking.wait(), 5)
                await writer.put("x/2", b"2")
                await until(lambda: len(events) >= 1, within=5, what="x/2 arrives")
                assert seen(events) == [(EventType.PUT, "x/2", b"2")]
            # from the beginning: every current key, as puts
            async with following(fresh, "x/", 0) as events:
                await until(lambda: len(events) >= 2, within=5, what="current keys arrive")
                assert seen(events) == [(EventType.PUT, "x/1", b"1"), (EventType.PUT, "x/2", b"2")]
        finally:
            await fresh.close()


@pytest.mark.consul
async def test_closing_the_store_ends_its_watches_at_once(consul_url: str) -> None:
    store = await open_store(consul_url)
    watch = store.watch("quiet/", start_revision=0)
    pending = asyncio.ensure_future(anext(aiter(watch)))  # waits in a blocking query
    await asyncio.sleep(0.2)
    assert not pending.done()
    started = time.monotonic()
    await store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await asyncio.wait_for(pending, 5)
    assert time.monotonic() - started < 1.0


@pytest.mark.consul
async def test_unrenewed_lease_ends_between_ttl_and_twice_ttl(consul_url: str) -> None:
    async with await open_store(consul_url) as store:
        kept = await store.grant(10)
        await store.put("kept", b"k", lease=kept.id)
        dropped = await store.grant(10)
        granted = time.monotonic()
        await store.put("dropped", b"d", lease=dropped.id)
        deadline = granted + 2 * dropped.ttl + 3
        renewed = 0.0
        while await store.get("dropped") is not None:
            assert time.monotonic() < deadline, "the unrenewed lease outlived 2 x TTL"
            if time.monotonic() - renewed > 2:
                await store.keep_alive(kept.id)
                renewed = time.monotonic()
            await asyncio.sleep(0.1)
        ended = time.monotonic() - granted
        print(f"\nConsul session, TTL {dropped.ttl:g} s, never renewed: gone after {ended:.1f} s")
        assert dropped.ttl - 0.5 <= ended <= 2 * dropped.ttl + 2
        assert await store.get("kept") is not None  # the renewed one is untouched
        with pytest.raises(LeaseNotFound):
            await store.keep_alive(dropped.id)


# --- a server of the test's own --------------------------------------------------------
@pytest.mark.consul
async def test_watch_resumes_after_a_consul_restart_without_gaps_or_repeats(
    consul_durable_server: ConsulServer,
) -> None:
    url = consul_durable_server.url()
    async with await open_store(url) as store, await open_store(url) as writer:
        await writer.put("w/before", b"0")
        await writer.put("w/doomed", b"0")
        listing = await store.list("w/")
        async with following(store, "w/", listing.revision + 1) as events:
            await writer.put("w/a", b"1")
            await until(lambda: len(events) == 1, within=5, what="w/a arrives")
            started = time.monotonic()
            await asyncio.to_thread(consul_durable_server.restart)
            # written as soon as Consul answers, most likely before the watch reconnects
            await eventually(lambda: writer.put("w/b", b"2"), within=30)
            print(
                f"\nConsul restarted and took writes again after {time.monotonic() - started:.1f} s"
            )
            await until(lambda: len(events) == 2, within=10, what="w/b arrives")
            await writer.delete("w/doomed")
            await until(lambda: len(events) == 3, within=10, what="the delete arrives")
            await writer.put("w/c", b"3")
            await until(lambda: len(events) == 4, within=10, what="w/c arrives")
            await asyncio.sleep(0.5)  # and nothing more (no replays)
        assert seen(events) == [
            (EventType.PUT, "w/a", b"1"),
            (EventType.PUT, "w/b", b"2"),
            (EventType.DELETE, "w/doomed", None),
            (EventType.PUT, "w/c", b"3"),
        ]
        revisions = [e.revision for e in events]
        assert revisions == sorted(revisions)
        kept = await store.get("w/before")
        assert kept is not None  # the data dir kept it
        assert kept.value == b"0"


@pytest.mark.consul
async def test_store_down_every_verb_raises_quickly_then_recovers_by_itself(
    consul_durable_server: ConsulServer,
) -> None:
    url = consul_durable_server.url() + "?timeout=0.5"
    async with await open_store(url) as store:
        lease = await store.grant(60)
        rev = await store.put("k", b"v", lease=lease.id)
        start = (await store.list("w/")).revision + 1
        verbs: dict[str, Callable[[], Awaitable[Any]]] = {
            "get": lambda: store.get("k"),
            "list": lambda: store.list(""),
            "put": lambda: store.put("k2", b"v"),
            "delete": lambda: store.delete("k2"),
            "txn": lambda: store.txn([Compare("k", rev)], [Put("k", b"w")]),
            "grant": lambda: store.grant(10),
            "keep_alive": lambda: store.keep_alive(lease.id),
            "revoke": lambda: store.revoke(10**30),
        }
        process = consul_durable_server.process.proc
        assert process is not None
        async with following(store, "w/", start) as events:
            # frozen (SIGSTOP): connections open but nothing answers; then gone entirely.
            # (Requests a frozen Consul had read may still apply when it thaws: the txn
            # above may land. That is what "outcome unknown" means; nothing here relies
            # on either outcome.)
            for state in ("frozen", "stopped"):
                if state == "frozen":
                    os.kill(process.pid, signal.SIGSTOP)
                else:
                    os.kill(process.pid, signal.SIGCONT)
                    await asyncio.to_thread(consul_durable_server.stop)
                for name, call in verbs.items():
                    started = time.monotonic()
                    with pytest.raises(StoreUnavailable) as err:
                        await call()
                    took = time.monotonic() - started
                    assert took < 2.0, f"{name} on a {state} Consul took {took:.1f} s"
                    assert consul_durable_server.endpoint in str(err.value)
                    assert "\n" not in str(err.value)
            await asyncio.to_thread(consul_durable_server.start)
            # the same store object works again, with the data and the session kept
            kv = await eventually(lambda: store.get("k"), within=30)
            assert kv is not None
            assert kv.lease == lease.id
            await store.keep_alive(lease.id)
            await store.put("w/after", b"1")
            await until(lambda: bool(events), within=30, what="the watch recovers")
            await asyncio.sleep(0.3)
            assert seen(events) == [(EventType.PUT, "w/after", b"1")]


# --- three servers ---------------------------------------------------------------------
@pytest.mark.consul
async def test_cluster_keeps_working_without_a_follower_then_without_the_leader(
    consul_cluster: ConsulCluster,
) -> None:
    leader = consul_cluster.leader_index()
    follower, other = (i for i in range(3) if i != leader)
    # the store starts on the follower, fails over to the leader, then to the last one
    url = consul_cluster.url(order=[follower, leader, other])
    async with await open_store(url) as store:
        lease = await store.grant(60)
        await store.put("nodes/n1", b"up", lease=lease.id)
        start = (await store.list("")).revision + 1
        async with following(store, "", start) as events:

            async def arrives(*expected: tuple[EventType, str, bytes | None]) -> None:
                def latest() -> bool:
                    return seen(events)[-len(expected) :] == list(expected)

                await until(latest, within=10, what=f"the watch delivers {expected}")

            await store.put("k/0", b"0")
            await arrives((EventType.PUT, "k/0", b"0"))
            for step in (1, 2):
                victim = follower if step == 1 else consul_cluster.leader_index()
                role = "follower" if step == 1 else "leader"
                await asyncio.to_thread(consul_cluster.stop_member, victim)
                stopped = time.monotonic()
                # losing a follower is invisible (not one failed call); the leader costs
                # one election
                value = str(step).encode()
                within = 20.0 if role == "leader" else 0.0
                await eventually(lambda: store.put(f"k/{step}", value), within=within)  # noqa: B023
                took = time.monotonic() - stopped
                print(f"\nConsul {role} (member {victim}) stopped: writes again after {took:.1f} s")
                kv = await store.get(f"k/{step}")
                assert kv is not None
                assert kv.value == value
                await arrives((EventType.PUT, f"k/{step}", value))
                await store.keep_alive(lease.id)  # the session outlives its agent's server
                node = await store.get("nodes/n1")
                assert node is not None
                assert node.lease == lease.id
                contender = await store.grant(10)
                won = await store.txn(
                    [Compare(f"leader-{step}", 0)],
                    [Put(f"leader-{step}", b"me", lease=contender.id)],
                )
                assert won.succeeded
                await arrives((EventType.PUT, f"leader-{step}", b"me"))
                await store.revoke(contender.id)
                await arrives((EventType.DELETE, f"leader-{step}", None))
                await asyncio.to_thread(consul_cluster.start_member, victim)
            await asyncio.sleep(0.5)  # nothing more arrives: no replays after failovers
        keys = [(e.type, e.key) for e in events]
        assert len(keys) == len(set(keys)) == 7
