"""Connections to an etcd cluster: endpoint failover, deadlines, and error translation.

aetcd's client talks to one host over one gRPC channel, has no TLS, and raises its own
exception types. This module gives `discovery.backends.etcd` what it lacks:

- **Failover.** `Connections` holds one client on the current endpoint. A call that
  fails to reach it retires that client and goes on to the next endpoint, within one
  deadline. A retired client is closed once its last call returns, so a call that is
  still running on it is never cut off by another call's failure.
- **Recovery by itself.** The next call after a failure opens a fresh channel. Channels
  use a private subchannel pool and short reconnect backoff, so a server that comes
  back is used at once, instead of after gRPC's default backoff of up to two minutes.
- **Deadlines.** Every call runs under `timeout` seconds in total (gRPC's per-call
  deadline, and an asyncio deadline over the retries), so a hung server raises
  `StoreUnavailable` instead of hanging its caller.
- **Safe retries.** A read, or a lease grant, renewal or revoke, is retried on the next
  endpoint after any connection failure. A write is retried only when it certainly never reached
  a server (the connection could not be made); after a reset or a timeout it may have
  been applied, so it raises, as etcd's own Go client does, rather than apply twice.
- **One error vocabulary.** gRPC and aetcd exceptions are translated into
  `discovery.errors` with one-line messages naming the endpoints, and raised without
  their cause chained, so a caller's traceback never shows gRPC internals.

`EtcdClient` subclasses aetcd's client only to open the channel itself (plain or TLS,
with the options above) and to authenticate on it; every verb is still aetcd's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aetcd
import aetcd.exceptions
import aetcd.watcher
import grpc  # type: ignore[import-untyped]  # grpcio ships no type information
from aetcd import rpc

from discovery.errors import (
    DiscoveryError,
    InvalidArgument,
    InvalidStoreURL,
    LeaseNotFound,
    StoreUnavailable,
)
from discovery.url import Endpoint

log = logging.getLogger(__name__)

T = TypeVar("T")

#: gRPC channel options, and why each differs from gRPC's default.
CHANNEL_OPTIONS: dict[str, int] = {
    # A private pool: a fresh channel makes a fresh connection, never inheriting a
    # retired channel's connection or its reconnect backoff.
    "grpc.use_local_subchannel_pool": 1,
    # Reconnect within a second of a server's return (gRPC's default backs off to 120 s).
    # (Not `min_reconnect_backoff_ms`: gRPC also takes it as the connect timeout, and a
    # TLS handshake over a slow link must not be cut short; the call's deadline bounds
    # a connection attempt anyway.)
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1000,
    # Notice a peer that vanished without closing its sockets (power loss, partition)
    # on a quiet watch stream. etcd refuses pings more often than every 5 s.
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.http2.max_pings_without_data": 0,
    # A listing of a large prefix may exceed gRPC's default 4 MiB.
    "grpc.max_receive_message_length": -1,
}

# The only gRPC failure after which a request certainly never left this process.
_NOT_SENT = "failed to connect to all addresses"


@dataclass(frozen=True, slots=True)
class EtcdSettings:
    """What a discovery URL says about reaching etcd."""

    endpoints: tuple[Endpoint, ...]
    username: str | None = None
    password: str | None = None
    credentials: Any = None  # grpc.ChannelCredentials for TLS, None for plain text
    timeout: float = 5.0

    def describe(self) -> str:
        """'etcd at h1:2379, h2:2379', for messages (never the password)."""
        return "etcd at " + ", ".join(str(e) for e in self.endpoints)


class EtcdClient(aetcd.Client):  # type: ignore[misc]  # aetcd is untyped
    """aetcd's client on one endpoint, opening its own (plain or TLS) channel."""

    def __init__(self, endpoint: Endpoint, settings: EtcdSettings) -> None:
        super().__init__(
            host=endpoint.host,
            port=endpoint.port,
            username=settings.username,
            password=settings.password,
            timeout=settings.timeout,
            options=CHANNEL_OPTIONS,
        )
        self.endpoint = endpoint
        self.call_timeout = settings.timeout
        self._credentials = settings.credentials
        self._connect_lock = asyncio.Lock()
        self.inflight = 0  # calls running on this client (see `Connections`)
        self.retired = False

    async def connect(self) -> None:
        """Open the channel (lazily, on the first call); authenticate when asked to.

        Replaces aetcd's `connect`, which can only open a plain-text channel; it sets
        up the same attributes (stubs, metadata, watcher) that aetcd's verbs use.
        """
        if self._connected.is_set():
            return
        async with self._connect_lock:
            if self._connected.is_set():
                return
            host = self.endpoint.host
            target = f"[{host}]:{self.endpoint.port}" if ":" in host else str(self.endpoint)
            options = list(self._options.items())
            if self._credentials is None:
                channel = rpc.insecure_channel(target, options=options)
            else:
                channel = rpc.secure_channel(target, self._credentials, options=options)
            metadata = None
            if self._username is not None:
                request = rpc.AuthenticateRequest(name=self._username, password=self._password)
                try:
                    reply = await rpc.AuthStub(channel).Authenticate(
                        request, timeout=self.call_timeout
                    )
                except BaseException:
                    await channel.close()
                    raise
                metadata = (("token", reply.token),)
            self.channel = channel
            self.metadata = metadata
            self.auth_stub = rpc.AuthStub(channel)
            self.kvstub = rpc.KVStub(channel)
            self.clusterstub = rpc.ClusterStub(channel)
            self.leasestub = rpc.LeaseStub(channel)
            self.maintenancestub = rpc.MaintenanceStub(channel)
            self._watcher = aetcd.watcher.Watcher(
                rpc.WatchStub(channel), timeout=self.call_timeout, metadata=metadata
            )
            self._connected.set()

    async def shut(self) -> None:
        """Close, whatever state aetcd's watcher machinery is in."""
        try:
            await self.close()
        except Exception as exc:  # a watcher task that already died re-raises here
            log.debug("closing the etcd client for %s: %r", self.endpoint, exc)


# --- error translation -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Failure:
    """A call that did not get through: why, and whether it may have been applied."""

    reason: str
    sent: bool  # False: certainly never reached a server (safe to send again)


def _rpc_error(exc: BaseException) -> Any:
    """The gRPC error behind an aetcd exception (aetcd chains it as the cause)."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc
    cause = exc.__cause__
    return cause if isinstance(cause, grpc.aio.AioRpcError) else None


def _details(exc: BaseException) -> str:
    error = _rpc_error(exc)
    text = str(error.details() if error is not None else exc) or type(exc).__name__
    return text.splitlines()[0].removeprefix("etcdserver: ")[:300]


def _connect_reason(details: str) -> str:
    """Why a connection could not be made, in a few words.

    gRPC says "failed to connect to all addresses; last error: UNKNOWN: ipv4:h:p:
    Connection refused", or an OpenSSL error string for a failed TLS handshake.
    """
    last = details.rpartition("last error: ")[2]
    lowered = last.lower()
    if "certificate_verify_failed" in lowered:
        rest = last.rpartition("CERTIFICATE_VERIFY_FAILED")[2].strip(": ")
        why = rest.split(": ")[0] or "not trusted"
        return f"TLS: the server's certificate cannot be verified ({why}); check ca="
    if "ssl" in lowered or "tsi_" in lowered or "handshake" in lowered:
        return "TLS handshake failed; check ca=, cert= and key= against the server's"
    return last.rpartition(": ")[2].lower() or details


def classify(
    exc: BaseException,
    *,
    settings: EtcdSettings,
    lease: int | None = None,
) -> Failure:
    """A `Failure` to reach etcd (try another connection), or raise what `exc` means.

    etcd's own refusals (a missing lease, a bad request, wrong credentials, a full
    database) are answers, not connection failures: they raise at once, translated.
    """
    if isinstance(exc, DiscoveryError):
        raise exc
    if isinstance(exc, TimeoutError | aetcd.exceptions.WatchTimeoutError):
        return Failure(f"no answer within {settings.timeout:g} s", sent=True)
    if not isinstance(exc, aetcd.exceptions.ClientError | grpc.RpcError | grpc.aio.BaseError):
        raise exc  # not a store failure: a bug, or a cancellation; let it through
    error = _rpc_error(exc)
    code = error.code() if error is not None else None
    details = _details(exc)
    lowered = details.lower()
    where = settings.describe()
    if code == grpc.StatusCode.UNAVAILABLE:
        if _NOT_SENT in lowered:
            return Failure(_connect_reason(details), sent=False)
        return Failure(details, sent=True)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Failure(f"no answer within {settings.timeout:g} s", sent=True)
    if code == grpc.StatusCode.CANCELLED:
        return Failure(details, sent=True)
    if code == grpc.StatusCode.NOT_FOUND and "lease not found" in lowered:
        which = f"lease {lease}" if lease is not None else "the lease"
        raise LeaseNotFound(f"{which} expired or was revoked") from None
    if code == grpc.StatusCode.UNAUTHENTICATED or "auth store is old" in lowered:
        # An expired or outdated token: a new connection authenticates again. etcd
        # checked the token before doing anything, so nothing was applied.
        return Failure(details, sent=False)
    if "user name is empty" in lowered:
        raise InvalidStoreURL(
            f"{where} requires a user and password: write etcd://user:password@host/prefix"
        ) from None
    if "authentication failed" in lowered or code == grpc.StatusCode.PERMISSION_DENIED:
        user = settings.username or "(none)"
        raise InvalidStoreURL(f"{where} refused user {user!r}: {details}") from None
    if "authentication is not enabled" in lowered:
        raise InvalidStoreURL(
            f"{where} has authentication off: remove user:password from the URL"
        ) from None
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
        raise InvalidArgument(f"{where} refused the request: {details}") from None
    if code is None:  # aetcd's own failure around a call: treat like a dropped connection
        return Failure(details, sent=True)
    raise StoreUnavailable(f"{where} refused the request: {details}") from None


# --- the connection pool ---------------------------------------------------------------
class Connections:
    """One live client at a time, on the current endpoint; failover between endpoints."""

    def __init__(self, settings: EtcdSettings) -> None:
        self.settings = settings
        self._index = 0  # the endpoint in use (or to use next)
        self._current: EtcdClient | None = None
        self._closed = False

    @property
    def endpoint_index(self) -> int:
        return self._index

    def new_client(self, index: int) -> EtcdClient:
        """A client of its own on endpoint `index` (watches hold one each)."""
        if self._closed:
            raise DiscoveryError(f"the store for {self.settings.describe()} is closed")
        endpoints = self.settings.endpoints
        return EtcdClient(endpoints[index % len(endpoints)], self.settings)

    def _client(self) -> EtcdClient:
        if self._current is None:
            self._current = self.new_client(self._index)
        return self._current

    def _retire(self, client: EtcdClient) -> None:
        client.retired = True
        if client is self._current:  # a concurrent call may have rotated already
            self._current = None
            self._index = (self._index + 1) % len(self.settings.endpoints)
            log.debug("etcd: leaving %s for %s", client.endpoint, self._next_endpoint())

    def _next_endpoint(self) -> Endpoint:
        return self.settings.endpoints[self._index]

    async def call(
        self,
        operation: Callable[[EtcdClient], Awaitable[T]],
        *,
        what: str,
        retry_sent: bool,
        lease: int | None = None,
    ) -> T:
        """Run `operation` on a live client, failing over between endpoints.

        `retry_sent`: the operation may be sent again after a failure that may have
        reached a server (reads, renewals); False for writes.
        """
        settings = self.settings
        attempts = max(2, len(settings.endpoints))
        failure: Failure | None = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.timeout
        for _ in range(attempts):
            if failure is not None and loop.time() >= deadline:
                break
            client = self._client()
            client.inflight += 1
            try:
                async with asyncio.timeout_at(deadline):
                    return await operation(client)
            except BaseException as exc:  # `classify` re-raises what is not a store failure
                failure = classify(exc, settings=settings, lease=lease)
                log.debug("etcd %s on %s failed: %s", what, client.endpoint, failure.reason)
                self._retire(client)
                if failure.sent and not retry_sent:
                    raise StoreUnavailable(
                        f"{settings.describe()}: {what} not confirmed ({failure.reason}); "
                        "it may or may not have been applied"
                    ) from None
            finally:
                client.inflight -= 1
                if client.retired and client.inflight == 0:
                    await client.shut()
        reason = failure.reason if failure is not None else "no attempt made"
        raise StoreUnavailable(f"{settings.describe()} is unavailable: {reason}") from None

    async def close(self) -> None:
        self._closed = True
        client, self._current = self._current, None
        if client is not None:
            client.retired = True
            if client.inflight == 0:
                await client.shut()
