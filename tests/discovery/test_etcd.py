"""What users of the etcd backend rely on beyond the shared contract, on real etcd servers.

- A watch outlives an etcd restart (clean or a crash) and picks up exactly where it
  stopped: no lost change, no change twice.
- With a three-member cluster named in the URL, losing one member (the first listed,
  or the leader) does not stop reads, writes, leases or watches.
- A store that is down or hung fails every call fast with `StoreUnavailable` and a
  one-line message, and the same store object works again when etcd returns.
- A watch asking for compacted history gets `RevisionCompacted`.
- URL options (TLS files, credentials, timeout) are checked when the store is opened;
  TLS with a client certificate works, and so does user/password authentication,
  including after the server lets the token expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aetcd
import pytest
from aetcd import rpc

from discovery import (
    Compare,
    Event,
    EventType,
    InvalidStoreURL,
    Put,
    RevisionCompacted,
    Store,
    StoreUnavailable,
    open_store,
)
from discovery.backends.etcd import EtcdStore, parse_etcd_url
from tests.harness.etcd import EtcdCluster, EtcdServer, unique_prefix
from tests.harness.process import require_binary

pytestmark = pytest.mark.etcd


# --- helpers ---------------------------------------------------------------------------
class Watcher:
    """Runs `store.watch` in a task and records what it delivers (or how it ended)."""

    def __init__(self, store: Store, prefix: str, *, start_revision: int) -> None:
        self.events: list[Event] = []
        self.error: BaseException | None = None
        self._task = asyncio.create_task(self._run(store, prefix, start_revision))

    async def _run(self, store: Store, prefix: str, start_revision: int) -> None:
        try:
            async for event in store.watch(prefix, start_revision=start_revision):
                self.events.append(event)
        except Exception as exc:
            self.error = exc

    def keys(self) -> list[str]:
        return [e.key for e in self.events]

    async def wait_for(self, count: int, *, within: float = 10.0) -> None:
        await eventually(
            lambda: len(self.events) >= count or self.error is not None,
            within=within,
            what=f"{count} watch events (got {len(self.events)})",
        )
        assert self.error is None, f"the watch failed: {self.error!r}"

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def eventually(check: Callable[[], bool], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out after {within} s waiting for {what}"
        await asyncio.sleep(0.02)


async def until_ok(call: Callable[[], Awaitable[Any]], *, within: float) -> tuple[Any, int]:
    """Retry `call` while it raises `StoreUnavailable`: (its result, how many failed)."""
    deadline = time.monotonic() + within
    failures = 0
    while True:
        try:
            return await call(), failures
        except StoreUnavailable:
            failures += 1
            assert time.monotonic() < deadline, f"still unavailable after {within} s"
            await asyncio.sleep(0.05)


def assert_order_without_repeats(events: list[Event]) -> None:
    revisions = [e.revision for e in events]
    assert revisions == sorted(revisions)
    changes = {(e.revision, e.key) for e in events}  # a transaction shares one revision
    assert len(changes) == len(events), "an event was delivered twice"


def assert_one_clear_line(exc: BaseException, *, names: list[str]) -> None:
    """A short, one-line message naming the endpoints, with no gRPC inside or behind it."""
    text = str(exc)
    assert "\n" not in text
    assert len(text) < 300, text
    for name in names:
        assert name in text, text
    for word in ("grpc", "StatusCode", "AioRpcError", "aetcd", "Traceback"):
        assert word not in text, text
    assert exc.__cause__ is None
    assert exc.__suppress_context__


# --- a watch across a restart ----------------------------------------------------------
@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_watch_resumes_after_a_restart_without_gaps_or_repeats(
    etcd_private_server: EtcdServer, how: str
) -> None:
    server = etcd_private_server
    url = server.url()
    async with await open_store(url) as store, await open_store(url) as writer:
        start = (await store.list("w/")).revision + 1
        watcher = Watcher(store, "w/", start_revision=start)
        before = [f"w/before-{i:02d}" for i in range(20)]
        for key in before:
            await writer.put(key, b"1")
        await writer.txn([], [Put("w/txn-a", b"1"), Put("w/txn-b", b"1")])  # one revision
        await watcher.wait_for(len(before) + 2)

        await asyncio.to_thread(server.stop if how == "stop" else server.kill)
        await asyncio.to_thread(server.start)
        # Written while the watch is still reconnecting: it must catch up on these too.
        after = [f"w/after-{i:02d}" for i in range(20)]
        for key in after:
            await writer.put(key, b"2")
        await writer.delete("w/before-00")

        expected = [*before, "w/txn-a", "w/txn-b", *after, "w/before-00"]
        await watcher.wait_for(len(expected))
        await asyncio.sleep(0.2)  # anything delivered twice would arrive by now
        await watcher.stop()
    assert watcher.keys() == expected
    assert watcher.events[-1].type is EventType.DELETE
    txn_a, txn_b = watcher.events[20], watcher.events[21]
    assert txn_a.revision == txn_b.revision
    assert_order_without_repeats(watcher.events)


# --- a three-member cluster losing one member ------------------------------------------
async def test_cluster_serves_on_with_the_first_listed_member_stopped(
    etcd_cluster: EtcdCluster,
) -> None:
    leader = etcd_cluster.leader_index()
    follower = next(i for i in range(etcd_cluster.size) if i != leader)
    others = [i for i in range(etcd_cluster.size) if i != follower]
    url = etcd_cluster.url(order=[follower, *others])  # the member to lose comes first
    async with await open_store(url) as store:
        await store.put("k/before", b"1")  # now connected to the first endpoint
        lease = await store.grant(10)
        await store.put("k/leased", b"1", lease=lease.id)
        start = (await store.list("k/")).revision + 1
        watcher = Watcher(store, "k/", start_revision=start)

        await asyncio.to_thread(etcd_cluster.stop_member, follower)

        # No call fails: each goes on to the next endpoint by itself.
        rev = await store.put("k/after", b"2")
        kv = await store.get("k/after")
        assert kv is not None
        assert kv.mod_revision == rev
        assert [kv.key for kv in (await store.list("k/")).items] == [
            "k/after",
            "k/before",
            "k/leased",
        ]
        result = await store.txn([Compare("k/after", rev)], [Put("k/txn", b"3")])
        assert result.succeeded
        await store.keep_alive(lease.id)
        assert (await store.grant(10)).ttl >= 10
        await watcher.wait_for(2)
        assert watcher.keys() == ["k/after", "k/txn"]
        await watcher.stop()

    # A store opened now, whose first endpoint has never answered, works at once too.
    async with await open_store(url) as fresh:
        kv = await fresh.get("k/txn")
        assert kv is not None
        assert kv.value == b"3"


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_cluster_serves_on_after_losing_its_leader(
    etcd_cluster: EtcdCluster, how: str
) -> None:
    leader = etcd_cluster.leader_index()
    others = [i for i in range(etcd_cluster.size) if i != leader]
    async with await open_store(etcd_cluster.url(order=[leader, *others])) as store:
        lease = await store.grant(10)
        await store.put("k/leased", b"1", lease=lease.id)
        start = (await store.list("k/")).revision + 1
        watcher = Watcher(store, "k/", start_revision=start)

        lose = etcd_cluster.stop_member if how == "stop" else etcd_cluster.kill_member
        await asyncio.to_thread(lose, leader)

        # While the two others elect a leader a call may fail, with StoreUnavailable only.
        confirmed: list[str] = []
        for i in range(10):
            key = f"k/{i}"
            await until_ok(functools.partial(store.put, key, b"x"), within=15)
            confirmed.append(key)
        await until_ok(lambda: store.keep_alive(lease.id), within=15)
        kv = await store.get("k/leased")
        assert kv is not None
        assert kv.lease == lease.id
        assert etcd_cluster.leader_index() != leader

        await eventually(
            lambda: set(confirmed) <= set(watcher.keys()), within=10, what="every put watched"
        )
        await watcher.stop()
    assert watcher.error is None
    assert_order_without_repeats(watcher.events)


# --- a store that is down or hung ------------------------------------------------------
def every_verb(store: Store, lease: int) -> dict[str, Callable[[], Awaitable[Any]]]:
    return {
        "get": lambda: store.get("k"),
        "list": lambda: store.list(""),
        "put": lambda: store.put("k", b"v"),
        "delete": lambda: store.delete("k"),
        "txn": lambda: store.txn([Compare("k", 0)], [Put("k", b"v")]),
        "grant": lambda: store.grant(5),
        "keep_alive": lambda: store.keep_alive(lease),
        "keep_alive_many": lambda: store.keep_alive_many([lease]),
        "revoke": lambda: store.revoke(lease),
    }


async def test_store_down_fails_every_call_fast_and_recovers_by_itself(
    etcd_private_server: EtcdServer,
) -> None:
    server = etcd_private_server
    async with await open_store(server.url()) as store:
        lease = await store.grant(60)
        before = await store.put("k", b"before", lease=lease.id)
        await asyncio.to_thread(server.stop)

        for verb, call in every_verb(store, lease.id).items():
            began = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                await call()
            assert time.monotonic() - began < 1.0, f"{verb} took too long to fail"
            assert_one_clear_line(caught.value, names=[server.endpoint])

        # A watch opened during the outage waits for the store rather than failing.
        watcher = Watcher(store, "", start_revision=before + 1)
        await asyncio.sleep(0.3)
        assert watcher.error is None

        await asyncio.to_thread(server.start)
        # The same object, no reopening: the first call after the restart succeeds.
        kv = await store.get("k")
        assert kv is not None
        assert kv.value == b"before"
        await store.keep_alive(lease.id)
        await store.put("k", b"after", lease=lease.id)
        await watcher.wait_for(1)
        assert [(e.key, e.value) for e in watcher.events] == [("k", b"after")]
        await watcher.stop()


async def test_hung_store_fails_calls_within_the_timeout(
    etcd_private_server: EtcdServer,
) -> None:
    server = etcd_private_server
    async with await open_store(server.url() + "?timeout=0.5") as store:
        lease = await store.grant(60)
        server.pause()  # SIGSTOP: connections stay open, nothing answers
        try:
            for verb, call in every_verb(store, lease.id).items():
                began = time.monotonic()
                with pytest.raises(StoreUnavailable) as caught:
                    await call()
                took = time.monotonic() - began
                assert took < 1.0, f"{verb} failed only after {took:.2f} s"
                assert_one_clear_line(caught.value, names=[server.endpoint])
                if verb in ("put", "delete", "txn"):  # a write may have landed: say so
                    assert "may or may not have been applied" in str(caught.value)
        finally:
            server.resume()
        rev, _ = await until_ok(lambda: store.put("k", b"v"), within=5)
        kv = await store.get("k")
        assert kv is not None
        assert kv.mod_revision == rev


# --- compacted history -----------------------------------------------------------------
async def test_watch_from_compacted_history_raises_revision_compacted(
    etcd_private_server: EtcdServer,
) -> None:
    server = etcd_private_server
    async with await open_store(server.url()) as store:
        first = await store.put("c/a", b"1")
        for i in range(5):
            await store.put("c/a", str(i).encode())
        compacted_at = (await store.list("c/")).revision
        client = aetcd.Client(host="127.0.0.1", port=server.client_port)
        try:
            await client.compact(compacted_at, physical=True)
        finally:
            await client.close()

        with pytest.raises(RevisionCompacted) as caught:
            async for _ in store.watch("c/", start_revision=first):
                pass
        assert caught.value.requested == first
        assert caught.value.oldest == compacted_at
        # What the message advises works: list again, then watch from the listing.
        listing = await store.list("c/")
        watcher = Watcher(store, "c/", start_revision=listing.revision + 1)
        await store.put("c/b", b"new")
        await watcher.wait_for(1)
        assert watcher.keys() == ["c/b"]
        await watcher.stop()


# --- URLs and credentials --------------------------------------------------------------
PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, Path]:
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_bytes(PEM)
    return files


async def test_url_with_credentials_tls_and_endpoints_opens_without_a_server(
    pem_files: dict[str, Path],
) -> None:
    query = "&".join(f"{name}={path}" for name, path in pem_files.items())
    url = f"etcd://shoal:s3cret@10.0.0.1,10.0.0.2:2380,[::1]:2381/clusters/prod?{query}&timeout=2"
    parsed, settings = parse_etcd_url(url)
    assert [str(e) for e in settings.endpoints] == ["10.0.0.1:2379", "10.0.0.2:2380", "::1:2381"]
    assert (settings.username, settings.password) == ("shoal", "s3cret")
    assert settings.credentials is not None
    assert settings.timeout == 2.0
    assert parsed.prefix == "clusters/prod"
    store = await open_store(url)  # nothing listens there: opening never connects
    try:
        assert isinstance(store, EtcdStore)
        assert "s3cret" not in repr(store)
    finally:
        await store.close()
    assert parse_etcd_url("etcd://h/p")[1].credentials is None


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ("ca={missing}", "ca file '{missing}' cannot be read"),
        ("cert={cert}", "needs both cert= and key="),
        ("key={key}", "needs both cert= and key="),
        ("cert={cert}&key={missing}", "key file '{missing}' cannot be read"),
        ("ca={not_pem}", "is not PEM"),
        ("ca=", "ca= names no file"),
        ("timeout=soon", "not a positive number of seconds"),
        ("timeout=0", "not a positive number of seconds"),
        ("tls=on", "unknown option 'tls'"),
    ],
)
async def test_bad_url_options_are_refused_when_opening(
    pem_files: dict[str, Path], tmp_path: Path, query: str, complaint: str
) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    names = {
        "missing": str(tmp_path / "nowhere.pem"),
        "cert": str(pem_files["cert"]),
        "key": str(pem_files["key"]),
        "not_pem": str(not_pem),
    }
    url = f"etcd://user:s3cret@127.0.0.1:2379/shoal?{query.format(**names)}"
    with pytest.raises(InvalidStoreURL) as caught:
        await open_store(url)
    text = str(caught.value)
    assert complaint.format(**names) in text
    assert "\n" not in text
    assert "s3cret" not in text


@pytest.mark.parametrize(
    "url",
    ["etcd://user@127.0.0.1/shoal", "etcd://:pw@127.0.0.1/shoal", "etcd://127.0.0.1:2379/"],
)
async def test_incomplete_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidStoreURL):
        await open_store(url)


@pytest.fixture
def etcd_with_auth(tmp_path: Path) -> Iterator[EtcdServer]:
    """A member whose auth tokens expire after one idle second."""
    binary = require_binary("etcd", why="the etcd backend's auth test needs a real etcd")
    server = EtcdServer(
        base_dir=tmp_path / "etcd", binary=binary, extra_args=["--auth-token-ttl=1"]
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def enable_auth(server: EtcdServer, *, password: str) -> None:
    async with aetcd.Client(host="127.0.0.1", port=server.client_port) as client:
        auth = rpc.AuthStub(client.channel)
        await auth.UserAdd(rpc.AuthUserAddRequest(name="root", password=password))
        await auth.RoleAdd(rpc.AuthRoleAddRequest(name="root"))
        await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="root", role="root"))
        await auth.AuthEnable(rpc.AuthEnableRequest())


async def test_user_and_password_authenticate_and_survive_token_expiry(
    etcd_with_auth: EtcdServer,
) -> None:
    server = etcd_with_auth
    await enable_auth(server, password="s3cret")
    prefix = unique_prefix()
    async with await open_store(f"etcd://root:s3cret@{server.endpoint}/{prefix}") as store:
        rev = await store.put("k", b"v")
        watcher = Watcher(store, "", start_revision=rev + 1)
        await asyncio.sleep(2.5)  # the token expires: the next call authenticates again
        kv = await store.get("k")
        assert kv is not None
        assert kv.value == b"v"
        await store.put("k", b"w")
        await watcher.wait_for(1)
        await watcher.stop()

    async with await open_store(f"etcd://root:wrong@{server.endpoint}/{prefix}") as intruder:
        with pytest.raises(InvalidStoreURL) as caught:
            await intruder.get("k")
    assert "refused user 'root'" in str(caught.value)
    assert "wrong" not in str(caught.value)
    assert_one_clear_line(caught.value, names=[server.endpoint])

    async with await open_store(f"etcd://{server.endpoint}/{prefix}") as anonymous:
        with pytest.raises(InvalidStoreURL) as caught:
            await anonymous.get("k")
    assert "requires a user and password" in str(caught.value)


async def test_tls_with_a_client_certificate(etcd_tls_server: EtcdServer) -> None:
    async with await open_store(etcd_tls_server.url()) as store:
        start = (await store.list("")).revision + 1
        watcher = Watcher(store, "", start_revision=start)
        rev = await store.put("k", b"over tls")
        kv = await store.get("k")
        assert kv is not None
        assert (kv.value, kv.mod_revision) == (b"over tls", rev)
        await watcher.wait_for(1)
        await watcher.stop()
    # Without trusting the server's CA the handshake fails: a clear error, not a hang.
    tls = etcd_tls_server.tls
    assert tls is not None
    base = etcd_tls_server.url().split("?", 1)[0]
    untrusting = f"{base}?cert={tls.client_cert}&key={tls.client_key}&timeout=2"
    async with await open_store(untrusting) as store:
        with pytest.raises(StoreUnavailable) as caught:
            await store.get("k")
    assert "certificate cannot be verified" in str(caught.value)
    assert_one_clear_line(caught.value, names=[etcd_tls_server.endpoint])


# --- many leases -------------------------------------------------------------------------
async def test_more_leases_than_one_renewal_stream_carries_are_all_renewed(
    etcd_url: str,
) -> None:
    async with await open_store(etcd_url) as store:
        granted = await asyncio.gather(*(store.grant(3) for _ in range(1200)))
        leases = [lease.id for lease in granted]
        assert await store.keep_alive_many(leases) == set()
        await store.put("fleet/first", b"x", lease=leases[0])
        await store.put("fleet/last", b"x", lease=leases[-1])
        await store.revoke(leases[1100])  # in the second stream's part
        renew_until = time.monotonic() + 6.0  # two TTLs
        while time.monotonic() < renew_until:
            assert await store.keep_alive_many(leases) == {leases[1100]}
            await asyncio.sleep(0.5)
        assert await store.get("fleet/first") is not None
        assert await store.get("fleet/last") is not None
