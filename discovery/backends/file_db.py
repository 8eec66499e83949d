"""The file store's database: one SQLite connection, used from one thread at a time.

Every method here is synchronous and blocking; `discovery.backends.file` runs them on
the store's worker thread. The tables:

- `meta`: one row, the store `revision` (the last revision written) and `compacted`
  (the newest revision whose watch history was trimmed away).
- `kv`: the keys, with their create and mod revisions and the lease that owns them.
- `leases`: id, TTL and a wall-clock `expires_at` (processes on one host share the
  clock). Ids come from AUTOINCREMENT, so an ended lease's id is never handed out again.
- `changes`: the watch history, one row per changed key, ordered by (rev, seq); trimmed
  to the last `history` revisions, and a watcher asking for older ones is told so.

Every write runs in `BEGIN IMMEDIATE`, which takes SQLite's single write lock up front:
writers in every process queue on it (up to the lock timeout), and a transaction's
compares and ops see nothing change underneath them. Each write first ends the leases
that expired, in the same transaction, so no write ever binds a key to a dead lease or
renews one. Reads check for expired leases with one indexed query and end them before
reading, so a key never outlives its lease by more than the time until someone looks.

Failures of SQLite itself (locked too long, disk full, permissions, a damaged file)
become `StoreUnavailable` with a one-line message; the sqlite3 exception is dropped so
that its traceback never reaches a user.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from discovery.backends.file_bulk import (
    BULK_MIN,
    bulk_text,
    mod_revisions,
    put_many,
    renew_many,
)
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
    TxnResult,
)
from discovery.errors import (
    DiscoveryError,
    InvalidArgument,
    LeaseNotFound,
    RevisionCompacted,
    StoreUnavailable,
)

T = TypeVar("T")

# SQLite integers are signed 64-bit: no lease id outside this range was ever granted.
_LEASE_IDS = range(-(2**63), 2**63)

SCHEMA_VERSION = 1

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meta (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        revision INTEGER NOT NULL,
        compacted INTEGER NOT NULL
    )""",
    "INSERT OR IGNORE INTO meta (id, revision, compacted) VALUES (0, 0, 0)",
    """CREATE TABLE IF NOT EXISTS kv (
        key TEXT PRIMARY KEY,
        value BLOB NOT NULL,
        create_rev INTEGER NOT NULL,
        mod_rev INTEGER NOT NULL,
        lease INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS kv_by_lease ON kv (lease) WHERE lease IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS leases (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ttl REAL NOT NULL,
        expires_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS leases_by_expiry ON leases (expires_at)",
    """CREATE TABLE IF NOT EXISTS changes (
        rev INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        key TEXT NOT NULL,
        type TEXT NOT NULL,
        value BLOB,
        PRIMARY KEY (rev, seq)
    )""",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)


@dataclass(frozen=True, slots=True)
class Changes:
    """Watch history under a prefix: `events` in order, and where to read on from."""

    events: list[Event]
    next_revision: int
    more: bool  # True when history past `next_revision` is already waiting


def prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """`(low, high)` such that a key starts with `prefix` iff low <= key < high.

    SQLite compares TEXT as UTF-8 bytes, which orders like code points, so the range
    is exact and lets the primary-key index do the prefix scan. `high` is None when no
    bound exists (an empty prefix, or one of only U+10FFFF characters).
    """
    chars = list(prefix)
    while chars:
        following = ord(chars.pop()) + 1
        if following > 0x10FFFF:
            continue
        if 0xD800 <= following <= 0xDFFF:  # surrogates never occur in stored keys
            following = 0xE000
        return prefix, "".join(chars) + chr(following)
    return prefix, None


def _key_range(prefix: str) -> tuple[str, tuple[str, ...]]:
    low, high = prefix_bounds(prefix)
    if high is None:
        return "key >= ?", (low,)
    return "key >= ? AND key < ?", (low, high)


def _lease_exists(conn: sqlite3.Connection, lease: int) -> bool:
    if lease not in _LEASE_IDS:
        return False
    return conn.execute("SELECT 1 FROM leases WHERE id = ?", (lease,)).fetchone() is not None


def _finish(conn: sqlite3.Connection, statement: str) -> None:
    """COMMIT or ROLLBACK, unless SQLite already ended the transaction itself (it rolls
    back on its own after some errors, such as a full disk)."""
    if conn.in_transaction:
        conn.execute(statement)


class _Revisions:
    """The revision counter inside one write transaction; each change is recorded here."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        row = conn.execute("SELECT revision, compacted FROM meta").fetchone()
        self.revision: int = row[0]
        self.compacted: int = row[1]
        self.seq = 0
        self.dirty = False

    @property
    def pending(self) -> int:
        """The revision the changes being recorded will carry."""
        return self.revision + 1

    def record(self, kind: EventType, key: str, value: bytes | None) -> None:
        self.conn.execute(
            "INSERT INTO changes (rev, seq, key, type, value) VALUES (?, ?, ?, ?, ?)",
            (self.pending, self.seq, key, kind.value, value),
        )
        self.seq += 1

    def seal(self) -> int:
        """Close the pending revision if it recorded anything; returns the revision."""
        if self.seq:
            self.revision += 1
            self.seq = 0
            self.dirty = True
        return self.revision

    def save(self, *, history: int) -> None:
        """Write the counter back, and trim the watch history to `history` revisions."""
        if not self.dirty:
            return
        oldest_kept = self.revision - history + 1
        if oldest_kept - 1 > self.compacted:
            self.compacted = oldest_kept - 1
            self.conn.execute("DELETE FROM changes WHERE rev <= ?", (self.compacted,))
        self.conn.execute(
            "UPDATE meta SET revision = ?, compacted = ?", (self.revision, self.compacted)
        )


class Database:
    """The store's tables in `path`; not thread-safe: call it from one thread."""

    def __init__(self, path: Path, *, history: int, lock_timeout: float) -> None:
        self.path = path
        self.history = history
        self.lock_timeout = lock_timeout
        self._conn: sqlite3.Connection | None = None

    # --- connection ------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        conn = sqlite3.connect(self.path, timeout=self.lock_timeout, isolation_level=None)
        try:
            mode = self._enable_wal(conn)
            if mode != "wal":
                raise StoreUnavailable(
                    f"file store {self.path}: this filesystem does not support SQLite's "
                    f"WAL mode (got {mode!r}); use a local disk"
                )
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> str:
        """Switch a new database to WAL mode (it stays so); returns the mode now in force.

        While several processes open a new database at once, the switch can fail at once
        with "locked" instead of waiting the busy timeout (SQLite refuses to wait while
        holding the lock another waiter needs), so it is retried until the lock timeout.
        """
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY")
                if not busy or time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"file store {self.path} has schema {version}, newer than this shoal "
                f"understands ({SCHEMA_VERSION}); upgrade shoal"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            _finish(conn, "ROLLBACK")
            raise

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    @contextlib.contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from None
        except UnicodeEncodeError:
            raise InvalidArgument("keys must be valid Unicode text (no lone surrogates)") from None

    def _unavailable(self, exc: sqlite3.Error) -> StoreUnavailable:
        name = getattr(exc, "sqlite_errorname", "")
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return StoreUnavailable(
                f"file store {self.path}: another process held the write lock for more "
                f"than {self.lock_timeout:g} s; retry later"
            )
        if name.startswith("SQLITE_FULL"):
            return StoreUnavailable(f"file store {self.path}: the disk is full")
        if name.startswith("SQLITE_IOERR"):
            return StoreUnavailable(
                f"file store {self.path}: the disk refused a read or write ({exc}); "
                "check free space, file size limits and the disk's health"
            )
        if name.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_CANTOPEN")):
            return StoreUnavailable(
                f"file store {self.path} cannot be opened for writing ({exc}); check the "
                "directory's permissions and free space"
            )
        return StoreUnavailable(f"file store {self.path} is unusable: {exc}")

    def _read(self, body: Callable[[sqlite3.Connection], T], *, snapshot: bool = True) -> T:
        """Run `body` after ending any expired leases; on one consistent snapshot unless
        `body` is a single statement, which is always one (saves a BEGIN and a COMMIT)."""
        with self._sqlite_errors():
            conn = self._connect()
            self._expire_due(conn)
            if not snapshot:
                return body(conn)
            conn.execute("BEGIN")
            try:
                return body(conn)
            finally:
                _finish(conn, "COMMIT")

    def _write(self, body: Callable[[sqlite3.Connection, _Revisions], T]) -> T:
        """Run `body` holding the write lock, after ending any expired leases.

        A `DiscoveryError` from `body` still commits (keeping the expiries), so `body`
        must raise one only before it changes anything; any other error rolls back.
        """
        with self._sqlite_errors():
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                revisions = _Revisions(conn)
                self._end_expired(conn, revisions)
                try:
                    result = body(conn, revisions)
                finally:
                    revisions.save(history=self.history)
            except DiscoveryError:
                _finish(conn, "COMMIT")
                raise
            except BaseException:
                _finish(conn, "ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    # --- leases ----------------------------------------------------------------------
    def _expire_due(self, conn: sqlite3.Connection) -> None:
        """End expired leases, taking the write lock only when one is found."""
        due = conn.execute(
            "SELECT 1 FROM leases WHERE expires_at <= ? LIMIT 1", (time.time(),)
        ).fetchone()
        if due is not None:
            # a read must not fail for want of the write lock: the next writer, or the
            # next look, ends these leases instead
            with contextlib.suppress(StoreUnavailable):
                self._write(lambda conn, revisions: None)

    def _end_expired(self, conn: sqlite3.Connection, revisions: _Revisions) -> None:
        expired = conn.execute(
            "SELECT id FROM leases WHERE expires_at <= ? ORDER BY expires_at, id",
            (time.time(),),
        ).fetchall()
        for (lease,) in expired:
            self._end_lease(conn, revisions, lease)

    def _end_lease(self, conn: sqlite3.Connection, revisions: _Revisions, lease: int) -> None:
        """Delete the lease and its keys; the keys' deletes share one revision."""
        keys = conn.execute("SELECT key FROM kv WHERE lease = ? ORDER BY key", (lease,))
        for (key,) in keys.fetchall():
            revisions.record(EventType.DELETE, key, None)
        conn.execute("DELETE FROM kv WHERE lease = ?", (lease,))
        conn.execute("DELETE FROM leases WHERE id = ?", (lease,))
        revisions.seal()

    def grant(self, ttl: float) -> Lease:
        def body(conn: sqlite3.Connection, revisions: _Revisions) -> Lease:
            cursor = conn.execute(
                "INSERT INTO leases (ttl, expires_at) VALUES (?, ?)", (ttl, time.time() + ttl)
            )
            assert cursor.lastrowid is not None
            return Lease(cursor.lastrowid, ttl)

        return self._write(body)

    def keep_alive(self, lease: int) -> None:
        def body(conn: sqlite3.Connection, revisions: _Revisions) -> None:
            renewed = (
                lease in _LEASE_IDS
                and conn.execute(
                    "UPDATE leases SET expires_at = ? + ttl WHERE id = ?", (time.time(), lease)
                ).rowcount
            )
            if not renewed:
                raise LeaseNotFound(f"lease {lease} expired or was revoked")

        self._write(body)

    def keep_alive_many(self, leases: Sequence[int]) -> set[int]:
        """Renew `leases` in one write transaction; returns the ones that already ended.

        One transaction, not one each: a hollow fleet renews a thousand leases every
        heartbeat period, and a thousand separate transactions keep the write lock so
        busy that another process's writers (the leader's) wait in SQLite's sleeping
        busy handler for seconds. And two statements, not one per lease (`file_bulk`):
        row by row, a renewal in a busy process held the lock for up to a second.
        """

        def body(conn: sqlite3.Connection, revisions: _Revisions) -> set[int]:
            valid = [lease for lease in leases if lease in _LEASE_IDS]
            lost = {lease for lease in leases if lease not in _LEASE_IDS}
            return lost | renew_many(conn, valid, now=time.time())

        return self._write(body)

    def revoke(self, lease: int) -> None:
        def body(conn: sqlite3.Connection, revisions: _Revisions) -> None:
            if _lease_exists(conn, lease):
                self._end_lease(conn, revisions, lease)

        self._write(body)

    # --- keys ------------------------------------------------------------------------
    def get(self, key: str) -> KeyValue | None:
        def body(conn: sqlite3.Connection) -> KeyValue | None:
            row = conn.execute(
                "SELECT key, value, create_rev, mod_rev, lease FROM kv WHERE key = ?", (key,)
            ).fetchone()
            return KeyValue(*row) if row is not None else None

        return self._read(body, snapshot=False)

    def list(self, prefix: str) -> Listing:
        where, bounds = _key_range(prefix)

        def body(conn: sqlite3.Connection) -> Listing:
            (revision,) = conn.execute("SELECT revision FROM meta").fetchone()
            rows = conn.execute(
                f"SELECT key, value, create_rev, mod_rev, lease FROM kv WHERE {where} ORDER BY key",
                bounds,
            ).fetchall()
            return Listing([KeyValue(*row) for row in rows], revision)

        return self._read(body)

    def delete(self, key: str) -> bool:
        def body(conn: sqlite3.Connection, revisions: _Revisions) -> bool:
            self._apply(conn, revisions, Delete(key))
            existed = revisions.seq > 0
            revisions.seal()
            return existed

        return self._write(body)

    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        def body(conn: sqlite3.Connection, revisions: _Revisions) -> TxnResult:
            leases = {op.lease for op in ops if isinstance(op, Put) and op.lease is not None}
            for lease in sorted(leases):
                if not _lease_exists(conn, lease):
                    raise LeaseNotFound(f"lease {lease} does not exist (expired or revoked)")
            found = mod_revisions(conn, [cmp.key for cmp in compares])
            if any(found[cmp.key] != cmp.mod_revision for cmp in compares):
                return TxnResult(False, revisions.revision, found)
            self._apply_all(conn, revisions, ops)
            return TxnResult(True, revisions.seal())

        return self._write(body)

    def _apply_all(
        self, conn: sqlite3.Connection, revisions: _Revisions, ops: Sequence[Op]
    ) -> None:
        """`ops` in order; runs of puts in bulk (`file_bulk`), the rest one by one."""
        run: list[tuple[Put, str]] = []

        def write_run() -> None:
            if len(run) >= BULK_MIN:
                put_many(conn, run, revision=revisions.pending, seq=revisions.seq)
                revisions.seq += len(run)
            else:
                for put, _ in run:
                    self._apply(conn, revisions, put)
            run.clear()

        for op in ops:
            text = bulk_text(op)
            if text is None:
                write_run()
                self._apply(conn, revisions, op)
            else:
                assert isinstance(op, Put)
                run.append((op, text))
        write_run()

    def _apply(self, conn: sqlite3.Connection, revisions: _Revisions, op: Op) -> None:
        if isinstance(op, Put):
            conn.execute(
                "INSERT INTO kv (key, value, create_rev, mod_rev, lease) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "mod_rev = excluded.mod_rev, lease = excluded.lease",
                (op.key, op.value, revisions.pending, revisions.pending, op.lease),
            )
            revisions.record(EventType.PUT, op.key, op.value)
        elif conn.execute("DELETE FROM kv WHERE key = ?", (op.key,)).rowcount:
            revisions.record(EventType.DELETE, op.key, None)

    # --- watch history ---------------------------------------------------------------
    def changes(self, prefix: str, start: int, *, page: int) -> Changes:
        """Changes under `prefix` from revision `start`, reading at most `page` revisions."""
        where, bounds = _key_range(prefix)

        def body(conn: sqlite3.Connection) -> Changes:
            revision, compacted = conn.execute("SELECT revision, compacted FROM meta").fetchone()
            if start <= compacted:
                raise RevisionCompacted(start, compacted + 1)
            last = min(revision, start + page - 1)
            if last < start:
                return Changes([], start, more=False)
            rows = conn.execute(
                "SELECT type, key, value, rev FROM changes "
                f"WHERE rev >= ? AND rev <= ? AND {where} ORDER BY rev, seq",
                (start, last, *bounds),
            ).fetchall()
            events = [Event(EventType(kind), key, value, rev) for kind, key, value, rev in rows]
            return Changes(events, last + 1, more=last < revision)

        return self._read(body)
