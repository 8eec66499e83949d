"""The `file://` backend: a cluster on one host, in one SQLite database in WAL mode.

`file:///var/lib/shoal/cluster` names a directory (created with mode 0700) that holds
`store.db`; the directory is the cluster, so the prefix is empty. A manager and several
agents on one machine open the same directory from their own processes.

Why SQLite in WAL mode rather than a locked append-only file: the issue asks for
multi-process safety and atomicity under kill -9, which is exactly what SQLite's journal
already provides and has long been tested for. A transaction that had not committed when
its process died is simply absent on the next open, never torn or half-applied. An
append-only log would need its own record framing, checksums, torn-tail recovery, an
index to answer gets and prefix lists without replaying everything, and compaction by
rewrite-and-rename; each of those is a place for a crash bug. WAL mode also lets readers
(gets, lists, the watchers' polls) run while a writer commits, and `BEGIN IMMEDIATE` on
every write makes writers in all processes queue on SQLite's one write lock.

Durability: with WAL, `synchronous=NORMAL` writes each commit to the WAL file before
COMMIT returns but does not fsync it. A killed process therefore loses nothing it
committed (the bytes are in the kernel's page cache); only a power cut or kernel crash
can lose the last few commits, and even then the database stays consistent.
`synchronous=FULL` would fsync every commit for milliseconds each, to guard against
power loss, which is not what this store promises.

Leases carry a wall-clock expiry (every process on the host shares the clock, so a
lease granted by a process that was since killed still ends; a step of the clock moves
every expiry with it). No process owns expiry: every write, and every read or watch
poll that finds an expired lease, ends it in a transaction that deletes its keys and
records their delete events. So an expired key is never read, and a watcher hears of
it within one poll even when nothing writes.

Watches poll the `changes` table (20 ms after activity, backing off to 100 ms when idle).
There is no portable cross-process wake-up for SQLite, and a poll of an idle store is
one indexed read. The history keeps the last `history` revisions (100,000 by default);
a watcher asking for older ones gets `RevisionCompacted`.

sqlite3 blocks, and a connection belongs to one thread, so each store has one worker
thread that owns its connection; calls queue to it in order. Not for network
filesystems: WAL needs shared memory between the processes, so one host only.

URL options: `history=N` (revisions of watch history kept, default 100000) and
`lock_timeout=S` (seconds a write waits for another process's, default 5).
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, Self, TypeVar

from discovery.backends.file_db import Database
from discovery.contract import (
    Compare,
    Event,
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
from discovery.errors import InvalidArgument, InvalidStoreURL, StoreUnavailable
from discovery.url import parse_file_url

P = ParamSpec("P")
T = TypeVar("T")

#: The database file inside the store's directory.
DATABASE_NAME = "store.db"
DEFAULT_HISTORY = 100_000
DEFAULT_LOCK_TIMEOUT = 5.0

_POLL_MIN = 0.02  # seconds between watch polls right after a change
_POLL_MAX = 0.1  # ... and when idle
_RETRY_MAX = 1.0  # longest wait before a watch retries an unavailable store
_WATCH_PAGE = 1000  # revisions read by one watch poll


@dataclass(frozen=True, slots=True)
class FileStoreConfig:
    """Where the store lives and how it behaves, from a `file://` URL."""

    directory: Path
    history: int = DEFAULT_HISTORY
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT

    @property
    def database(self) -> Path:
        return self.directory / DATABASE_NAME

    @classmethod
    def from_url(cls, url: str) -> FileStoreConfig:
        parsed = parse_file_url(url)
        if parsed.scheme != "file":
            raise InvalidStoreURL(f"{url!r} is not a file:// URL")
        unknown = sorted(set(parsed.options) - {"history", "lock_timeout"})
        if unknown:
            raise InvalidStoreURL(
                f"discovery URL {url!r}: unknown option {unknown[0]!r}; "
                "a file store takes history=N and lock_timeout=SECONDS"
            )
        history = parsed.option("history", str(DEFAULT_HISTORY)) or ""
        if not history.isdigit() or int(history) < 1:
            raise InvalidStoreURL(
                f"discovery URL {url!r}: history={history!r} must be a whole number >= 1"
            )
        timeout_text = parsed.option("lock_timeout", str(DEFAULT_LOCK_TIMEOUT)) or ""
        try:
            lock_timeout = float(timeout_text)
        except ValueError:
            lock_timeout = math.nan
        if not (math.isfinite(lock_timeout) and lock_timeout > 0):
            raise InvalidStoreURL(
                f"discovery URL {url!r}: lock_timeout={timeout_text!r} must be a positive "
                "number of seconds"
            )
        return cls(Path(parsed.path), history=int(history), lock_timeout=lock_timeout)


def prepare_directory(config: FileStoreConfig, url: str) -> None:
    """Create the store's directory (mode 0700) and database file (0600), or check them."""
    directory = config.directory
    if directory.exists() and not directory.is_dir():
        raise InvalidStoreURL(
            f"discovery URL {url!r}: {directory} is a file, not a directory; "
            "a file store names a directory to keep its database in"
        )
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidStoreURL(
            f"discovery URL {url!r}: cannot create directory {directory}: {exc.strerror or exc}"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InvalidStoreURL(
            f"discovery URL {url!r}: directory {directory} is not writable by this user"
        )
    if config.database.is_dir():
        raise InvalidStoreURL(
            f"discovery URL {url!r}: {config.database} is a directory, not a database"
        )
    # An empty file is an empty SQLite database. Creating it here makes it private
    # (0600) whatever the umask, and SQLite gives its -wal and -shm files the same mode.
    try:
        os.close(os.open(config.database, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise InvalidStoreURL(
            f"discovery URL {url!r}: cannot create {config.database}: {exc.strerror or exc}"
        ) from None


class FileStore(Store):
    """A cluster's keys in a SQLite database shared by the processes of one host."""

    scheme = "file"
    min_lease_ttl = 0.5
    #: SQLite has no limit of its own; this one bounds how long one transaction holds
    #: the write lock (65,536 items: about half a second), and lets a stack of thousands
    #: of services deploy in one. (The leader writes its plans in smaller pieces:
    #: `controlplane.reconciler.config.LEADER_TXN_ITEMS`.)
    max_txn_ops = 65536
    lease_expiry_slack = 1.0
    exact_history = True

    def __init__(self, config: FileStoreConfig) -> None:
        self.config = config
        self._db = Database(
            config.database, history=config.history, lock_timeout=config.lock_timeout
        )
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoal-file-store")
        self._closed = False

    @classmethod
    async def open(cls, url: str) -> Self:
        config = FileStoreConfig.from_url(url)
        await asyncio.to_thread(prepare_directory, config, url)
        return cls(config)

    async def _run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run one database call on this store's worker thread."""
        if self._closed:
            raise StoreUnavailable(f"file store {self.config.directory} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, functools.partial(fn, *args, **kwargs))

    # --- keys ------------------------------------------------------------------------
    async def get(self, key: str) -> KeyValue | None:
        check_key(key)
        return await self._run(self._db.get, key)

    async def list(self, prefix: str) -> Listing:
        return await self._run(self._db.list, prefix)

    async def put(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        result = await self.txn([], [Put(key, value, lease)])
        return result.revision

    async def delete(self, key: str) -> bool:
        check_key(key)
        return await self._run(self._db.delete, key)

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        check_txn_size(self, compares, ops)
        for op in ops:
            check_key(op.key)
            if isinstance(op, Put):
                check_value(op.value)
        return await self._run(self._db.txn, list(compares), list(ops))

    # --- leases ----------------------------------------------------------------------
    async def grant(self, ttl: float) -> Lease:
        if not (math.isfinite(ttl) and ttl > 0):
            raise InvalidArgument(f"lease TTL must be a positive number of seconds, not {ttl}")
        return await self._run(self._db.grant, max(ttl, self.min_lease_ttl))

    async def keep_alive(self, lease: int) -> None:
        await self._run(self._db.keep_alive, lease)

    async def keep_alive_many(self, leases: Sequence[int]) -> set[int]:
        return await self._run(self._db.keep_alive_many, list(dict.fromkeys(leases)))

    async def revoke(self, lease: int) -> None:
        await self._run(self._db.revoke, lease)

    # --- watch -----------------------------------------------------------------------
    async def watch(self, prefix: str, *, start_revision: int) -> AsyncIterator[Event]:
        """Poll the history; a locked or failing database is retried, with backoff up to
        a second, from the same position, until the store is closed."""
        next_revision = max(start_revision, 1)
        delay = _POLL_MIN
        while True:
            try:
                changes = await self._run(self._db.changes, prefix, next_revision, page=_WATCH_PAGE)
            except StoreUnavailable:
                if self._closed:
                    raise
                # locked or briefly unusable: keep the position and try again
                delay = min(max(delay, _POLL_MAX) * 2, _RETRY_MAX)
                await asyncio.sleep(delay)
                continue
            next_revision = changes.next_revision
            for event in changes.events:
                yield event
            if changes.more:
                continue
            delay = _POLL_MIN if changes.events else min(delay * 1.5, _POLL_MAX)
            await asyncio.sleep(delay)

    # --- lifecycle -------------------------------------------------------------------
    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._worker, self._db.close)
        finally:
            self._worker.shutdown(wait=False)
