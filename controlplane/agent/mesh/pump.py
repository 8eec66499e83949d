"""One direction of a relayed connection: bytes from one socket to another, in the kernel.

A `Pump` moves what `src` receives to `dst` from event-loop callbacks on the raw,
non-blocking sockets. On Linux it uses `os.splice` through a pipe: the bytes go from one
socket's receive queue to the other's send queue without being copied into Python,
which is what keeps a 10 MiB transfer through the mesh close to a direct one. Elsewhere,
or while the bytes must be seen (`watch`, until the relay stops needing them), it
receives into Python and sends.

Back-pressure: while `dst` cannot take more, the pump stops reading `src` and waits for
`dst` to be writable. At `src`'s end of stream (or an error) it reports `on_end(pump,
error)`; the owner decides what follows (`pass_eof()` passes a half-close through). A
pump never closes a socket itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from collections.abc import Callable

#: Bytes per receive or splice.
CHUNK = 1024 * 1024
_SPLICE = hasattr(os, "splice")
_FLAGS = (os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK) if _SPLICE else 0


class Pump:
    """`src` -> `dst` until `src` ends or either fails; see the module docstring."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        src: socket.socket,
        dst: socket.socket,
        *,
        on_end: Callable[[Pump, BaseException | None], None],
        watch: Callable[[bytes], bool] | None = None,
    ) -> None:
        self._loop = loop
        self.src = src
        self.dst = dst
        self._on_end = on_end
        #: Sees each chunk while set; returning False stops watching (splice from then on).
        self._watch = watch
        self.moved = 0  # bytes received from src so far
        self.done = False
        self._pending = b""  # received, not yet sent (copy mode)
        self._in_pipe = 0  # spliced into the pipe, not yet out (splice mode)
        self._pipe: tuple[int, int] | None = None
        self._reading = False
        self._writing = False

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._read(True)

    def stop(self) -> None:
        """Stop without reporting (the caller is tearing the connection down)."""
        self.done = True
        self._read(False)
        self._write(False)
        if self._pipe is not None:
            for fd in self._pipe:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._pipe = None

    def _end(self, error: BaseException | None) -> None:
        if self.done:
            return
        self.stop()
        self._on_end(self, error)

    def pass_eof(self) -> None:
        """After a clean end: shut down `dst`'s sending side, as `src`'s peer did."""
        with contextlib.suppress(OSError):
            self.dst.shutdown(socket.SHUT_WR)

    # --- registration ---------------------------------------------------------------------
    def _read(self, on: bool) -> None:
        if on and not self._reading and not self.done:
            self._loop.add_reader(self.src.fileno(), self._readable)
            self._reading = True
        elif not on and self._reading:
            self._loop.remove_reader(self.src.fileno())
            self._reading = False

    def _write(self, on: bool) -> None:
        if on and not self._writing and not self.done:
            self._loop.add_writer(self.dst.fileno(), self._writable)
            self._writing = True
        elif not on and self._writing:
            self._loop.remove_writer(self.dst.fileno())
            self._writing = False

    # --- moving bytes -----------------------------------------------------------------------
    def _readable(self) -> None:
        try:
            if self._watch is None and _SPLICE:
                self._splice_in()
            else:
                self._receive()
        except OSError as exc:
            self._end(exc)

    def _writable(self) -> None:
        try:
            if self._flush():
                self._write(False)
                self._read(True)
        except OSError as exc:
            self._end(exc)

    def _receive(self) -> None:
        try:
            data = self.src.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            self._end(None)
            return
        self.moved += len(data)
        if self._watch is not None and not self._watch(data):
            self._watch = None
        self._pending = data
        self._drain()

    def _splice_in(self) -> None:
        if self._pipe is None:
            self._pipe = os.pipe()
            with contextlib.suppress(OSError, AttributeError):  # 64 KiB unless raised
                fcntl.fcntl(self._pipe[1], fcntl.F_SETPIPE_SZ, CHUNK)
        try:
            count = os.splice(self.src.fileno(), self._pipe[1], CHUNK, flags=_FLAGS)
        except (BlockingIOError, InterruptedError):
            return
        if count == 0:
            self._end(None)
            return
        self.moved += count
        self._in_pipe += count
        self._drain()

    def _drain(self) -> None:
        if not self._flush():
            self._read(False)  # back-pressure: read again once dst drains
            self._write(True)

    def _flush(self) -> bool:
        """Send what is waiting; True when nothing is left."""
        while self._pending:
            try:
                sent = self.dst.send(self._pending)
            except (BlockingIOError, InterruptedError):
                return False
            self._pending = self._pending[sent:]
        while self._in_pipe:
            assert self._pipe is not None
            try:
                sent = os.splice(self._pipe[0], self.dst.fileno(), self._in_pipe, flags=_FLAGS)
            except (BlockingIOError, InterruptedError):
                return False
            self._in_pipe -= sent
        return True
