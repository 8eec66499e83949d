"""Two sockets joined: what one side reads, the other side writes, until both are done.

A relayed connection is a pair of asyncio protocols, one per socket, each holding the
other (`peer`). Bytes are handed over in the event loop's own read callback (no task, no
stream object, no copy beyond the kernel's), and back-pressure is the transports' own:
when one side's write buffer passes its high-water mark, the other side stops reading
until it drains. Half-closes pass through (a client that shuts down its sending side
still gets the whole answer); the pair closes when both directions have ended or either
socket is lost.
"""

from __future__ import annotations

import asyncio
from typing import cast

#: Write buffer high-water mark per socket; past it the peer stops reading.
HIGH_WATER = 1024 * 1024


class RelaySide(asyncio.Protocol):
    """One socket of a relayed connection; `peer` is the other."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: RelaySide | None = None
        self.eof = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport; not an `asyncio.Transport` subclass on every event loop
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.lost:
            peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None or peer.lost:
            return False
        if peer.eof:  # both directions are done
            peer.transport.close()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
        return True  # keep this socket open: the other direction still flows

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.lost:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.lost:
            peer.transport.close()  # flushes what is buffered, then closes

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.close()
