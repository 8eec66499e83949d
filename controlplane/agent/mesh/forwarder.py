"""One published port on this node: accept, pick a running task, relay.

`PortForwarder` listens on `<address>:<published port>`. For each connection it tries the
port's backends in round-robin order, starting one further along each time; a backend
that refuses (or does not answer within `connect_timeout`) is skipped and the next one
tried, and it goes to the back of the order for `quarantine` seconds, so a task that has
just stopped costs its clients nothing but a refused connect inside the mesh. A backend
that accepts and then closes without sending a byte, within `retry_window` seconds, after
the client sent something (a stopping container behind Docker's userland proxy does
that), counts as refusing too: what the client sent so far (kept up to `REPLAY_LIMIT`
bytes until a backend answers) is sent to the next backend. Only when every backend
fails is the client's connection closed.

The bytes themselves move in the kernel (`pump`): each connection is two `Pump`s on the
raw sockets, driven by event-loop callbacks, with no transport or stream object.

`update(backends)` replaces the set for new connections; connections already relayed keep
going. `close()` stops listening; relayed connections still finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterable

from controlplane.agent.mesh.proxy_protocol import proxy_v1_header
from controlplane.agent.mesh.pump import Pump
from controlplane.models.route import Backend

log = logging.getLogger(__name__)

Address = tuple[str, int]

#: What a client sent before its backend answered is kept up to this size, so that it
#: can be sent again to another backend if that one closes without answering.
REPLAY_LIMIT = 64 * 1024


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _nodelay(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Connection:
    """A client socket and, once attached, a backend socket with a pump each way."""

    def __init__(self, forwarder: PortForwarder, client: socket.socket) -> None:
        self.forwarder = forwarder
        self.client = client
        self.backend: socket.socket | None = None
        self.backend_address: Address = ("", 0)
        self.up: Pump | None = None  # client -> backend
        self.down: Pump | None = None  # backend -> client
        self.replay: bytearray | None = bytearray()
        self.tried: set[Address] = set()
        self.client_eof = False
        self.closed = False
        self._attached_at = 0.0

    def attach(self, backend: socket.socket, address: Address) -> None:
        """Relay between the client and `backend` (already sent what it must see first)."""
        loop = asyncio.get_running_loop()
        self.backend = backend
        self.backend_address = address
        self._attached_at = time.monotonic()
        self.down = Pump(loop, backend, self.client, on_end=self._ended)
        self.down.start()
        if not self.client_eof:
            self.up = Pump(loop, self.client, backend, on_end=self._ended, watch=self._keep)
            self.up.start()

    def _keep(self, data: bytes) -> bool:
        """The client's bytes, kept until the backend answers; False: stop looking."""
        if self.replay is None:
            return False
        if self.down is not None and self.down.moved:  # the backend answered
            self.replay = None
            return False
        self.replay += data
        if len(self.replay) > REPLAY_LIMIT:
            self.replay = None  # too much to send again: this backend it is
            return False
        return True

    def _ended(self, pump: Pump, error: BaseException | None) -> None:
        if self.closed:
            return
        if pump is self.down and self._may_hand_over(pump):
            self._hand_over()
            return
        if error is None:
            pump.pass_eof()
        if pump is self.up and error is None:
            self.client_eof = True
        up_done = self.up is None or self.up.done
        if error is not None or (up_done and self.down is not None and self.down.done):
            self.close()

    def _may_hand_over(self, down: Pump) -> bool:
        return (
            down.moved == 0
            and bool(self.replay)  # the client sent something, and all of it is kept
            and time.monotonic() - self._attached_at <= self.forwarder.retry_window
        )

    def _hand_over(self) -> None:
        """The backend hung up without a byte: give the client to the next one."""
        for pump in (self.up, self.down):
            if pump is not None:
                pump.stop()
        self.up = self.down = None
        if self.backend is not None:
            self.backend.close()
            self.backend = None
            self.forwarder.mark_failed(self.backend_address, "hung up without answering")
        self.forwarder.connect(self)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for pump in (self.up, self.down):
            if pump is not None:
                pump.stop()
        for sock in (self.client, self.backend):
            if sock is not None:
                sock.close()


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
        self._listener: socket.socket | None = None
        self._attaching: set[asyncio.Task[None]] = set()
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
        return self._listener is not None

    @property
    def bound_port(self) -> int:
        """The port listened on (the one asked for, or the system's choice for 0)."""
        if self._listener is None:
            raise RuntimeError("not listening")
        return int(self._listener.getsockname()[1])

    def update(self, backends: Iterable[Backend]) -> None:
        """The endpoints for new connections (existing ones are not touched)."""
        fresh = tuple(dict.fromkeys((b.host, b.port) for b in backends))
        if fresh != self._backends:
            self._backends = fresh
            self._failed_until = {a: t for a, t in self._failed_until.items() if a in fresh}

    async def start(self) -> None:
        """Listen; raises `OSError` when the port is taken on this address."""
        if self._listener is not None:
            return
        listener = socket.create_server(
            (self.address, self.port), family=_family(self.address), backlog=1024
        )
        listener.setblocking(False)
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept)
        self._listener = listener

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            asyncio.get_running_loop().remove_reader(listener.fileno())
            listener.close()

    def _accept(self) -> None:
        if self._listener is None:
            return
        for _ in range(64):  # a burst of connections, without starving the loop
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # too many open files, and the like
                log.warning("mesh port %d: accept failed: %s", self.port, exc)
                return
            client.setblocking(False)
            _nodelay(client)
            self.connect(_Connection(self, client))

    def connect(self, connection: _Connection) -> None:
        task = asyncio.get_running_loop().create_task(self.attach(connection))
        self._attaching.add(task)
        task.add_done_callback(self._attaching.discard)

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

    async def attach(self, connection: _Connection) -> None:
        """Connect to the first backend that accepts (and that this client has not tried),
        send it the PROXY header and what the client sent so far, and relay; or close."""
        loop = asyncio.get_running_loop()
        first = b""
        if self.proxy_protocol:
            first = proxy_v1_header(
                _address(connection.client, "peer"), _address(connection.client, "sock")
            )
        if connection.replay:
            first += bytes(connection.replay)
        for address in self.candidates():
            if address in connection.tried:
                continue
            connection.tried.add(address)
            backend = socket.socket(_family(address[0]), socket.SOCK_STREAM)
            backend.setblocking(False)
            _nodelay(backend)
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await loop.sock_connect(backend, address)
                    if first:
                        await loop.sock_sendall(backend, first)
                if connection.client_eof:
                    backend.shutdown(socket.SHUT_WR)
            except (OSError, TimeoutError) as exc:
                backend.close()
                self.mark_failed(address, exc)
                continue
            except BaseException:
                backend.close()
                raise
            if connection.closed:
                backend.close()
                return
            connection.attach(backend, address)
            if len(connection.tried) == 1:
                self.relayed += 1
            else:
                self.retried += 1
            return
        self.dropped += 1
        if self._backends:
            log.warning("mesh port %d: no backend of %d answered", self.port, len(self._backends))
        connection.close()

    def mark_failed(self, address: Address, why: object) -> None:
        """Put `address` at the back of the order for `quarantine` seconds."""
        self._failed_until[address] = time.monotonic() + self.quarantine
        log.debug("mesh port %d: backend %s:%d failed: %s", self.port, *address, why)


def _address(sock: socket.socket, which: str) -> Address | None:
    try:
        value = sock.getpeername() if which == "peer" else sock.getsockname()
    except OSError:
        return None
    return str(value[0]), int(value[1])
