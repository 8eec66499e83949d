"""One relayed connection: a client socket, a backend socket, and a `Flow` each way.

Everything here runs on the relay thread (`relay`). A `Link` is born with an accepted
client; it connects to the forwarder's candidates in turn without blocking (a refusal,
an error or `connect_timeout` moves on to the next; none left closes the client), sends
the backend what must come first (the PROXY line, and what an earlier backend was sent
before it hung up), then relays.

Per readiness event a `Flow` receives and sends at once: a small answer costs one `recv`
and one `send`, and no pipe (`recv` into a new bytes object measured cheaper than
`recv_into` a kept buffer and sending a slice of it). A read of `BUFFER` bytes means a
bulk transfer: from then on that flow moves its bytes with `os.splice` through a pipe,
in the kernel, which is what keeps a 10 MiB transfer close to a direct one.
Back-pressure: what `dst` does not take waits in the flow (or its pipe), `src` is not
read, and `dst`'s writability is watched instead.

A backend that accepts and then closes (or resets) without sending a byte, within
`retry_window` seconds, after the client sent something, counts as refusing: the
client's bytes so far (kept up to `REPLAY_LIMIT` until a backend answers) go to the next
one. A clean end of one direction is passed on as a half-close; the link closes when both
directions have ended, or at the first error.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
import time
from typing import TYPE_CHECKING

from controlplane.agent.mesh.proxy_protocol import proxy_v1_header
from controlplane.agent.mesh.relay import ERROR, READ, WRITE, Relay, Timer

if TYPE_CHECKING:
    from controlplane.agent.mesh.forwarder import PortForwarder

Address = tuple[str, int]

#: What a client sent before its backend answered is kept up to this size, so that it
#: can be sent again to another backend if that one closes without answering.
REPLAY_LIMIT = 64 * 1024
#: Bytes per receive; a receive that fills it switches its flow to splicing.
BUFFER = 64 * 1024
#: Bytes per splice, and the pipe's size.
PIPE = 1024 * 1024
_SPLICE = hasattr(os, "splice")
_SPLICE_FLAGS = (os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK) if _SPLICE else 0
_CONNECTING = {errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY}


def family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def nodelay(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Flow:
    """One direction: `src` -> `dst`. `link` decides what its ends mean."""

    __slots__ = (
        "dst",
        "ended",
        "in_pipe",
        "link",
        "moved",
        "pending",
        "pipe",
        "shut_when_flushed",
        "src",
    )

    def __init__(self, link: Link, src: socket.socket, dst: socket.socket) -> None:
        self.link = link
        self.src = src
        self.dst = dst
        self.moved = 0  # bytes received from src
        self.pending = b""  # received, not yet taken by dst
        self.pipe: tuple[int, int] | None = None  # splicing, once a read was BUFFER bytes
        self.in_pipe = 0
        self.ended = False  # src's end of stream seen
        self.shut_when_flushed = False  # pass the end on once pending is sent

    @property
    def blocked(self) -> bool:
        return bool(self.pending) or self.in_pipe > 0

    @property
    def reading(self) -> bool:
        return not self.ended and not self.pending and self.in_pipe == 0

    def readable(self) -> None:
        """`src` has bytes (or its end): move what `dst` takes now, keep the rest."""
        if self.pipe is not None:
            self._splice()
            return
        try:
            data = self.src.recv(BUFFER)
        except (BlockingIOError, InterruptedError):
            return
        count = len(data)
        if count == 0:
            self.link.ended(self, None)
            return
        self.moved += count
        link = self.link
        if link.replay is not None and self is link.up:
            link.keep(data)
        try:
            sent = self.dst.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        if sent < count:
            self.pending = data[sent:]
            link.sync()
        elif count == BUFFER and _SPLICE and (link.replay is None or self is link.down):
            self._open_pipe()

    def _open_pipe(self) -> None:
        self.pipe = os.pipe()
        with contextlib.suppress(OSError):  # 64 KiB unless the system allows more
            fcntl.fcntl(self.pipe[1], fcntl.F_SETPIPE_SZ, PIPE)

    def _splice(self) -> None:
        assert self.pipe is not None
        try:
            count = os.splice(self.src.fileno(), self.pipe[1], PIPE, flags=_SPLICE_FLAGS)
        except (BlockingIOError, InterruptedError):
            return
        if count == 0:
            self.link.ended(self, None)
            return
        self.moved += count
        self.in_pipe = count
        if not self.flush():
            self.link.sync()

    def flush(self) -> bool:
        """Send what waits for `dst`; True when nothing is left (then pass a pending end)."""
        while self.pending:
            try:
                sent = self.dst.send(self.pending)
            except (BlockingIOError, InterruptedError):
                return False
            self.pending = self.pending[sent:]
        while self.in_pipe:
            assert self.pipe is not None
            try:
                sent = os.splice(self.pipe[0], self.dst.fileno(), self.in_pipe, flags=_SPLICE_FLAGS)
            except (BlockingIOError, InterruptedError):
                return False
            self.in_pipe -= sent
        if self.shut_when_flushed:
            self.shut_when_flushed = False
            self.shut_dst()
        return True

    def shut_dst(self) -> None:
        with contextlib.suppress(OSError):
            self.dst.shutdown(socket.SHUT_WR)

    def close_pipe(self) -> None:
        if self.pipe is not None:
            for fd in self.pipe:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.pipe = None
            self.in_pipe = 0


class Link:
    """A client and its backend; see the module docstring. Relay thread only."""

    __slots__ = (
        "_attached_at",
        "_backend_fd",
        "_client_fd",
        "_timer",
        "backend",
        "backend_address",
        "client",
        "client_ended",
        "closed",
        "down",
        "forwarder",
        "relay",
        "replay",
        "tried",
        "up",
    )

    def __init__(self, forwarder: PortForwarder, relay: Relay, client: socket.socket) -> None:
        self.forwarder = forwarder
        self.relay = relay
        self.client = client
        self._client_fd = client.fileno()
        self.backend: socket.socket | None = None
        self._backend_fd = -1
        self.backend_address: Address = ("", 0)
        self.up: Flow | None = None  # client -> backend
        self.down: Flow | None = None  # backend -> client
        self.replay: bytearray | None = bytearray()
        self.tried: set[Address] = set()
        self.client_ended = False  # the client half-closed (passed to each backend)
        self.closed = False
        self._attached_at = 0.0
        self._timer: Timer | None = None
        relay.held.add(self)
        relay.watch(self._client_fd, 0, self._on_client)

    # --- connecting -----------------------------------------------------------------------
    def connect(self) -> None:
        """Connect to the next candidate this client has not tried; none left: close."""
        forwarder = self.forwarder
        for address in forwarder.candidates():
            if address in self.tried:
                continue
            self.tried.add(address)
            backend = socket.socket(family(address[0]), socket.SOCK_STREAM)
            backend.setblocking(False)
            nodelay(backend)
            try:
                error = backend.connect_ex(address)
            except OSError as exc:  # a name that does not resolve, and the like
                error = exc.errno or errno.EINVAL
            if error and error not in _CONNECTING:
                backend.close()
                forwarder.mark_failed(address, os.strerror(error))
                continue
            self.backend, self.backend_address = backend, address
            self._backend_fd = backend.fileno()
            self.relay.watch(self._backend_fd, WRITE, self._on_connect)
            self._timer = self.relay.later(forwarder.connect_timeout, self._connect_timed_out)
            return
        forwarder.dropped += 1
        forwarder.no_backend_answered()
        self.close()

    def _on_connect(self, mask: int) -> None:
        assert self.backend is not None
        error = self.backend.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            self._give_up_backend(os.strerror(error))
            self.connect()
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._attach()

    def _connect_timed_out(self) -> None:
        self._timer = None
        if self.backend is not None and self.up is None and not self.closed:
            self._give_up_backend("no answer to the connect")
            self.connect()

    def _give_up_backend(self, why: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.backend is not None:
            self.relay.forget(self._backend_fd)
            self.backend.close()
            self.backend, self._backend_fd = None, -1
            self.forwarder.mark_failed(self.backend_address, why)

    def _attach(self) -> None:
        assert self.backend is not None
        backend = self.backend
        first = b""
        if self.forwarder.proxy_protocol:
            first = proxy_v1_header(_address(self.client, "peer"), _address(self.client, "sock"))
        client_ended = self.client_ended
        if self.replay:
            first += bytes(self.replay)
        self.up = Flow(self, self.client, backend)
        self.up.ended = client_ended
        self.down = Flow(self, backend, self.client)
        self._attached_at = time.monotonic()
        self.relay.handle(self._backend_fd, self._on_backend)
        if len(self.tried) == 1:
            self.forwarder.relayed += 1
        else:
            self.forwarder.retried += 1
        self.up.pending = first
        self.up.shut_when_flushed = client_ended
        try:
            self.up.flush()
        except OSError as exc:
            self.ended(self.up, exc)
            return
        self.sync()

    # --- relaying -------------------------------------------------------------------------
    def sync(self) -> None:
        """Ask the relay for the readiness each socket's flows wait for now."""
        up, down = self.up, self.down
        if up is None or down is None or self.closed:
            return
        relay = self.relay
        relay.want(self._client_fd, (READ if up.reading else 0) | (WRITE if down.blocked else 0))
        relay.want(self._backend_fd, (READ if down.reading else 0) | (WRITE if up.blocked else 0))

    def _on_client(self, mask: int) -> None:
        up = self.up
        if mask == READ and up is not None and up.reading:  # the usual event, in short
            try:
                up.readable()
            except OSError as exc:
                self.ended(up, exc)
            return
        up, down = self.up, self.down
        if up is None or down is None:  # still connecting: only an error matters
            if mask & select.EPOLLERR:
                self.close()
            return
        self._event(mask, up, down)

    def _on_backend(self, mask: int) -> None:
        down = self.down
        if mask == READ and down is not None and down.reading:
            try:
                down.readable()
            except OSError as exc:
                self.ended(down, exc)
            return
        up, down = self.up, self.down
        if up is not None and down is not None:
            self._event(mask, down, up)

    def _event(self, mask: int, reads: Flow, writes: Flow) -> None:
        """One socket's readiness: flush what waits for it, then read what it sent."""
        if (writes.in_pipe or writes.pending) and mask & (WRITE | ERROR):
            try:
                if writes.flush():
                    self.sync()
            except OSError as exc:
                self.ended(writes, exc)
                return
        if reads.reading:
            if mask & (READ | ERROR):
                try:
                    reads.readable()
                except OSError as exc:
                    self.ended(reads, exc)
        elif mask & select.EPOLLERR:  # a reset while this side is paused
            self.close()

    def keep(self, data: bytes) -> None:
        """The client's bytes, kept until the backend answers (or too many to keep)."""
        replay = self.replay
        if replay is None:
            return
        if self.down is not None and self.down.moved:  # the backend answered
            self.replay = None
            return
        replay += data
        if len(replay) > REPLAY_LIMIT:
            self.replay = None  # too much to send again: this backend it is

    def ended(self, flow: Flow, error: BaseException | None) -> None:
        """`flow`'s source ended (`error` None) or either end failed."""
        if self.closed:
            return
        if flow is self.down and self._may_hand_over(flow):
            self._hand_over()
            return
        if error is not None:
            self.close()
            return
        flow.ended = True
        if flow is self.up:
            self.client_ended = True
        flow.close_pipe()
        flow.shut_dst()
        up, down = self.up, self.down
        if up is not None and down is not None and up.ended and down.ended:
            self.close()
        else:
            self.sync()

    def _may_hand_over(self, down: Flow) -> bool:
        return (
            down.moved == 0
            and bool(self.replay)  # the client sent something, and all of it is kept
            and time.monotonic() - self._attached_at <= self.forwarder.retry_window
        )

    def _hand_over(self) -> None:
        """The backend hung up without a byte: give the client to the next one."""
        for flow in (self.up, self.down):
            if flow is not None:
                flow.close_pipe()
        self.up = self.down = None
        self.relay.want(self._client_fd, 0)
        self._give_up_backend("hung up without answering")
        self.connect()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for flow in (self.up, self.down):
            if flow is not None:
                flow.close_pipe()
        self.relay.forget(self._client_fd)
        self.client.close()
        if self.backend is not None:
            self.relay.forget(self._backend_fd)
            self.backend.close()
        self.relay.held.discard(self)


def _address(sock: socket.socket, which: str) -> Address | None:
    try:
        value = sock.getpeername() if which == "peer" else sock.getsockname()
    except OSError:
        return None
    return str(value[0]), int(value[1])
