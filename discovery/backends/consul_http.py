"""The HTTP side of the Consul backend: endpoints, failover, deadlines, error mapping.

`ConsulStore` speaks Consul's HTTP API through this one class, which owns the decisions
that have nothing to do with keys:

- **Failover.** A URL may list several agents (`consul://a:8500,b:8500,c:8500/shoal`).
  Calls stick to the endpoint that last answered and move to the next one when it does
  not. Consul servers forward reads and writes to the raft leader themselves, so any
  live endpoint will do.
- **Bounded calls.** Every call has a deadline (`timeout`, 5 s unless the URL says
  `?timeout=`): a down store raises `StoreUnavailable` instead of hanging. When every
  endpoint refuses the connection the call fails at once (nothing listens; waiting
  would not help), while "No cluster leader" answers (an election in progress) are
  retried with backoff until the deadline, because they end by themselves in seconds.
- **Retrying only what is safe.** A request that never reached a server (connection
  refused) is always retried elsewhere. A request whose answer was lost (reset, read
  timeout) is retried only when the caller says it is idempotent: a compare-and-set
  transaction replayed after it landed would report a false conflict.
- **Errors.** No httpx exception leaves this module. Transport failures become
  `StoreUnavailable` naming the endpoints; a 403 becomes `DiscoveryError` (a bad ACL
  token, which retrying cannot fix); 400/413 become `InvalidArgument`. Any other status
  is returned to the caller, which knows what 404 or 409 means for its verb. Consul
  answers input errors with 500 too, so a 500 is read by its text: "No cluster leader"
  is retried like a refused connection (nothing was applied), "leadership lost" or
  "EOF" like a lost answer (it may have been), and any other 500 is returned.

Blocking queries use the same client with a longer per-request timeout (the wait plus
Consul's wait/16 jitter plus a margin), so cancelling a watch cancels its request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from discovery.errors import DiscoveryError, InvalidArgument, StoreUnavailable
from discovery.url import Endpoint

log = logging.getLogger(__name__)

#: Longest wait for a TCP connection to one endpoint before trying the next.
CONNECT_TIMEOUT = 2.0
#: Texts of Consul 500 answers that mean "not applied, try again soon" (an election).
#: ("rpc error making call: invalid session" is *not* one: that is the leader's answer.)
_RETRY_500 = (
    "no cluster leader",
    "no leader",
    "not the leader",
    "rpc error getting client",
    "connection refused",
)
#: Texts of Consul 500 answers after which a write may or may not have been applied
#: (the leader was lost while committing, or stopped answering the forwarding server).
_LOST_500 = (
    "leadership lost",
    "shutdown",
    "timed out",
    "timeout",
    "eof",
    "connection reset",
)


@dataclass(frozen=True, slots=True)
class Reply:
    """One Consul answer: status, body, and `X-Consul-Index` when it sent one."""

    status: int
    content: bytes
    index: int | None
    endpoint: Endpoint

    def json(self) -> Any:
        if not self.content:
            return None
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace").strip()


class _Refused(Exception):
    """Internal: nobody listens at an endpoint (the request was never sent)."""


class _Lost(Exception):
    """Internal: the request may have reached the server, but no answer came back."""


class _Busy(Exception):
    """Internal: the server answered "try again" (no leader, 429, 502-504)."""


class ConsulHTTP:
    """An httpx.AsyncClient over one or more Consul agents; see the module docstring."""

    def __init__(
        self,
        *,
        endpoints: Sequence[Endpoint],
        scheme: str = "http",
        token: str | None = None,
        datacenter: str | None = None,
        tls: ssl.SSLContext | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float = 5.0,
    ) -> None:
        if not endpoints:
            raise InvalidArgument("Consul needs at least one endpoint")
        self.endpoints = tuple(endpoints)
        self.scheme = scheme
        self.timeout = timeout
        self._datacenter = datacenter
        self._current = 0
        self._closed = False
        headers = {"X-Consul-Token": token} if token else {}
        self._client = httpx.AsyncClient(
            headers=headers,
            verify=tls if tls is not None else True,
            auth=auth,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
            follow_redirects=False,
            trust_env=False,
        )

    def describe(self) -> str:
        """The endpoints, for messages: "Consul at 127.0.0.1:8500,127.0.0.1:8501"."""
        return "Consul at " + ",".join(str(e) for e in self.endpoints)

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        self._closed = True
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        content: bytes | None = None,
        idempotent: bool,
        budget: float | None = None,
        read_timeout: float | None = None,
    ) -> Reply:
        """Send one request, failing over between endpoints for `budget` seconds at most.

        `budget` defaults to the URL's timeout.
        `path` starts with "/v1/" and is already quoted. `read_timeout` (for blocking
        queries) bounds the wait for the answer separately from the overall deadline.
        """
        if self._closed:
            raise StoreUnavailable(f"the store for {self.describe()} is closed")
        budget = self.timeout if budget is None else budget
        deadline = time.monotonic() + budget
        query: dict[str, str | int] = dict(params or {})
        if self._datacenter:
            query["dc"] = self._datacenter
        refused_in_a_row = 0
        delay = 0.05
        last = "no attempt made"
        while True:
            endpoint = self.endpoints[self._current % len(self.endpoints)]
            remaining = deadline - time.monotonic()
            try:
                return await self._attempt(
                    method,
                    endpoint,
                    path,
                    query=query,
                    content=content,
                    remaining=max(remaining, 0.05),
                    read_timeout=read_timeout,
                )
            except _Refused as exc:
                refused_in_a_row += 1
                last = f"{endpoint}: {exc}"
                self._rotate(endpoint)
                if refused_in_a_row >= len(self.endpoints):
                    raise StoreUnavailable(f"{self.describe()} is unreachable ({last})") from None
                continue  # the next endpoint at once: nothing was sent
            except _Lost as exc:
                refused_in_a_row = 0
                last = f"{endpoint}: {exc}"
                self._rotate(endpoint)
                if not idempotent:
                    raise StoreUnavailable(
                        f"{self.describe()}: the answer to {method} {_short(path)} was lost "
                        f"({last}); it may or may not have been applied"
                    ) from None
            except _Busy as exc:
                refused_in_a_row = 0
                last = f"{endpoint}: {exc}"
                self._rotate(endpoint)
            if time.monotonic() + delay >= deadline:
                raise StoreUnavailable(
                    f"{self.describe()} did not answer within {budget:g} s ({last})"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _rotate(self, failed: Endpoint) -> None:
        """Move past `failed`, unless a concurrent call already did."""
        if self.endpoints[self._current % len(self.endpoints)] == failed:
            self._current = (self._current + 1) % len(self.endpoints)

    async def _attempt(
        self,
        method: str,
        endpoint: Endpoint,
        path: str,
        *,
        query: Mapping[str, str | int],
        content: bytes | None,
        remaining: float,
        read_timeout: float | None,
    ) -> Reply:
        host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
        url = f"{self.scheme}://{host}:{endpoint.port}{path}"
        read = read_timeout if read_timeout is not None else remaining
        timeouts = httpx.Timeout(
            connect=min(CONNECT_TIMEOUT, remaining), read=read, write=read, pool=remaining
        )
        try:
            response = await self._client.request(
                method, url, params=_encode(query), content=content, timeout=timeouts
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Refused(_reason(exc)) from None
        except httpx.PoolTimeout as exc:
            raise _Busy(_reason(exc)) from None
        except httpx.TransportError as exc:  # read/write errors and timeouts, protocol
            raise _Lost(_reason(exc)) from None
        except RuntimeError as exc:  # the client was closed under us
            raise StoreUnavailable(f"the store for {self.describe()} is closed: {exc}") from None
        reply = Reply(
            status=response.status_code,
            content=response.content,
            index=_index(response.headers.get("X-Consul-Index")),
            endpoint=endpoint,
        )
        status = reply.status
        if status == 500:
            text = reply.text.lower()
            if any(words in text for words in _RETRY_500):
                raise _Busy(f"500 {_first_line(reply.text)}")
            if any(words in text for words in _LOST_500):
                raise _Lost(f"500 {_first_line(reply.text)}")
        if status in (429, 502, 503, 504):
            raise _Busy(f"{status} {_first_line(reply.text)}")
        if status == 403:
            raise DiscoveryError(
                f"{self.describe()} refused {method} {_short(path)}: "
                f"{_first_line(reply.text) or 'permission denied'} (check the URL's ?token=)"
            )
        if status in (400, 413):
            raise InvalidArgument(
                f"{self.describe()} refused the request: {_first_line(reply.text)}"
            )
        return reply


def _encode(query: Mapping[str, str | int]) -> list[tuple[str, str | int | float | bool | None]]:
    return [(name, str(value)) for name, value in query.items()]


def _index(header: str | None) -> int | None:
    if header is None or not header.strip().isdigit():
        return None
    return int(header)


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:200]


def _short(path: str) -> str:
    return path if len(path) <= 80 else path[:77] + "..."
