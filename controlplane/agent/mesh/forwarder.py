"""One published port on this node: accept, pick a running task, relay.

`PortForwarder` listens on `<address>:<published port>`. For each connection it tries the
port's backends in round-robin order, starting one further along each time; a backend
that refuses (or does not answer within `connect_timeout`) is skipped and the next one
tried, and it goes to the back of the order for `quarantine` seconds, so a task that has
just stopped costs its clients nothing but a refused connect inside the mesh. Only when
every backend fails is the client's connection closed.

`update(backends)` replaces the set for new connections; connections already relayed keep
going. `close()` stops listening; relayed connections still finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable

from controlplane.agent.mesh.proxy_protocol import proxy_v1_header
from controlplane.agent.mesh.relay import RelaySide
from controlplane.models.route import Backend

log = logging.getLogger(__name__)

Address = tuple[str, int]


class _ClientSide(RelaySide):
    """The accepted socket: paused until a backend is connected."""

    def __init__(self, forwarder: PortForwarder) -> None:
        super().__init__()
        self._forwarder = forwarder
        self._connecting: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()
        self._connecting = asyncio.get_running_loop().create_task(self._forwarder.attach(self))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()


class _BackendSide(RelaySide):
    """The socket to a task's endpoint; sends the PROXY header first when asked to."""

    def __init__(self, client: _ClientSide, header: bytes) -> None:
        super().__init__()
        self.peer = client
        self._header = header

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        if self._header:
            self.transport.write(self._header)


class PortForwarder:
    """The mesh's listener for one published port. See the module docstring."""

    def __init__(
        self,
        *,
        address: str,
        port: int,
        backends: Iterable[Backend] = (),
        proxy_protocol: bool = False,
        connect_timeout: float = 2.0,
        quarantine: float = 2.0,
    ) -> None:
        self.address = address
        self.port = port
        self.proxy_protocol = proxy_protocol
        self.connect_timeout = connect_timeout
        self.quarantine = quarantine
        self._backends: tuple[Address, ...] = ()
        self._next = 0
        self._failed_until: dict[Address, float] = {}
        self._server: asyncio.Server | None = None
        #: Connections relayed, and connections closed because no backend answered.
        self.relayed = 0
        self.dropped = 0
        self.update(backends)

    @property
    def backends(self) -> tuple[Address, ...]:
        return self._backends

    @property
    def listening(self) -> bool:
        return self._server is not None

    def update(self, backends: Iterable[Backend]) -> None:
        """The endpoints for new connections (existing ones are not touched)."""
        fresh = tuple(dict.fromkeys((b.host, b.port) for b in backends))
        if fresh != self._backends:
            self._backends = fresh
            self._failed_until = {a: t for a, t in self._failed_until.items() if a in fresh}

    async def start(self) -> None:
        """Listen; raises `OSError` when the port is taken on this address."""
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ClientSide(self),
            host=self.address,
            port=self.port,
            family=socket.AF_UNSPEC,
            reuse_address=True,
            backlog=1024,
        )

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()

    def candidates(self) -> list[Address]:
        """Every backend once: round robin, quarantined ones last."""
        backends = self._backends
        if not backends:
            return []
        start = self._next % len(backends)
        self._next = start + 1
        ordered = backends[start:] + backends[:start]
        now = time.monotonic()
        healthy = [a for a in ordered if self._failed_until.get(a, 0.0) <= now]
        if len(healthy) == len(ordered):
            return healthy
        return healthy + [a for a in ordered if a not in healthy]

    async def attach(self, client: _ClientSide) -> None:
        """Connect `client` to the first backend that accepts, or close it."""
        assert client.transport is not None
        header = b""
        if self.proxy_protocol:
            header = proxy_v1_header(
                _address(client.transport.get_extra_info("peername")),
                _address(client.transport.get_extra_info("sockname")),
            )
        loop = asyncio.get_running_loop()
        for host, port in self.candidates():
            backend = _BackendSide(client, header)
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await loop.create_connection(_factory(backend), host, port)
            except (OSError, TimeoutError) as exc:
                self._failed_until[(host, port)] = time.monotonic() + self.quarantine
                log.debug("mesh port %d: backend %s:%d failed: %s", self.port, host, port, exc)
                continue
            self._failed_until.pop((host, port), None)
            if client.lost:  # the client left while we connected
                backend.close()
                return
            client.peer = backend
            self.relayed += 1
            assert client.transport is not None
            client.transport.resume_reading()
            return
        self.dropped += 1
        if self._backends:
            log.warning("mesh port %d: no backend of %d answered", self.port, len(self._backends))
        with contextlib.suppress(Exception):
            client.close()


def _factory(side: _BackendSide) -> Callable[[], _BackendSide]:
    return lambda: side


def _address(value: object) -> Address | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None
