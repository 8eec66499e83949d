"""Is another manager answering? What `/swarm` shows as each manager's `reachability`.

A manager's `managers/<id>` record lives on its own lease, so a dead manager drops out of
the list within its lease TTL. A manager that is alive enough to renew its lease but
does not answer (hung, stopped, partitioned from this manager, its API port blocked) is
still listed; what tells it apart is a call to its API. So, like `docker node ls`'s
MANAGER STATUS, the manager answering `/swarm` asks each *other* manager's `/health`
(at the `api_url` of its record; it needs no token) and says:

- `reachable`: it answered within `timeout`. Any HTTP status line counts: the process
  at that address serves its API.
- `unreachable`: no connection, no answer in time, or something that is not HTTP.

Itself is always reachable: it is answering this very call.

Managers serving HTTPS (`--tlscert`): the probe makes a TLS connection without checking
the peer's certificate. It sends nothing secret and judges only whether the peer
answers, not who it is (`shoal` clients still verify the manager they talk to), and a
manager's own certificate is often not one it could show as a client. A manager that
requires client certificates (`--tlscacert`) turns the certificate-less probe away, with
a TLS alert, a reset or a hang-up, in or right after the handshake; only a live process
does that, so it counts as `reachable`. A stopped or hung process does nothing: the
handshake times out and it is `unreachable`.

Results are kept for `max_age` seconds and probes run concurrently, one at a time per
manager however many requests ask at once, so `/swarm` costs at most one `timeout`
(and usually nothing) and a burst of calls does not fan out to the other managers.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

#: How long one probe may take before its manager counts as unreachable.
PROBE_TIMEOUT = 0.75
#: How long a probe's result is used before the next call probes again.
MAX_AGE = 3.0

Probe = Callable[[str], Awaitable[bool]]


def _insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # liveness only: see the module's docstring
    return context


_TLS = _insecure_context()


async def answers(api_url: str, *, timeout: float = PROBE_TIMEOUT) -> bool:  # noqa: ASYNC109
    """Whether the manager at `api_url` answers `GET /health` within `timeout` seconds."""
    parts = urlsplit(api_url)
    https = parts.scheme == "https"
    host = parts.hostname
    if host is None or parts.scheme not in ("http", "https"):
        return False
    try:
        port = parts.port or (443 if https else 80)
    except ValueError:
        return False
    path = parts.path.rstrip("/") + "/health"
    request = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n"
    connected = False  # the TCP connection is up: from here a TLS peer is answering
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            connected = True
            if https:
                await writer.start_tls(_TLS, server_hostname=host)
            writer.write(request.encode())
            await writer.drain()
            line = await reader.readline()
    except TimeoutError:
        return False  # no connection, no handshake or no answer in time
    except OSError:  # refused, reset, a TLS alert (ssl.SSLError is an OSError)
        # Once connected, a TLS peer that turns the probe away (it wants a client
        # certificate) has answered; a plain HTTP peer that hangs up has not.
        return connected and https
    finally:
        if writer is not None:
            writer.transport.abort()  # a probe: no goodbyes
    return line.startswith(b"HTTP/") or https


@dataclass(frozen=True, slots=True)
class _Seen:
    reachable: bool
    at: float


class ManagerReachability:
    """Cached, concurrent, de-duplicated probes of other managers' APIs.

    `probe` and `clock` are seams for tests; by default `answers()` and the monotonic
    clock."""

    def __init__(
        self,
        *,
        max_age: float = MAX_AGE,
        timeout: float = PROBE_TIMEOUT,
        probe: Probe | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age = max_age
        self.timeout = timeout
        self._probe: Probe = probe or self._answers
        self._clock = clock
        self._seen: dict[tuple[str, str], _Seen] = {}
        self._probing: dict[tuple[str, str], asyncio.Task[bool]] = {}

    async def _answers(self, api_url: str) -> bool:
        return await answers(api_url, timeout=self.timeout)

    async def check(self, managers: Iterable[tuple[str, str]], *, me: str) -> dict[str, bool]:
        """`{manager id: reachable}` for `(id, api_url)` pairs; `me` is always reachable.

        Fresh results are reused; the others are probed at once, all together, sharing
        any probe of the same manager already under way."""
        listed = list(managers)
        wanted = {(manager_id, url) for manager_id, url in listed if manager_id != me}
        for gone in set(self._seen) - wanted:  # managers that left (or moved)
            del self._seen[gone]
        now = self._clock()
        pending: dict[tuple[str, str], asyncio.Task[bool]] = {}
        for key in wanted:
            seen = self._seen.get(key)
            if seen is not None and now - seen.at < self.max_age:
                continue
            pending[key] = self._probing.get(key) or self._start(key)
        if pending:
            # Shielded: a caller that goes away (a client hanging up) does not cancel a
            # probe that other callers share.
            await asyncio.gather(*(asyncio.shield(task) for task in pending.values()))
        result = {manager_id: True for manager_id, _ in listed}
        for key in wanted:
            seen = self._seen.get(key)
            if seen is not None:
                result[key[0]] = seen.reachable
            elif key in pending:  # probed now, but left since: report what it found
                result[key[0]] = pending[key].result()
        return result

    def _start(self, key: tuple[str, str]) -> asyncio.Task[bool]:
        task = asyncio.create_task(self._probe_one(key), name=f"probe manager {key[0]}")
        self._probing[key] = task
        return task

    async def _probe_one(self, key: tuple[str, str]) -> bool:
        try:
            reachable = await self._probe(key[1])
        except Exception:  # a probe that breaks says nothing answered
            reachable = False
        finally:
            self._probing.pop(key, None)
        self._seen[key] = _Seen(reachable=reachable, at=self._clock())
        return reachable
