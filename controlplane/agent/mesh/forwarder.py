"""One published port on this node: accept, pick a running task, relay.

`PortForwarder` listens on `<address>:<published port>`. For each connection it tries the
port's backends in round-robin order, starting one further along each time; a backend
that refuses (or does not answer within `connect_timeout`) is skipped and the next one
tried, and it goes to the back of the order for `quarantine` seconds, so a task that has
just stopped costs its clients nothing but a refused connect inside the mesh. A backend
that accepts and then closes without sending a byte, within `retry_window` seconds, after
the client sent something (a stopping container behind Docker's userland proxy does
that), counts as refusing too: what the client sent so far is sent to the next backend
(`link`). Only when every backend fails is the client's connection closed.

Accepting, connecting and relaying run on a `Relay` thread (`relay`), not on the event
loop: `start()` binds (and raises `OSError` here when the port is taken), then hands the
listener to the relay. `update(backends)` replaces the set for new connections (the relay
reads it at each accept); connections already relayed keep going. `close()` stops
listening at once; relayed connections still finish.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import time
from collections.abc import Iterable

from controlplane.agent.mesh.link import Address, Link, family, nodelay
from controlplane.agent.mesh.relay import READ, Relay, shared_relay
from controlplane.models.route import Backend

log = logging.getLogger(__name__)


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
        relay: Relay | None = None,  # None: the process's shared relay
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
        self._relay = relay if relay is not None else shared_relay()
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
            (self.address, self.port), family=family(self.address), backlog=1024
        )
        listener.setblocking(False)
        self._listener = listener
        self._relay.call(functools.partial(self._listen, listener))

    def close(self) -> None:
        """Stop listening now (new connections are refused); relayed ones go on."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # a listener shut down refuses at once
        if self._relay.running:
            self._relay.call(functools.partial(self._unlisten, listener))
        else:
            listener.close()

    # --- on the relay thread ----------------------------------------------------------------
    def _listen(self, listener: socket.socket) -> None:
        if listener is self._listener:  # not closed meanwhile
            self._relay.watch(listener.fileno(), READ, functools.partial(self._accept, listener))

    def _unlisten(self, listener: socket.socket) -> None:
        self._relay.forget(listener.fileno())
        listener.close()

    def _accept(self, listener: socket.socket, mask: int) -> None:
        if listener is not self._listener:  # shut down by close(); `_unlisten` follows
            return
        for _ in range(64):  # a burst of connections, without starving the relay
            try:
                client, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # too many open files, and the like
                log.warning("mesh port %d: accept failed: %s", self.port, exc)
                return
            client.setblocking(False)
            nodelay(client)
            Link(self, self._relay, client).connect()

    def no_backend_answered(self) -> None:
        if self._backends:
            log.warning("mesh port %d: no backend of %d answered", self.port, len(self._backends))

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

    def mark_failed(self, address: Address, why: object) -> None:
        """Put `address` at the back of the order for `quarantine` seconds."""
        self._failed_until[address] = time.monotonic() + self.quarantine
        log.debug("mesh port %d: backend %s:%d failed: %s", self.port, *address, why)
