"""The etcd backend: the store contract on etcd's v3 API, through aetcd (asyncio gRPC).

URL: `etcd://[user:password@]host1:2379,host2:2379/prefix?ca=PATH&cert=PATH&key=PATH`.
`ca` trusts a private CA and turns TLS on; `cert` and `key` (together) add a client
certificate; `timeout` (seconds, default 5) bounds every call. Files are read when the
store is opened, so a wrong path fails there, not at the first request.

The contract is etcd's own shape, so most verbs are one request:
- Keys live under `/<prefix>/`; the store adds and strips it, callers never see it.
- `list` is one range request; its header revision is the listing's revision.
- `txn` compares `mod_revision` (0 means absent, which etcd spells `create_revision ==
  0`); on failure the same request reads every compared key, so `found` costs no extra
  round trip and reflects the very revision the comparison saw.
- Leases are etcd leases. etcd counts in whole seconds, so a TTL is rounded up, and
  the server may raise it further to its minimum (with default timings
  ceil(1.5 x election timeout) = 2 s): `grant` returns what etcd granted.
- A watch is an etcd prefix watch. aetcd's watch fails with the connection and never
  resumes, so each watch here owns a client and, when the stream breaks, opens a new
  one (next endpoint, growing backoff) and watches again from the last delivered
  revision + 1. etcd sends all events of one revision in one response (no `fragment`),
  and aetcd queues them before the error that ends the stream, so a revision is never
  cut in half: no gap, no repeat. A compacted start raises `RevisionCompacted`.

Failover, deadlines and error translation live in `etcd_connection`: every call fails
within `timeout` with `StoreUnavailable` when no endpoint answers, and the same store
object works again as soon as one does.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Self

import aetcd.exceptions
import grpc  # type: ignore[import-untyped]  # grpcio ships no type information
from aetcd import rpc

from discovery.backends.etcd_connection import Connections, EtcdClient, EtcdSettings, classify
from discovery.contract import (
    Compare,
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
    InvalidArgument,
    InvalidStoreURL,
    LeaseNotFound,
    RevisionCompacted,
    StoreUnavailable,
)
from discovery.url import StoreURL, parse_network_url

log = logging.getLogger(__name__)

DEFAULT_PORT = 2379
DEFAULT_TIMEOUT = 5.0
_OPTIONS = ("ca", "cert", "key", "timeout")

#: Leases renewed over one LeaseKeepAlive stream (a request and a reply of ~20 bytes each).
_RENEWALS_PER_STREAM = 1000

# A broken watch is re-created after this backoff (seconds), doubling up to the cap.
_WATCH_BACKOFF_FIRST = 0.05
_WATCH_BACKOFF_CAP = 1.0


def parse_etcd_url(url: str) -> tuple[StoreURL, EtcdSettings]:
    """Parse and check an etcd:// URL, reading its TLS files; `InvalidStoreURL` if unusable."""
    parsed = parse_network_url(url, default_port=DEFAULT_PORT)
    shown = parsed.redacted()
    if parsed.scheme != "etcd":
        raise InvalidStoreURL(f"discovery URL {shown!r} is not an etcd:// URL")
    unknown = sorted(set(parsed.options) - set(_OPTIONS))
    if unknown:
        raise InvalidStoreURL(
            f"discovery URL {shown!r}: unknown option {unknown[0]!r}; "
            f"etcd:// takes {', '.join(_OPTIONS)}"
        )
    if (parsed.username is None) != (parsed.password is None):
        raise InvalidStoreURL(
            f"discovery URL {shown!r}: give both a user and a password (user:password@host)"
        )
    return parsed, EtcdSettings(
        endpoints=parsed.endpoints,
        username=parsed.username,
        password=parsed.password,
        credentials=_tls_credentials(parsed, shown),
        timeout=_timeout(parsed, shown),
    )


def _timeout(parsed: StoreURL, shown: str) -> float:
    text = parsed.option("timeout")
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(text.removesuffix("s"))
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InvalidStoreURL(
            f"discovery URL {shown!r}: timeout={text!r} is not a positive number of seconds"
        )
    return value


def _tls_credentials(parsed: StoreURL, shown: str) -> Any:
    """gRPC channel credentials when the URL asks for TLS, else None."""
    ca, cert, key = (parsed.option(name) for name in ("ca", "cert", "key"))
    if ca is None and cert is None and key is None:
        return None
    if (cert is None) != (key is None):
        raise InvalidStoreURL(
            f"discovery URL {shown!r}: a client certificate needs both cert= and key="
        )
    return grpc.ssl_channel_credentials(
        root_certificates=_pem(shown, "ca", ca),
        private_key=_pem(shown, "key", key),
        certificate_chain=_pem(shown, "cert", cert),
    )


def _pem(shown: str, option: str, path: str | None) -> bytes | None:
    if path is None:
        return None
    if not path:
        raise InvalidStoreURL(f"discovery URL {shown!r}: {option}= names no file")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InvalidStoreURL(
            f"discovery URL {shown!r}: {option} file {path!r} cannot be read: {reason}"
        ) from None
    if b"-----BEGIN " not in data:
        raise InvalidStoreURL(f"discovery URL {shown!r}: {option} file {path!r} is not PEM")
    return data


class EtcdStore(Store):
    """A cluster's keys under one prefix of an etcd cluster."""

    scheme = "etcd"
    # etcd grants at least ceil(1.5 x election timeout): 2 s with default timings.
    min_lease_ttl = 2.0
    #: etcd's --max-txn-ops default (it counts compares and operations separately).
    max_txn_ops = 128
    # The leader looks for expired leases every 500 ms, and the revoke goes through raft.
    lease_expiry_slack = 1.0
    exact_history = True

    def __init__(self, *, url: StoreURL, settings: EtcdSettings) -> None:
        self.url = url
        self.settings = settings
        self._root = f"/{url.prefix}/".encode()
        self._connections = Connections(settings)
        self._watch_clients: set[EtcdClient] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"EtcdStore({self.url.redacted()!r})"

    @classmethod
    async def open(cls, url: str) -> Self:
        parsed, settings = parse_etcd_url(url)
        return cls(url=parsed, settings=settings)

    # --- keys ------------------------------------------------------------------------
    def _key(self, key: str) -> bytes:
        return self._root + key.encode()

    def _relative(self, raw: bytes) -> str:
        return raw.removeprefix(self._root).decode(errors="replace")

    def _kv(self, kv: Any) -> KeyValue:
        return KeyValue(
            key=self._relative(kv.key),
            value=bytes(kv.value),
            create_revision=int(kv.create_revision),
            mod_revision=int(kv.mod_revision),
            lease=int(kv.lease) or None,
        )

    async def get(self, key: str) -> KeyValue | None:
        check_key(key)
        found = await self._connections.call(
            lambda client: client.get(self._key(key)), what=f"get of {key!r}", retry_sent=True
        )
        return None if found is None else self._kv(found)

    async def list(self, prefix: str) -> Listing:
        result = await self._connections.call(
            lambda client: client.get_prefix(
                self._key(prefix), sort_order="ascend", sort_target="key"
            ),
            what=f"list of {prefix!r}",
            retry_sent=True,
        )
        return Listing([self._kv(kv) for kv in result.kvs], int(result.header.revision))

    async def put(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        check_key(key)
        check_value(value)
        result = await self._connections.call(
            lambda client: client.put(self._key(key), value, lease=lease),
            what=f"put of {key!r}",
            retry_sent=False,
            lease=lease,
        )
        return int(result.header.revision)

    async def delete(self, key: str) -> bool:
        check_key(key)
        result = await self._connections.call(
            lambda client: client.delete(self._key(key)),
            what=f"delete of {key!r}",
            retry_sent=False,
        )
        return result is not None

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        check_txn_size(self, compares, ops)
        for op in ops:
            check_key(op.key)
            if isinstance(op, Put):
                check_value(op.value)
        for cmp in compares:
            check_key(cmp.key)
        compared = list(dict.fromkeys(cmp.key for cmp in compares))
        request = rpc.TxnRequest(
            compare=[self._compare(cmp) for cmp in compares],
            success=[self._request_op(op) for op in ops],
            # a failed comparison reads the compared keys in the same request
            failure=[
                rpc.RequestOp(request_range=rpc.RangeRequest(key=self._key(key)))
                for key in compared
            ],
        )
        leases = [op.lease for op in ops if isinstance(op, Put) and op.lease is not None]

        async def send(client: EtcdClient) -> Any:
            # aetcd's `transaction()` drops the response header, and with it the
            # revision of a transaction that has no put to report it: call the stub.
            await client.connect()
            return await client.kvstub.Txn(
                request, timeout=client.call_timeout, metadata=client.metadata
            )

        reply = await self._connections.call(
            send,
            what="transaction",
            retry_sent=False,
            lease=leases[0] if len(leases) == 1 else None,
        )
        revision = int(reply.header.revision)
        if reply.succeeded:
            return TxnResult(True, revision)
        found = dict.fromkeys(compared, 0)
        for key, response in zip(compared, reply.responses, strict=True):
            for kv in response.response_range.kvs:
                found[key] = int(kv.mod_revision)
        return TxnResult(False, revision, found)

    def _compare(self, cmp: Compare) -> Any:
        if cmp.mod_revision == 0:  # absent: never created (or deleted since)
            return rpc.Compare(
                key=self._key(cmp.key),
                target=rpc.Compare.CREATE,
                result=rpc.Compare.EQUAL,
                create_revision=0,
            )
        return rpc.Compare(
            key=self._key(cmp.key),
            target=rpc.Compare.MOD,
            result=rpc.Compare.EQUAL,
            mod_revision=cmp.mod_revision,
        )

    def _request_op(self, op: Op) -> Any:
        if isinstance(op, Put):
            put = rpc.PutRequest(key=self._key(op.key), value=op.value, lease=op.lease or 0)
            return rpc.RequestOp(request_put=put)
        return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=self._key(op.key)))

    # --- leases ------------------------------------------------------------------------
    async def grant(self, ttl: float) -> Lease:
        if not (math.isfinite(ttl) and ttl > 0):
            raise InvalidArgument(f"lease TTL must be a positive number of seconds, not {ttl}")
        seconds = math.ceil(ttl)
        # Sent again after a lost reply: the worst case is an unused lease that expires.
        granted = await self._connections.call(
            lambda client: client.lease(seconds), what="lease grant", retry_sent=True
        )
        return Lease(int(granted.id), float(granted.ttl))

    async def keep_alive(self, lease: int) -> None:
        if await self.keep_alive_many([lease]):
            raise LeaseNotFound(f"lease {lease} expired or was revoked")

    async def keep_alive_many(self, leases: Sequence[int]) -> set[int]:
        """Renew `leases` over LeaseKeepAlive streams, up to `_RENEWALS_PER_STREAM` each."""
        pending = list(dict.fromkeys(leases))
        lost: set[int] = set()
        while pending:
            chunk = pending[:_RENEWALS_PER_STREAM]
            ttls = await self._connections.call(
                functools.partial(_renew, leases=chunk),
                what=f"renewal of lease {chunk[0]}"
                if len(chunk) == 1
                else f"renewal of {len(chunk)} leases",
                retry_sent=True,
                lease=chunk[0] if len(chunk) == 1 else None,
            )
            # a lease that ended is answered with TTL 0 (or ends the stream: see _renew)
            lost.update(lease for lease, ttl in zip(chunk, ttls, strict=False) if ttl <= 0)
            pending = pending[len(ttls) :]
        return lost

    async def revoke(self, lease: int) -> None:
        try:
            await self._connections.call(
                lambda client: client.revoke_lease(lease),
                what=f"revoke of lease {lease}",
                retry_sent=True,
                lease=lease,
            )
        except LeaseNotFound:  # already ended, which is what was asked
            return

    # --- watch -------------------------------------------------------------------------
    async def watch(self, prefix: str, *, start_revision: int) -> AsyncIterator[Event]:
        key = self._key(prefix)
        next_revision = max(start_revision, 1)
        index = self._connections.endpoint_index
        backoff = _WATCH_BACKOFF_FIRST
        failures = 0
        while not self._closed:
            client = self._connections.new_client(index)
            self._watch_clients.add(client)
            resume_from = next_revision
            try:
                stream = await client.watch_prefix(key, start_revision=resume_from)
                if failures:
                    log.info("etcd watch of %r resumed on %s", prefix, client.endpoint)
                backoff, failures = _WATCH_BACKOFF_FIRST, 0
                async for raw in stream:
                    event = self._event(raw)
                    if event.revision < resume_from:
                        continue  # never repeat what an earlier stream delivered
                    next_revision = event.revision + 1
                    yield event
                # The stream ended without an error: the client was closed under it.
            except aetcd.exceptions.RevisionCompactedError as exc:
                raise RevisionCompacted(next_revision, int(exc.compacted_revision)) from None
            except (aetcd.exceptions.ClientError, grpc.RpcError, grpc.aio.BaseError) as exc:
                try:  # wrong credentials and the like end the watch; the rest is transient
                    reason = classify(exc, settings=self.settings).reason
                except StoreUnavailable as refused:
                    reason = str(refused)
                failures += 1
                log.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "etcd watch of %r on %s broke (%s); resuming from revision %d",
                    prefix,
                    client.endpoint,
                    reason,
                    next_revision,
                )
            except Exception:
                if self._closed:  # aetcd tripping over its client closed under it
                    return
                raise
            finally:
                self._watch_clients.discard(client)
                await client.shut()
            if self._closed:
                return
            index += 1
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, _WATCH_BACKOFF_CAP)

    def _event(self, raw: Any) -> Event:
        deleted = raw.kind == "DELETE"
        return Event(
            type=EventType.DELETE if deleted else EventType.PUT,
            key=self._relative(raw.kv.key),
            value=None if deleted else bytes(raw.kv.value),
            revision=int(raw.kv.mod_revision),
        )

    # --- lifecycle ---------------------------------------------------------------------
    async def close(self) -> None:
        """Close every connection; open watches end (their `async for` finishes)."""
        self._closed = True
        await self._connections.close()
        for client in list(self._watch_clients):
            await client.shut()


async def _renew(client: EtcdClient, leases: list[int]) -> list[int]:
    """Renew `leases` (no repeats) in order over one LeaseKeepAlive stream; their TTLs.

    The requests are all written, then the stream is half-closed; etcd answers each in
    turn. It answers a lease that ended with TTL 0, except that etcd 3.4 instead ends
    the stream with "lease not found": that lease is then given TTL 0 and the list is
    cut after it (the caller renews the rest over a new stream). aetcd's
    `refresh_lease` opens a stream per lease and leaves it to the garbage collector.
    """
    await client.connect()
    requests = [rpc.LeaseKeepAliveRequest(ID=lease) for lease in leases]
    stream = client.leasestub.LeaseKeepAlive(
        iter(requests), timeout=client.call_timeout, metadata=client.metadata
    )
    ttls: list[int] = []
    try:
        async for reply in stream:
            if int(reply.ID) != leases[len(ttls)]:
                raise StoreUnavailable(f"etcd answered the renewal of lease {reply.ID} out of turn")
            ttls.append(int(reply.TTL))
            if len(ttls) == len(leases):
                break
    except grpc.aio.AioRpcError as exc:
        details = str(exc.details() or "")
        if exc.code() != grpc.StatusCode.NOT_FOUND or "lease not found" not in details:
            raise
        ttls.append(0)
    finally:
        stream.cancel()
    if not ttls:
        raise StoreUnavailable("etcd ended a lease renewal stream without an answer")
    return ttls
