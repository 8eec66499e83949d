"""Many keys in one SQLite statement, for the file store's large transactions.

Python's sqlite3 lets go of the GIL for every statement it steps and must take it back
after. In a process whose event loop keeps the GIL busy (a hollow fleet taking up
10,000 tasks), each take-back waits up to the interpreter's switch interval (5 ms), so a
transaction written row by row (two statements per key) crawls while the loop works, and
its writes land only once the loop goes idle. Here a run of puts is two statements
however long it is (one for the keys, one for their watch history), and a set of
compares or of lease renewals is one or two: the rows travel as one JSON text that
SQLite unpacks with `json_each`.

Values travel as JSON strings, so only values that are UTF-8 text without NUL characters
(every document shoal writes) take this path; `CAST(... AS BLOB)` gives back their exact
bytes. Any other value is written by the row-by-row path, in its place in the order.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from discovery.contract import Op, Put

#: Puts in a row below this go row by row (two statements each are cheaper than JSON).
BULK_MIN = 8

_PUT_KEYS = (
    "INSERT INTO kv (key, value, create_rev, mod_rev, lease) "
    "SELECT json_extract(value, '$[0]'), CAST(json_extract(value, '$[1]') AS BLOB), ?, ?, "
    "json_extract(value, '$[2]') FROM json_each(?) WHERE true "  # (WHERE: see SQLite's upsert)
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
    "mod_rev = excluded.mod_rev, lease = excluded.lease"
)
_RECORD_PUTS = (
    "INSERT INTO changes (rev, seq, key, type, value) "
    "SELECT ?, ? + key, json_extract(value, '$[0]'), 'put', "
    "CAST(json_extract(value, '$[1]') AS BLOB) FROM json_each(?)"
)
_MOD_REVISIONS = "SELECT key, mod_rev FROM kv WHERE key IN (SELECT value FROM json_each(?))"
_RENEW = "UPDATE leases SET expires_at = ? + ttl WHERE id IN (SELECT value FROM json_each(?))"
_MISSING_LEASES = "SELECT value FROM json_each(?) WHERE value NOT IN (SELECT id FROM leases)"


def mod_revisions(conn: sqlite3.Connection, keys: Sequence[str]) -> dict[str, int]:
    """Each key's mod revision, 0 for a key that does not exist."""
    found = dict.fromkeys(keys, 0)
    if len(found) < BULK_MIN or any("\x00" in key for key in found):  # NUL: not via JSON
        for key in found:
            row = conn.execute("SELECT mod_rev FROM kv WHERE key = ?", (key,)).fetchone()
            if row is not None:
                found[key] = row[0]
        return found
    listed = json.dumps(list(found), ensure_ascii=False)
    for key, mod_rev in conn.execute(_MOD_REVISIONS, (listed,)):
        found[key] = mod_rev
    return found


def renew_many(conn: sqlite3.Connection, leases: Sequence[int], *, now: float) -> set[int]:
    """Renew every lease of `leases` that exists (two statements); returns the others.

    Only the leases that do not exist come back as rows: a thousand renewed leases cost
    no row at all.
    """
    listed = json.dumps(list(leases))
    conn.execute(_RENEW, (now, listed))
    return {lease for (lease,) in conn.execute(_MISSING_LEASES, (listed,))}


def bulk_text(op: Op) -> str | None:
    """A put's value as text, if it can travel as a JSON string and come back the same;
    None for a delete or any other value."""
    if not isinstance(op, Put) or "\x00" in op.key or b"\x00" in op.value:
        return None
    try:
        return op.value.decode()
    except UnicodeDecodeError:
        return None


def put_many(
    conn: sqlite3.Connection, puts: Sequence[tuple[Put, str]], *, revision: int, seq: int
) -> None:
    """Write `puts` in order at `revision`, their watch history numbered from `seq`."""
    rows = json.dumps([[put.key, text, put.lease] for put, text in puts], ensure_ascii=False)
    conn.execute(_PUT_KEYS, (revision, revision, rows))
    conn.execute(_RECORD_PUTS, (revision, seq, rows))
