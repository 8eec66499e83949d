"""One published port on this node: accept, pick a running task, relay.

`PortForwarder` listens on `<address>:<published port>`. For each connection it tries the
port's backends in round-robin order, starting one further along each time; a backend
that refuses (or does not answer within `connect_timeout`) is skipped and the next one
tried, and it goes to the back of the order for `quarantine` seconds, so a task that has
just stopped costs its clients nothing but a refused connect inside the mesh. A backend
that accepts and then closes without sending a byte, within `retry_window` seconds (a
stopping container behind Docker's userland proxy does that), counts as refusing too:
what the client sent so far (kept up to `REPLAY_LIMIT` bytes until a backend answers) is
sent to the next backend. Only when every backend fails is the client's connection
closed.

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

#: What a client sent before its backend answered is kept up to this size, so that it
#: can be sent again to another backend if that one closes without answering.
REPLAY_LIMIT = 64 * 1024


class _ClientSide(RelaySide):
    """The accepted socket: paused until a backend is connected.

    Until a backend has answered with its first byte, what the client sent is also kept
    (up to `REPLAY_LIMIT` bytes), so that it can be sent again to another backend.
    """

    def __init__(self, forwarder: PortForwarder) -> None:
        super().__init__()
        self.forwarder = forwarder
        self._connecting: asyncio.Task[None] | None = None
        self.replay: bytearray | None = bytearray()
        self.tried: set[Address] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()
        self.connect()

    def connect(self) -> None:
        """Find a backend (again): reading pauses until one is attached."""
        self.peer = None
        if self.transport is not None:
            self.transport.pause_reading()
        self._connecting = asyncio.get_running_loop().create_task(self.forwarder.attach(self))

    def data_received(self, data: bytes) -> None:
        if self.replay is not None:
            self.replay += data
            if len(self.replay) > REPLAY_LIMIT:
                self.replay = None  # too much to send again: this backend it is
        super().data_received(data)

    def eof_received(self) -> bool:
        if self.peer is None:  # between backends: the next one gets the EOF
            self.eof = True
            return True
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()


class _BackendSide(RelaySide):
    """The socket to a task's endpoint; sends the PROXY header first when asked to.

    A backend that closes before sending a single byte, within `retry_window` seconds
    of being connected, after the client sent something, did not serve the client: a
    task that is stopping (Docker's userland proxy still accepts for a container whose
    process has exited). The client is then handed to the next backend with what it
    sent so far, if that was kept. A client that sent nothing lost nothing: the
    backend's close stands.
    """

    def __init__(self, client: _ClientSide, header: bytes, *, retry_window: float) -> None:
        super().__init__()
        self.peer = client
        self.client = client
        self._header = header
        self._retry_window = retry_window
        self.address: Address = ("", 0)
        self._connected_at = 0.0
        self.answered = False
        self.gave_up = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self._connected_at = time.monotonic()
        if self._header:
            self.transport.write(self._header)

    def data_received(self, data: bytes) -> None:
        if not self.answered:
            self.answered = True
            self.client.replay = None  # committed to this backend
        super().data_received(data)

    def _hand_over(self) -> bool:
        """Give the client to another backend; False when this one's close stands."""
        client = self.client
        if (
            self.answered
            or self.gave_up
            or not client.replay  # too much to resend, or nothing sent: nothing lost
            or client.lost
            or client.peer is not self
            or time.monotonic() - self._connected_at > self._retry_window
        ):
            return False
        self.gave_up = True
        self.peer = None
        client.forwarder.mark_failed(self.address, "closed without answering")
        client.connect()
        return True

    def eof_received(self) -> bool:
        if self._hand_over():
            return False  # closes this socket; the client is elsewhere now
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._hand_over():
            self.lost = True
            return
        super().connection_lost(exc)


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
        retry_window: float = 1.0,
    ) -> None:
        self.address = address
        self.port = port
        self.proxy_protocol = proxy_protocol
        self.connect_timeout = connect_timeout
        self.quarantine = quarantine
        self.retry_window = retry_window
        self._backends: tuple[Address, ...] = ()
        self._next = 0
        self._failed_until: dict[Address, float] = {}
        self._server: asyncio.Server | None = None
        #: Connections relayed to their first backend, handed to another one after a
        #: backend closed without answering, and closed because no backend answered.
        self.relayed = 0
        self.retried = 0
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
        """Connect `client` to the first backend that accepts (and that it has not
        tried), send it what the client sent so far, or close the client."""
        assert client.transport is not None
        header = b""
        if self.proxy_protocol:
            header = proxy_v1_header(
                _address(client.transport.get_extra_info("peername")),
                _address(client.transport.get_extra_info("sockname")),
            )
        loop = asyncio.get_running_loop()
        for address in self.candidates():
            if address in client.tried:
                continue
            client.tried.add(address)
            backend = _BackendSide(client, header, retry_window=self.retry_window)
            backend.address = address
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await loop.create_connection(_factory(backend), *address)
            except (OSError, TimeoutError) as exc:
                self.mark_failed(address, exc)
                continue
            if client.lost:  # the client left while we connected
                backend.close()
                return
            assert backend.transport is not None
            assert client.transport is not None
            if client.replay:
                backend.transport.write(bytes(client.replay))
            if client.eof and backend.transport.can_write_eof():
                backend.transport.write_eof()
            client.peer = backend
            if len(client.tried) == 1:
                self.relayed += 1
            else:
                self.retried += 1
            client.transport.resume_reading()
            return
        self.dropped += 1
        if self._backends:
            log.warning("mesh port %d: no backend of %d answered", self.port, len(self._backends))
        with contextlib.suppress(Exception):
            client.close()

    def mark_failed(self, address: Address, why: object) -> None:
        """Put `address` at the back of the order for `quarantine` seconds."""
        self._failed_until[address] = time.monotonic() + self.quarantine
        log.debug("mesh port %d: backend %s:%d failed: %s", self.port, *address, why)


def _factory(side: _BackendSide) -> Callable[[], _BackendSide]:
    return lambda: side


def _address(value: object) -> Address | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None
