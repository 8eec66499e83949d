"""The file store beyond the shared contract: what one host with many processes needs.

Several OS processes write one directory at once and nothing is lost or doubled; a
process killed with SIGKILL mid-transaction never leaves half a transaction or a
damaged database; a killed process's lease still ends and its keys go; a watcher too
far behind is told to resync; and a bad directory is reported as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sqlite3
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from discovery import (
    Compare,
    Delete,
    Event,
    EventType,
    InvalidStoreURL,
    LeaseNotFound,
    Op,
    Put,
    RevisionCompacted,
    Store,
    StoreUnavailable,
    open_store,
)
from discovery.backends.file import DATABASE_NAME, FileStore

ROOT = Path(__file__).resolve().parents[2]

# Each child opens the store named by argv[1] and works on it until done (or killed).
CAS_WORKER = """
import asyncio, json, sys
from discovery import Compare, Put, open_store

async def main(url: str, name: str, rounds: int) -> None:
    cas_ok, won = 0, []
    async with await open_store(url) as store:
        for i in range(rounds):
            once = await store.txn([Compare(f"once/{i}", 0)], [Put(f"once/{i}", name.encode())])
            if once.succeeded:
                won.append(i)
            kv = await store.get("counter")
            count = int(kv.value) if kv else 0
            cas = await store.txn(
                [Compare("counter", kv.mod_revision if kv else 0)],
                [Put("counter", str(count + 1).encode()), Put(f"last/{name}", str(i).encode())],
            )
            cas_ok += cas.succeeded
    print(json.dumps({"cas_ok": cas_ok, "won": won}))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""

TOKEN_MOVER = """
import asyncio, os, sys
from discovery import Compare, Delete, Put, open_store

async def main(url: str) -> None:
    async with await open_store(url) as store:
        while True:
            ledger = await store.get("ledger")
            moves = int(ledger.value)
            src, dst = ("token/a", "token/b") if moves % 2 == 0 else ("token/b", "token/a")
            held = await store.get(src)
            # 16 KiB that name the move: several pages per commit, all or none
            pad = f"{moves + 1}:".encode() + os.urandom(16 * 1024)
            await store.txn(
                [Compare("ledger", ledger.mod_revision), Compare(src, held.mod_revision),
                 Compare(dst, 0)],
                [Delete(src), Put(dst, b"token"), Put("ledger", str(moves + 1).encode()),
                 Put("pad", pad)],
            )

asyncio.run(main(sys.argv[1]))
"""

DISK_FILLER = """
import asyncio, json, resource, signal, sys
from discovery import StoreUnavailable, open_store

async def main(url: str) -> None:
    async with await open_store(url) as store:
        await store.put("before", b"kept")
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a dead process
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))
        written = 0
        try:
            while True:
                await store.put(f"big/{written}", b"y" * 400_000)
                written += 1
        except StoreUnavailable as exc:
            print(json.dumps({"written": written, "error": str(exc)}))

asyncio.run(main(sys.argv[1]))
"""

LEASE_HOLDER = """
import asyncio, sys
from discovery import open_store

async def main(url: str) -> None:
    store = await open_store(url)
    lease = await store.grant(1.0)
    await store.put("nodes/doomed", b"alive", lease=lease.id)
    print(lease.id, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1]))
"""


async def spawn(script: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        *args,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process) -> str:
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode(errors="replace")
    return stdout.decode()


async def wait_for(condition: Callable[[], bool], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {within} s waiting for {what}"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def watching(store: Store, prefix: str, start: int) -> AsyncIterator[list[Event]]:
    """Collect every event under `prefix` from `start` in the background."""
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
            await task


async def take(store: Store, prefix: str, start: int, *, count: int) -> list[Event]:
    events: list[Event] = []
    async with asyncio.timeout(10):
        async for event in store.watch(prefix, start_revision=start):
            events.append(event)
            if len(events) == count:
                return events
    raise AssertionError("the watch ended")


def integrity(directory: Path) -> str:
    with contextlib.closing(sqlite3.connect(directory / DATABASE_NAME)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


@pytest.mark.slow
async def test_four_processes_lose_and_double_nothing(file_url: str) -> None:
    workers, rounds = 4, 200
    async with await open_store(file_url) as store, watching(store, "", 1) as events:
        procs = [await spawn(CAS_WORKER, file_url, f"w{n}", str(rounds)) for n in range(workers)]
        async with asyncio.timeout(60):
            outputs = await asyncio.gather(*(finish(proc) for proc in procs))
        reports = [json.loads(out) for out in outputs]
        final = await store.list("")
        await wait_for(
            lambda: bool(events) and events[-1].revision == final.revision,
            within=10,
            what="the watcher to catch up",
        )

    # every create-if-absent had exactly one winner, and the key holds its name
    winners = {i: f"w{n}" for n, report in enumerate(reports) for i in report["won"]}
    assert sorted(winners) == list(range(rounds))
    assert sum(len(report["won"]) for report in reports) == rounds
    values = {kv.key: kv.value for kv in final.items}
    assert all(values[f"once/{i}"] == name.encode() for i, name in winners.items())
    # the compare-and-swap counter counts exactly the successful swaps
    swaps = sum(report["cas_ok"] for report in reports)
    assert swaps > 0
    assert int(values["counter"]) == swaps
    # one revision per successful transaction: unique, gapless, in order
    revisions = [event.revision for event in events]
    assert revisions == sorted(revisions)
    assert sorted(set(revisions)) == list(range(1, final.revision + 1))
    assert final.revision == rounds + swaps
    counts = [int(e.value or b"") for e in events if e.key == "counter"]
    assert counts == list(range(1, swaps + 1))
    # replaying what the watcher saw rebuilds the store exactly
    replayed: dict[str, tuple[bytes, int]] = {}
    for event in events:
        assert event.type is EventType.PUT
        assert event.value is not None
        replayed[event.key] = (event.value, event.revision)
    assert replayed == {kv.key: (kv.value, kv.mod_revision) for kv in final.items}


@pytest.mark.slow
async def test_sigkill_mid_transaction_never_tears_a_write(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    url = f"file://{directory}?history=50"  # a small history: the pads are 16 KiB each
    async with await open_store(url) as store:
        await store.put("token/a", b"token")
        await store.put("ledger", b"0")
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    moves = 0
    for kill in range(10):
        proc = await spawn(TOKEN_MOVER, url)
        async with await open_store(url) as store:
            before = moves

            async def ledger(store: Store = store) -> int:
                kv = await store.get("ledger")
                assert kv is not None
                return int(kv.value)

            deadline = time.monotonic() + 20
            while await ledger() == before:
                assert proc.returncode is None, (await proc.communicate())[1].decode()
                assert time.monotonic() < deadline, "the child made no progress"
                await asyncio.sleep(0.02)
            await asyncio.sleep(rng.uniform(0, 0.15))
        proc.kill()
        await proc.wait()

        context = f"after kill {kill + 1} (seed {seed})"
        assert integrity(directory) == "ok", context
        async with await open_store(url) as store:
            moves = await ledger(store)
            on_a = await store.get("token/a") is not None
            on_b = await store.get("token/b") is not None
            pad = await store.get("pad")
        assert moves > before, context
        assert (on_a, on_b) == (moves % 2 == 0, moves % 2 == 1), context
        assert pad is not None, context
        assert pad.value.startswith(f"{moves}:".encode()), context


async def test_lease_of_a_killed_process_ends_and_watchers_see_it(file_url: str) -> None:
    async with await open_store(file_url) as store:
        start = (await store.list("")).revision + 1
        async with watching(store, "nodes/", start) as events:
            proc = await spawn(LEASE_HOLDER, file_url)
            assert proc.stdout is not None
            lease = int(await asyncio.wait_for(proc.stdout.readline(), 20))
            proc.kill()
            await proc.wait()
            killed = time.monotonic()
            # nobody writes from here on: the watcher's own polls end the lease
            await wait_for(
                lambda: any(e.type is EventType.DELETE for e in events),
                within=1.0 + store.lease_expiry_slack + 1.0,
                what="the killed process's key to be deleted",
            )
            gone_after = time.monotonic() - killed
        assert [(e.type, e.key) for e in events] == [
            (EventType.PUT, "nodes/doomed"),
            (EventType.DELETE, "nodes/doomed"),
        ]
        assert gone_after < 1.0 + store.lease_expiry_slack
        assert await store.get("nodes/doomed") is None
        with pytest.raises(LeaseNotFound):
            await store.keep_alive(lease)


async def test_watch_older_than_the_kept_history_is_compacted(tmp_path: Path) -> None:
    async with await open_store(f"file://{tmp_path}/store?history=10") as store:
        for i in range(30):
            await store.put(f"c/{i:02d}", b"x")
        with pytest.raises(RevisionCompacted) as info:
            async for _ in store.watch("c/", start_revision=1):
                pass
        assert (info.value.requested, info.value.oldest) == (1, 21)
        # the kept revisions are whole
        kept = await take(store, "c/", 21, count=10)
        assert [event.key for event in kept] == [f"c/{i}" for i in range(20, 30)]
        # a watcher that falls behind by more than the history is told on its next poll
        slow = store.watch("c/", start_revision=31)
        await store.put("c/30", b"x")
        assert (await anext(slow)).key == "c/30"
        for i in range(31, 45):
            await store.put(f"c/{i}", b"x")
        with pytest.raises(RevisionCompacted):
            await anext(slow)
        # and recovers the documented way: list, then watch from the listing
        listing = await store.list("c/")
        await store.put("c/45", b"x")
        resumed = await take(store, "c/", listing.revision + 1, count=1)
        assert [event.key for event in resumed] == ["c/45"]


async def test_directory_is_created_private_and_data_survives_reopen(tmp_path: Path) -> None:
    directory = tmp_path / "deep" / "cluster"
    url = f"file://{directory}"
    async with await open_store(url) as store:
        assert isinstance(store, FileStore)
        lease = await store.grant(30)
        first = await store.put("services/web", b"spec")
        await store.put("nodes/n1", b"up", lease=lease.id)
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        for name in (DATABASE_NAME, f"{DATABASE_NAME}-wal", f"{DATABASE_NAME}-shm"):
            assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    async with await open_store(url) as store:
        kv = await store.get("services/web")
        assert kv is not None
        assert (kv.value, kv.mod_revision) == (b"spec", first)
        assert await store.get("nodes/n1") is not None  # the lease outlives the process
        assert await store.put("services/web", b"spec2") > first + 1
        await store.revoke(lease.id)
        assert await store.get("nodes/n1") is None


async def test_many_processes_may_create_the_store_at_once(tmp_path: Path) -> None:
    for attempt in range(5):
        url = f"file://{tmp_path}/fresh-{attempt}"
        stores = await asyncio.gather(*(open_store(url) for _ in range(8)))
        try:
            # each store has its own connection and thread, like separate processes
            await asyncio.gather(*(s.put(f"k/{n}", b"x") for n, s in enumerate(stores)))
        finally:
            await asyncio.gather(*(s.close() for s in stores))
        async with await open_store(url) as store:
            listing = await store.list("k/")
        assert (len(listing.items), listing.revision) == (8, 8)


@pytest.mark.parametrize(
    ("make_url", "message"),
    [
        (lambda tmp: f"file://{tmp}/a-file", "is a file, not a directory"),
        (lambda tmp: f"file://{tmp}/a-file/below", "cannot create directory"),
        (lambda tmp: f"file://{tmp}/s?history=0", "history='0'"),
        (lambda tmp: f"file://{tmp}/s?lock_timeout=soon", "lock_timeout='soon'"),
        (lambda tmp: f"file://{tmp}/s?colour=blue", "unknown option 'colour'"),
        (lambda tmp: f"file://somehost{tmp}/s", "a file store is local"),
    ],
)
async def test_unusable_urls_are_refused_at_open(
    tmp_path: Path, make_url: Callable[[Path], str], message: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(InvalidStoreURL, match=message) as info:
        await open_store(make_url(tmp_path))
    assert "\n" not in str(info.value)


async def test_a_damaged_database_is_unavailable_without_a_sqlite_traceback(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "store"
    directory.mkdir()
    (directory / DATABASE_NAME).write_bytes(b"this is no SQLite database" * 200)
    async with await open_store(f"file://{directory}") as store:
        with pytest.raises(StoreUnavailable, match="unusable") as info:
            await store.put("k", b"v")
    assert "\n" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


async def test_a_full_disk_fails_the_write_cleanly(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    url = f"file://{directory}"
    report = json.loads(await finish(await spawn(DISK_FILLER, url)))
    assert "the disk refused a read or write" in report["error"]
    assert "\n" not in report["error"]
    assert integrity(directory) == "ok"
    async with await open_store(url) as store:
        listing = await store.list("")
    # everything acknowledged is there, the failed write is not
    assert [kv.key for kv in listing.items] == [
        "before",
        *sorted(f"big/{n}" for n in range(report["written"])),
    ]


async def test_writers_wait_for_the_lock_and_give_up_after_its_timeout(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    async with await open_store(f"file://{directory}?lock_timeout=0.3") as store:
        await store.put("k", b"0")
        start = (await store.list("")).revision + 1
        other = sqlite3.connect(directory / DATABASE_NAME, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process's long write
            with pytest.raises(StoreUnavailable, match="held the write lock"):
                await store.put("k", b"1")
            assert (await store.get("k") or pytest.fail("k vanished")).value == b"0"
            pending = asyncio.ensure_future(store.put("k", b"2"))
            await asyncio.sleep(0.1)
            other.execute("COMMIT")
            revision = await pending
        finally:
            other.close()
        async with watching(store, "", start) as events:
            await wait_for(lambda: bool(events), within=5, what="the put's event")
        assert [(e.key, e.value, e.revision) for e in events] == [("k", b"2", revision)]


async def test_renewing_many_leases_does_not_revive_one_whose_ttl_passed(file_url: str) -> None:
    """A hollow fleet renews a thousand leases in one transaction: a lease whose TTL ran
    out before the renewal (nobody had looked yet) still ends, with its key, and is
    named; the others are renewed, all of them together."""
    async with await open_store(file_url) as store:
        lapsed = await store.grant(0.5)
        await store.put("nodes/late", b"x", lease=lapsed.id)
        live = [(await store.grant(3.0)).id for _ in range(50)]
        for index, lease in enumerate(live):
            await store.put(f"nodes/live-{index}", b"x", lease=lease)
        await asyncio.sleep(0.5 + store.lease_expiry_slack)

        assert await store.keep_alive_many([*live, lapsed.id]) == {lapsed.id}
        assert await store.get("nodes/late") is None
        database = sqlite3.connect(Path(file_url.removeprefix("file://")) / DATABASE_NAME)
        try:
            expiries = {
                row[0]
                for row in database.execute(
                    f"SELECT expires_at FROM leases WHERE id IN ({','.join('?' * len(live))})",
                    live,
                )
            }
        finally:
            database.close()
        assert len(expiries) == 1  # one transaction: one clock reading for every renewal
        assert expiries.pop() > time.time() + 2.0


async def test_a_large_transaction_keeps_order_bytes_and_history_whatever_its_values(
    file_url: str,
) -> None:
    """Runs of puts are written in bulk (`file_bulk`); values that cannot travel as
    text (not UTF-8, or with a NUL), deletes and repeated keys are written in their
    place. What a reader and a watcher see is exactly the transaction, in order."""
    odd = [b"\xff\xfe binary", b"nul \x00 inside", "ünïcode ✓".encode()]
    ops: list[Op] = [Put(f"bulk/{i:03d}", f'{{"n":{i}}}'.encode()) for i in range(40)]
    ops[10] = Put("bulk/010", odd[0])
    ops[20] = Delete("bulk/005")
    ops[30] = Put("bulk/030", odd[1])
    ops += [Put("bulk/000", b"last wins"), Put("bulk/999", odd[2]), Put("bulk/n\x00l", b"k")]
    ops += [Put(f"bulk/{i:03d}", b"x" * i) for i in range(100, 120)]
    expected: dict[str, bytes] = {}
    for op in ops:
        if isinstance(op, Put):
            expected[op.key] = op.value
        else:
            expected.pop(op.key, None)
    async with await open_store(file_url) as store:
        await store.put("bulk/005", b"to be deleted")
        start = (await store.list("")).revision + 1
        compares = [Compare(f"bulk/{i:03d}", 0) for i in range(40) if i != 5]
        result = await store.txn(compares, ops)
        assert result.succeeded
        listing = await store.list("bulk/")
        assert {kv.key: kv.value for kv in listing.items} == expected
        assert {kv.mod_revision for kv in listing.items} == {result.revision}
        events = await take(store, "bulk/", start, count=len(ops))
        assert [(e.type, e.key, e.value) for e in events] == [
            (EventType.PUT, op.key, op.value)
            if isinstance(op, Put)
            else (EventType.DELETE, op.key, None)
            for op in ops
        ]
        stale = await store.txn([Compare("bulk/001", 0), *compares], [Put("bulk/x", b"")])
        assert not stale.succeeded
        assert stale.found["bulk/001"] == result.revision
        assert stale.found["bulk/003"] == result.revision
        nul_key = await store.txn([Compare("bulk/n\x00l", 0), *compares], [Put("bulk/y", b"")])
        assert nul_key.found["bulk/n\x00l"] == result.revision
