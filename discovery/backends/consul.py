"""Consul as a discovery store: KV for keys, sessions for leases, blocking queries to watch.

`consul://host:8500[,host2:8500...]/prefix?token=ACL&scheme=https&ca=PATH&cert=PATH&key=PATH&dc=DC&timeout=S`
keeps a cluster's keys under `<prefix>/` in Consul's KV store. `timeout` (seconds, 5 by
default) bounds every call; the other options are Consul's own.

**Client.** This backend talks to Consul's HTTP API with `httpx.AsyncClient`
(`consul_http.py`), not through py-consul. py-consul's client is synchronous
(requests): every watch would pin a thread for a whole blocking query (20 s here), and a
thread stuck in a read cannot be cancelled, so closing a watch or a store would wait for
Consul to answer. Its `consul.aio` module needs aiohttp, which shoal does not otherwise
use. The API surface needed is small (kv, txn, session), and httpx gives per-request
timeouts, connection reuse and cancellation for free. py-consul stays in the test
suite as an independent client that checks what this backend writes (a leased key really
is a Consul lock held by a `delete` session), and for the harness's readiness checks.

**Revisions are raft indexes.** A key's `mod_revision`/`create_revision` are its
`ModifyIndex`/`CreateIndex`; a listing's revision is the `X-Consul-Index` Consul sends
for that prefix (the highest index of the keys *and* tombstones under it). Every write
lands at a fresh raft index, so revisions only grow and every put has its own. Reads use
Consul's default consistency (answered by the leader without a quorum round trip).

**Leases are sessions** created with `Behavior: delete` (when the session ends its keys
are deleted, as etcd deletes a lease's keys), no health checks (`NodeChecks: []`: a
session then lives or dies by its TTL alone, not with the agent that created it, so it
survives the loss of the Consul server it was created on; this needs Consul >= 1.7),
and a TTL of at least 10 s (Consul's minimum, hence `min_lease_ttl = 10`). A lease id is
the session's UUID as an int, so a `KeyValue.lease` compares equal to `Lease.id`.

Timing. Consul arms a session's timer at 2 x TTL on create and on every renew (and
re-arms it in full when a new leader takes over), so an unrenewed session ends between
TTL and 2 x TTL after its last renewal: measured here, ~20 s for TTL 10. The contract's
`lease_expiry_slack` is one number per backend, not per TTL, so it is set to cover the
TTLs shoal uses by default (leader 10 s, node 15 s): 15 s. With a longer TTL T, keys
may outlive their last renewal by up to 2 x T.

Lock-delay is 0 (Consul's default is 15 s). Lock-delay stops anyone acquiring a lost
session's keys for a while, to give the old holder time to notice it lost them; but it
also means that a leader whose lease lapsed, or a restarted agent, could not write its
own key again for 15 s. shoal does not rely on it: every leader-only write is a
transaction guarded by the leader key's revision, so a deposed leader's write fails
whatever the timing. With 0, a key whose session ended can be taken over at once.

**Writes are transactions** (`/v1/txn`): a compare becomes `check-index` (revision > 0)
or `check-not-exists` (0); a put becomes `set`, or `lock` with the lease's session; a
delete becomes `delete`. The results carry the new `ModifyIndex`, which `put` returns.
Consul's `lock` fails on a key held by another session, and its `set` keeps a key's
session; etcd instead moves the key to the new lease (or off any lease). Both are
emulated: a `lock` refused because another session holds the key is retried with a guard
on the key's current index, a `delete` and the `lock` in one transaction (the key's
create_revision is then new); a `set` that left a session on the key is followed by the
same guarded delete-and-set. Consul caps a transaction at 64 operations and 512 KiB of
JSON (values are base64 in it), so a single `put` of a value too large for that goes
through the plain KV endpoint and reads its index back (tagged with a random `Flags`
nonce so that it knows the revision is its own).

Key paths. Keys travel in URL paths, where Go's HTTP server rewrites `//`, `.` and `..`
segments; keys with such segments are refused with `InvalidArgument`.

**Watch** uses blocking queries on the prefix (`?recurse&index=N&wait=20s`) and diffs
each snapshot against the previous one: changed keys become puts at their `ModifyIndex`
(in index order), vanished keys become deletes at the snapshot's `X-Consul-Index`. This is
level-triggered (`exact_history = False`): two writes to a key between two polls arrive
as one put, and a key created and deleted between two polls would leave no trace. To
narrow that gap, the store remembers the keys it wrote or read with `get` and at which
index (a bounded table): such a key that existed after the previous snapshot and is gone
from the current one is reported deleted even though the watch never saw it.

Resuming needs a baseline snapshot. `list()` keeps its last few snapshots (by prefix and
revision), so `list(p)` then `watch(p, start_revision=listing.revision + 1)` replays
exactly what changed since; a snapshot of an enclosing prefix at the same revision serves
too. Without a baseline, a watch starts from the current snapshot when nothing changed
under the prefix since `start_revision - 1`, and raises `RevisionCompacted` otherwise
(Consul keeps no history to replay). `start_revision <= 1` means "from the beginning":
every current key arrives as a put.

Failures never end a watch (closing the store does): it retries with backoff (across
endpoints) and diffs the next snapshot against the last one it delivered, so a Consul
restart or a lost connection costs neither gaps nor repeats. An index that goes
backwards (a snapshot restore, a tombstone reaped) is reset to 0 and re-read, as Consul's
docs require. A token bucket (burst 4, then 10 polls a second) keeps a churning prefix
from turning the watch into a busy loop while leaving a quiet one without added latency.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import json
import logging
import math
import os
import random
import secrets
import ssl
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import quote

from discovery.backends.consul_http import ConsulHTTP, Reply
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
    Store,
    TxnResult,
    check_key,
    check_txn_size,
    check_value,
)
from discovery.errors import (
    DiscoveryError,
    InvalidArgument,
    InvalidStoreURL,
    LeaseNotFound,
    RevisionCompacted,
    StoreUnavailable,
)
from discovery.url import StoreURL, parse_network_url

log = logging.getLogger(__name__)

DEFAULT_PORT = 8500
DEFAULT_TIMEOUT = 5.0
#: Lock-delay of every session this backend creates (see the module docstring).
LOCK_DELAY = "0s"
#: Consul's TTL bounds for sessions, in seconds.
MIN_TTL = 10
MAX_TTL = 86_400
#: Consul's limits on one transaction (`txn_max_req_len` and its operation cap).
TXN_MAX_OPS = 64
TXN_MAX_BYTES = 512 * 1024
#: How long one blocking query waits for a change before Consul answers anyway.
WATCH_WAIT = 20.0
#: Watch polling rate limit: a burst of quick polls, then at most this many a second.
WATCH_BURST = 4
WATCH_RATE = 10.0
#: Bounds of the snapshot cache kept for resuming watches (snapshots, and keys in total).
SNAPSHOTS_KEPT = 16
SNAPSHOT_KEYS_KEPT = 200_000
#: How many keys this store remembers having written or read (see "Watch" above).
SIGHTINGS_KEPT = 4096
#: How often a transaction is rebuilt when a key it moves between sessions keeps changing.
REBIND_ATTEMPTS = 5

_OPTIONS = ("token", "scheme", "ca", "cert", "key", "dc", "timeout")


@dataclass(frozen=True, slots=True)
class _Entry:
    """A key as Consul stores it: our KeyValue plus Consul's session and flags."""

    kv: KeyValue
    session: str | None
    flags: int


@dataclass(frozen=True, slots=True)
class _Role:
    """What one operation of a Consul transaction stands for, to read its errors."""

    kind: str  # "compare", "guard" (our index check before a rebind), "delete", "put"
    key: str


class ConsulStore(Store):
    """A cluster's keys in Consul; see the module docstring for the mapping and timings."""

    scheme = "consul"
    min_lease_ttl = float(MIN_TTL)
    #: Consul ends a session up to one TTL late; 15 s covers shoal's default TTLs.
    lease_expiry_slack = 15.0
    exact_history = False
    max_txn_ops = TXN_MAX_OPS

    def __init__(self, url: StoreURL, http: ConsulHTTP) -> None:
        self.url = url
        self._http = http
        self._root = url.prefix + "/"
        self._snapshots: OrderedDict[tuple[str, int], dict[str, KeyValue]] = OrderedDict()
        self._sightings: OrderedDict[str, int] = OrderedDict()

    @classmethod
    async def open(cls, url: str) -> Self:
        parsed = parse_network_url(url, default_port=DEFAULT_PORT)
        if parsed.scheme != "consul":
            raise InvalidStoreURL(f"{parsed.redacted()!r} is not a consul:// URL")
        return cls(parsed, _client_for(parsed))

    def __repr__(self) -> str:
        return f"ConsulStore({self.url.redacted()!r})"

    # --- keys ----------------------------------------------------------------------
    async def get(self, key: str) -> KeyValue | None:
        _check_key(key)
        entry, index = await self._read_entry(key)
        if entry is None:
            return None
        self._sighted(key, index)
        return entry.kv

    async def list(self, prefix: str) -> Listing:
        _check_path(prefix, what="prefix")
        snapshot, index = await self._snapshot(prefix)
        self._keep_snapshot(prefix, index, snapshot)
        return Listing(sorted(snapshot.values(), key=lambda kv: kv.key), index)

    async def put(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        _check_key(key)
        check_value(value)
        op = Put(key, value, lease)
        if len(self._txn_body([], [op], {})[0]) > TXN_MAX_BYTES:
            return await self._put_large(key, value, lease)
        result = await self.txn([], [op])
        return result.revision

    async def delete(self, key: str) -> bool:
        _check_key(key)
        for _ in range(REBIND_ATTEMPTS):
            entry, _index = await self._read_entry(key)
            if entry is None:
                return False
            if await self._delete_at(key, entry.kv.mod_revision):
                self._sighted(key, entry.kv.mod_revision)
                return True
        raise StoreUnavailable(f"{self._http.describe()}: {key!r} kept changing; delete it again")

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        check_txn_size(self, compares, ops)
        for cmp in compares:
            _check_key(cmp.key)
            if cmp.mod_revision < 0:
                raise InvalidArgument(f"compare of {cmp.key!r}: revision {cmp.mod_revision} < 0")
        sessions: dict[str, str | None] = {}
        for op in ops:
            _check_key(op.key)
            if isinstance(op, Put):
                check_value(op.value)
                sessions[op.key] = None if op.lease is None else _session_id(op.lease)
        guards: dict[str, int] = {}  # keys to take from another session, at this index
        for _ in range(REBIND_ATTEMPTS):
            body, roles = self._txn_body(compares, ops, guards)
            if len(roles) > TXN_MAX_OPS:
                raise InvalidArgument(
                    f"a Consul transaction holds at most {TXN_MAX_OPS} operations, not {len(roles)}"
                )
            if len(body) > TXN_MAX_BYTES:
                raise InvalidArgument(
                    f"transaction of {len(body)} bytes exceeds Consul's {TXN_MAX_BYTES} "
                    "(values are base64 in it): write large values with put()"
                )
            reply = await self._http.request(
                "PUT", "/v1/txn", content=body, idempotent=not compares
            )
            if reply.status == 200:
                document = reply.json() or {}
                return await self._committed(compares, ops, _txn_results(document))
            if reply.status != 409:
                raise self._refusal(reply, "transaction")
            failures = [(roles[e["OpIndex"]], str(e.get("What", ""))) for e in _txn_errors(reply)]
            if not failures:
                raise StoreUnavailable(
                    f"{self._http.describe()} rolled back a transaction: {reply.text}"
                )
            if any(role.kind == "compare" for role, _ in failures):
                found = await self._found(compares)
                return TxnResult(False, max(found.values(), default=0), found)
            moved: set[str] = set()
            for role, what in failures:
                if role.kind == "put" and "invalid session" in what.lower():
                    raise LeaseNotFound(
                        f"lease {_lease_of(sessions[role.key])} expired or was revoked "
                        f"(Consul: {what})"
                    )
                if role.kind == "guard" or (role.kind == "put" and "already held" in what):
                    moved.add(role.key)
                else:
                    raise InvalidArgument(f"{self._http.describe()} refused a transaction: {what}")
            for key in moved:
                entry, _index = await self._read_entry(key)
                if entry is None:
                    guards[key] = 0
                elif entry.session == sessions.get(key):
                    guards.pop(key, None)
                else:
                    guards[key] = entry.kv.mod_revision
        raise StoreUnavailable(
            f"{self._http.describe()}: keys {sorted(guards)} kept changing hands "
            "(or are in another session's lock-delay); retry"
        )

    # --- leases --------------------------------------------------------------------
    async def grant(self, ttl: float) -> Lease:
        if not ttl > 0:
            raise InvalidArgument(f"lease TTL must be positive, not {ttl}")
        seconds = max(math.ceil(ttl), MIN_TTL)
        if seconds > MAX_TTL:
            raise InvalidArgument(f"Consul sessions last at most {MAX_TTL} s, not {ttl:g}")
        body = {
            "Name": f"shoal {self.url.prefix}",
            "TTL": f"{seconds}s",
            "Behavior": "delete",
            "LockDelay": LOCK_DELAY,
            "NodeChecks": [],
        }
        # idempotent: a retry after a lost answer leaves at most an unused session behind,
        # which ends by itself after its TTL
        reply = await self._http.request(
            "PUT", "/v1/session/create", content=json.dumps(body).encode(), idempotent=True
        )
        document = self._expect(reply, "session create")
        try:
            return Lease(uuid.UUID(document["ID"]).int, float(seconds))
        except (KeyError, TypeError, ValueError):
            raise StoreUnavailable(
                f"{self._http.describe()} answered session create with {reply.text[:100]!r}"
            ) from None

    async def keep_alive(self, lease: int) -> None:
        session = _session_id(lease)
        reply = await self._http.request("PUT", f"/v1/session/renew/{session}", idempotent=True)
        if reply.status == 404 or (reply.status == 200 and not reply.json()):
            raise LeaseNotFound(f"lease {lease} expired or was revoked (session {session})")
        self._expect(reply, "session renew")

    async def revoke(self, lease: int) -> None:
        session = _session_id(lease)
        reply = await self._http.request("PUT", f"/v1/session/destroy/{session}", idempotent=True)
        self._expect(reply, "session destroy")

    # --- watch ---------------------------------------------------------------------
    async def watch(self, prefix: str, *, start_revision: int) -> AsyncIterator[Event]:
        _check_path(prefix, what="prefix")
        index, snapshot = await self._baseline(prefix, start_revision)
        seen = index  # every change up to here is reflected in `snapshot`
        last = max(start_revision - 1, 0)  # the revision of the last event delivered
        limit = _TokenBucket(rate=WATCH_RATE, burst=WATCH_BURST)
        backoff = _Backoff()
        while True:
            await limit.take()
            try:
                current, new_index = await self._snapshot(prefix, index=index, previous=snapshot)
            except StoreUnavailable as exc:
                if self._http.closed:
                    raise  # the store was closed under the watch: nothing to wait for
                delay = backoff.next()
                (log.warning if backoff.failures == 1 else log.debug)(
                    "watch of %r: %s; retrying in %.1f s", prefix, exc, delay
                )
                await asyncio.sleep(delay)
                continue
            if backoff.failures:
                log.warning("watch of %r resumed after %d failures", prefix, backoff.failures)
                backoff.reset()
            # keys this store saw exist after the previous snapshot, at an index this
            # snapshot covers, and that are gone now (a put and delete between two polls)
            vanished = [
                key
                for key, at in self._sightings.items()
                if seen < at <= new_index and key.startswith(prefix) and key not in current
            ]
            for event in diff_snapshots(
                snapshot, current, index=max(new_index, last), vanished=vanished
            ):
                if event.type is EventType.PUT:
                    snapshot[event.key] = current[event.key]
                else:
                    snapshot.pop(event.key, None)
                last = max(last, event.revision)
                yield event
            snapshot = current
            seen = max(seen, new_index)
            # Consul's rules: an index that goes backwards restarts the loop from 0, and
            # one that is 0 must never be sent back (it would not block)
            index = 0 if new_index < index else max(new_index, 1)

    async def _baseline(self, prefix: str, start_revision: int) -> tuple[int, dict[str, KeyValue]]:
        """The snapshot a watch from `start_revision` diffs against, and its index."""
        if start_revision <= 1:
            return 0, {}
        cached = self._cached_snapshot(prefix, start_revision - 1)
        if cached is not None:
            return start_revision - 1, cached
        backoff = _Backoff()
        while True:
            try:
                snapshot, index = await self._snapshot(prefix)
                break
            except StoreUnavailable as exc:
                if self._http.closed:
                    raise
                delay = backoff.next()
                log.debug("watch of %r: %s; retrying in %.1f s", prefix, exc, delay)
                await asyncio.sleep(delay)
        if index < start_revision:
            return index, snapshot  # nothing changed under the prefix since then
        raise RevisionCompacted(start_revision, index + 1)

    # --- lifecycle -----------------------------------------------------------------
    async def close(self) -> None:
        await self._http.aclose()

    # --- helpers -------------------------------------------------------------------
    def _kv_path(self, key: str) -> str:
        return "/v1/kv/" + quote(self._root + key, safe="/")

    async def _snapshot(
        self,
        prefix: str,
        *,
        index: int | None = None,
        previous: Mapping[str, KeyValue] | None = None,
    ) -> tuple[dict[str, KeyValue], int]:
        """Every key under `prefix` and the prefix's index; blocking when `index` is set.

        Entries whose ModifyIndex matches `previous` reuse its KeyValue: a watch of a big
        prefix then decodes only what changed.
        """
        params: dict[str, str | int] = {"recurse": ""}
        budget: float | None = None
        read_timeout: float | None = None
        if index is not None:  # Consul may hold it for the wait plus wait/16 of jitter
            params.update(index=index, wait=f"{WATCH_WAIT:g}s")
            read_timeout = WATCH_WAIT * 17 / 16 + 5.0
            budget = read_timeout + self._http.timeout
        reply = await self._http.request(
            "GET",
            self._kv_path(prefix),
            params=params,
            idempotent=True,
            budget=budget,
            read_timeout=read_timeout,
        )
        snapshot: dict[str, KeyValue] = {}
        if reply.status != 404:
            document = self._expect(reply, f"list {prefix!r}")
            root = len(self._root)
            for raw in document if isinstance(document, list) else []:
                old = previous.get(str(raw.get("Key"))[root:]) if previous else None
                if old is not None and old.mod_revision == raw.get("ModifyIndex"):
                    snapshot[old.key] = old
                    continue
                entry = self._decode(raw)
                if entry is not None and entry.kv.key.startswith(prefix):
                    snapshot[entry.kv.key] = entry.kv
        return snapshot, reply.index or 0

    async def _read_entry(self, key: str) -> tuple[_Entry | None, int]:
        """Consul's view of one key, and the index it answered with."""
        reply = await self._http.request("GET", self._kv_path(key), idempotent=True)
        if reply.status == 404:
            return None, reply.index or 0
        for entry in self._entries(self._expect(reply, f"get {key!r}")):
            if entry.kv.key == key:
                return entry, max(reply.index or 0, entry.kv.mod_revision)
        return None, reply.index or 0

    def _entries(self, document: Any) -> builtins.list[_Entry]:
        if not isinstance(document, list):
            return []
        entries = []
        for raw in document:
            entry = self._decode(raw)
            if entry is not None:
                entries.append(entry)
        return entries

    def _decode(self, raw: Any) -> _Entry | None:
        try:
            full = str(raw["Key"])
            if not full.startswith(self._root) or full == self._root:
                return None
            session = raw.get("Session") or None
            kv = KeyValue(
                key=full[len(self._root) :],
                value=base64.b64decode(raw.get("Value") or ""),
                create_revision=int(raw["CreateIndex"]),
                mod_revision=int(raw["ModifyIndex"]),
                lease=_lease_of(session),
            )
            return _Entry(kv, session, int(raw.get("Flags") or 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreUnavailable(
                f"{self._http.describe()} sent a KV entry shoal cannot read: {exc}"
            ) from None

    def _txn_body(
        self, compares: Sequence[Compare], ops: Sequence[Op], guards: Mapping[str, int]
    ) -> tuple[bytes, builtins.list[_Role]]:
        """The JSON of a Consul transaction, and what each of its operations stands for."""
        items: builtins.list[dict[str, Any]] = []
        roles: builtins.list[_Role] = []

        def add(role: _Role, **fields: Any) -> None:
            items.append({"KV": {"Key": self._root + role.key, **fields}})
            roles.append(role)

        for cmp in compares:
            if cmp.mod_revision:
                add(_Role("compare", cmp.key), Verb="check-index", Index=cmp.mod_revision)
            else:
                add(_Role("compare", cmp.key), Verb="check-not-exists")
        for op in ops:
            if isinstance(op, Delete):
                add(_Role("delete", op.key), Verb="delete")
                continue
            if op.key in guards:
                if guards[op.key]:
                    add(_Role("guard", op.key), Verb="check-index", Index=guards[op.key])
                else:
                    add(_Role("guard", op.key), Verb="check-not-exists")
                add(_Role("delete", op.key), Verb="delete")
            value = base64.b64encode(op.value).decode("ascii")
            if op.lease is None:
                add(_Role("put", op.key), Verb="set", Value=value)
            else:
                add(_Role("put", op.key), Verb="lock", Value=value, Session=_session_id(op.lease))
        return json.dumps(items).encode(), roles

    async def _committed(
        self, compares: Sequence[Compare], ops: Sequence[Op], results: builtins.list[Any]
    ) -> TxnResult:
        """After a transaction applied: fix sessions left on unleased puts, sight keys."""
        # results hold the entries of puts and of check-index compares (at their old
        # index): only a put's entry carries the transaction's own index
        written = {self._root + op.key for op in ops if isinstance(op, Put)}
        revision = 0
        last: dict[str, Any] = {}
        for raw in results:
            last[str(raw.get("Key"))] = raw
            if raw.get("Key") in written:
                revision = max(revision, int(raw.get("ModifyIndex") or 0))
        kept_session = [
            op
            for op in ops
            if isinstance(op, Put)
            and op.lease is None
            and (last.get(self._root + op.key) or {}).get("Session")
        ]
        if kept_session:
            revision = await self._unbind(kept_session, last) or revision
        if revision == 0:  # only deletes (or nothing): read an index at or after them
            keys = [op.key for op in ops] + [cmp.key for cmp in compares]
            path = self._kv_path(keys[0]) if keys else "/v1/kv/" + quote(self.url.prefix)
            reply = await self._http.request("GET", path, idempotent=True)
            revision = reply.index or 0
        for op in ops:
            if isinstance(op, Put):
                self._sighted(op.key, revision)
        return TxnResult(True, revision)

    async def _unbind(self, puts: Sequence[Put], results: Mapping[str, Any]) -> int:
        """Detach keys written without a lease from the session still holding them.

        Consul's `set` keeps a key's session; etcd's put without a lease detaches it. One
        guarded delete-and-set per key does the same; when the guard fails someone wrote
        the key after us, and their write stands.
        """
        items = []
        for op in puts:
            full = self._root + op.key
            index = int(results[full]["ModifyIndex"])
            value = base64.b64encode(op.value).decode("ascii")
            items += [
                {"KV": {"Verb": "check-index", "Key": full, "Index": index}},
                {"KV": {"Verb": "delete", "Key": full}},
                {"KV": {"Verb": "set", "Key": full, "Value": value}},
            ]
        reply = await self._http.request(
            "PUT", "/v1/txn", content=json.dumps(items).encode(), idempotent=True
        )
        if reply.status != 200:
            return 0
        return max((int(r.get("ModifyIndex") or 0) for r in _txn_results(reply.json())), default=0)

    async def _found(self, compares: Sequence[Compare]) -> dict[str, int]:
        keys = list(dict.fromkeys(c.key for c in compares))
        read = await asyncio.gather(*(self._read_entry(k) for k in keys))
        return {
            k: (e.kv.mod_revision if e is not None else 0)
            for k, (e, _) in zip(keys, read, strict=True)
        }

    async def _put_large(self, key: str, value: bytes, lease: int | None) -> int:
        """A put too large for a transaction: the KV endpoint, then read the index back.

        The write carries a random `Flags` nonce, so the read tells our write from a
        later one. Moving the key between sessions is a delete-if-unchanged then a new
        write here (not atomic, unlike in `txn`: a watcher may see the delete).
        """
        session = None if lease is None else _session_id(lease)
        path = self._kv_path(key)
        for _ in range(REBIND_ATTEMPTS):
            nonce = secrets.randbits(63) | 1
            params: dict[str, str | int] = {"flags": nonce}
            if session is not None:
                params["acquire"] = session
            reply = await self._http.request(
                "PUT", path, params=params, content=value, idempotent=True
            )
            if reply.status == 500 and "invalid session" in reply.text.lower():
                raise LeaseNotFound(f"lease {lease} expired or was revoked (session {session})")
            written = self._expect(reply, f"put {key!r}") is True
            entry, index = await self._read_entry(key)
            if not written:  # another session holds the key: take it over
                if entry is not None and entry.session != session:
                    await self._delete_at(key, entry.kv.mod_revision)
                continue
            if entry is None:
                return index  # deleted since: the index of an absent key is after our write
            if entry.flags != nonce:
                return entry.kv.mod_revision - 1  # overwritten since: ours came before
            if entry.session != session:  # written without a lease, still held: detach it
                await self._delete_at(key, entry.kv.mod_revision)
                continue
            self._sighted(key, entry.kv.mod_revision)
            return entry.kv.mod_revision
        raise StoreUnavailable(f"{self._http.describe()}: {key!r} kept changing hands; retry")

    async def _delete_at(self, key: str, index: int) -> bool:
        reply = await self._http.request(
            "DELETE", self._kv_path(key), params={"cas": index}, idempotent=True
        )
        return self._expect(reply, f"delete {key!r}") is True

    def _expect(self, reply: Reply, what: str) -> Any:
        if reply.status != 200:
            raise self._refusal(reply, what)
        try:
            return reply.json()
        except ValueError:
            raise StoreUnavailable(
                f"{self._http.describe()} answered {what} with {reply.text[:100]!r}"
            ) from None

    def _refusal(self, reply: Reply, what: str) -> DiscoveryError:
        text = reply.text.splitlines()[0][:200] if reply.text else "no details"
        message = f"{self._http.describe()}: {what} failed with {reply.status}: {text}"
        if reply.status >= 500:
            return StoreUnavailable(message)
        return DiscoveryError(message)

    def _sighted(self, key: str, revision: int) -> None:
        sightings = self._sightings
        sightings[key] = max(revision, sightings.get(key, 0))
        sightings.move_to_end(key)
        while len(sightings) > SIGHTINGS_KEPT:
            sightings.popitem(last=False)

    def _keep_snapshot(self, prefix: str, index: int, snapshot: dict[str, KeyValue]) -> None:
        cache = self._snapshots
        cache[(prefix, index)] = snapshot
        cache.move_to_end((prefix, index))
        total = sum(len(s) for s in cache.values())
        while len(cache) > SNAPSHOTS_KEPT or (len(cache) > 1 and total > SNAPSHOT_KEYS_KEPT):
            _, dropped = cache.popitem(last=False)
            total -= len(dropped)

    def _cached_snapshot(self, prefix: str, index: int) -> dict[str, KeyValue] | None:
        """A copy of a kept snapshot of `prefix` (or of a prefix enclosing it) at `index`."""
        exact = self._snapshots.get((prefix, index))
        if exact is not None:
            return dict(exact)
        for (kept_prefix, kept_index), snapshot in reversed(self._snapshots.items()):
            if kept_index == index and prefix.startswith(kept_prefix):
                return {k: kv for k, kv in snapshot.items() if k.startswith(prefix)}
        return None


def diff_snapshots(
    before: Mapping[str, KeyValue],
    after: Mapping[str, KeyValue],
    *,
    index: int,
    vanished: Iterable[str] = (),
) -> list[Event]:
    """The events that turn `before` into `after`, a snapshot taken at `index`.

    Puts (new keys, and keys whose ModifyIndex moved) come first, in index order; then
    deletes at `index`, for keys of `before` missing from `after` and for `vanished`
    keys (known to have existed since `before` was taken) missing from both.
    """
    changed = [
        kv
        for key, kv in after.items()
        if (old := before.get(key)) is None or old.mod_revision != kv.mod_revision
    ]
    changed.sort(key=lambda kv: (kv.mod_revision, kv.key))
    gone = {key for key in before if key not in after}
    gone.update(key for key in vanished if key not in after and key not in before)
    revision = max([index, *(kv.mod_revision for kv in changed)])
    events = [Event(EventType.PUT, kv.key, kv.value, kv.mod_revision) for kv in changed]
    events += [Event(EventType.DELETE, key, None, revision) for key in sorted(gone)]
    return events


def _client_for(url: StoreURL) -> ConsulHTTP:
    unknown = sorted(set(url.options) - set(_OPTIONS))
    if unknown:
        raise InvalidStoreURL(
            f"discovery URL {url.redacted()!r}: unknown option {unknown[0]!r} "
            f"(consul:// takes {', '.join(_OPTIONS)})"
        )
    _check_path(url.prefix, what="prefix", error=InvalidStoreURL)
    scheme = url.option("scheme", "http") or "http"
    if scheme not in ("http", "https"):
        raise InvalidStoreURL(
            f"discovery URL {url.redacted()!r}: scheme={scheme!r} must be http or https"
        )
    tls_files = {name: url.option(name) for name in ("ca", "cert", "key")}
    tls: ssl.SSLContext | None = None
    if scheme == "https":
        tls = _tls_context(url, ca=tls_files["ca"], cert=tls_files["cert"], key=tls_files["key"])
    elif any(tls_files.values()):
        named = next(name for name, value in tls_files.items() if value)
        raise InvalidStoreURL(
            f"discovery URL {url.redacted()!r} gives {named}= but not scheme=https"
        )
    timeout_text = url.option("timeout")
    timeout = DEFAULT_TIMEOUT
    if timeout_text is not None:
        try:
            timeout = float(timeout_text)
        except ValueError:
            timeout = -1.0
        if not 0 < timeout < 3600:
            raise InvalidStoreURL(
                f"discovery URL {url.redacted()!r}: timeout={timeout_text!r} must be a "
                "number of seconds above 0"
            )
    auth = (url.username or "", url.password or "") if url.username or url.password else None
    return ConsulHTTP(
        endpoints=url.endpoints,
        scheme=scheme,
        token=url.option("token") or None,
        datacenter=url.option("dc") or None,
        tls=tls,
        auth=auth,
        timeout=timeout,
    )


def _tls_context(
    url: StoreURL, *, ca: str | None, cert: str | None, key: str | None
) -> ssl.SSLContext:
    if key and not cert:
        raise InvalidStoreURL(f"discovery URL {url.redacted()!r} gives key= without cert=")
    for name, path in (("ca", ca), ("cert", cert), ("key", key)):
        if path and not os.path.isfile(path):
            raise InvalidStoreURL(
                f"discovery URL {url.redacted()!r}: {name}={path!r} is not a readable file"
            )
    try:
        context = ssl.create_default_context(cafile=ca or None)
        if cert:
            context.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidStoreURL(
            f"discovery URL {url.redacted()!r}: cannot load its TLS files: {exc}"
        ) from None
    return context


def _check_key(key: str) -> None:
    check_key(key)
    _check_path(key, what="key")


def _check_path(text: str, *, what: str, error: type[DiscoveryError] = InvalidArgument) -> None:
    """Refuse what Go's HTTP server would rewrite in a URL path: //, ./ and ../ segments."""
    if "//" in text or any(part in (".", "..") for part in text.split("/")):
        raise error(
            f"{what} {text!r} has an empty, '.' or '..' path segment, which Consul's HTTP "
            "API cannot carry"
        )


def _session_id(lease: int) -> str:
    if not 0 < lease < 1 << 128:
        raise LeaseNotFound(f"lease {lease} is not a Consul session (expired or never granted)")
    return str(uuid.UUID(int=lease))


def _lease_of(session: str | None) -> int | None:
    if not session:
        return None
    return uuid.UUID(session).int


def _txn_results(document: Any) -> list[Any]:
    results = (document or {}).get("Results") or []
    return [r["KV"] for r in results if isinstance(r, dict) and r.get("KV")]


def _txn_errors(reply: Reply) -> list[dict[str, Any]]:
    try:
        document = reply.json() or {}
    except ValueError:
        return []
    return [e for e in document.get("Errors") or [] if isinstance(e, dict) and "OpIndex" in e]


class _TokenBucket:
    """At most `burst` calls at once, refilled at `rate` a second (Consul's advice)."""

    def __init__(self, *, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    async def take(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            await asyncio.sleep((1 - self.tokens) / self.rate)
            self.tokens = 1.0
            self.stamp = time.monotonic()
        self.tokens -= 1


class _Backoff:
    """0.1 s doubling to 2 s, with jitter, while a watch cannot reach Consul."""

    def __init__(self) -> None:
        self.failures = 0

    def next(self) -> float:
        self.failures += 1
        base: float = min(0.1 * 2 ** (self.failures - 1), 2.0)
        return base * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.failures = 0
