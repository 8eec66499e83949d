"""The relay thread: one `select.epoll` loop that moves every mesh connection's bytes.

The mesh first relayed from asyncio callbacks. For a 13-byte answer that cost the
relay about three times the backend's CPU per request: a `Handle` per readiness event,
`add_reader`/`remove_reader` as directions paused and resumed, and a splice through a
pipe for a handful of bytes. On two cores, where the client, the backend and the relay
each want one, that kept the mesh near 40 % of direct throughput.

A `Relay` is a thread of its own with an epoll loop and a flat table `fd -> handler`:
per readiness event it calls one bound method, which receives and sends at once (see
`link`). Listeners, backend connects and their timeouts live in the same loop, so a
connection never crosses threads. The asyncio side talks to it through `call()` (a
queue and an eventfd that wakes the loop); everything else here runs on the thread.

`stop()` closes every connection the relay still holds and ends the thread. An agent's
`RoutingMesh` owns one relay; a `PortForwarder` made without one (tests, benchmarks)
uses the process's `shared_relay()`.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

#: Readiness the loop asks for; with nothing to ask, a socket stays registered
#: edge-triggered so that a hang-up or error is reported once, not in a busy loop.
READ = select.EPOLLIN
WRITE = select.EPOLLOUT
IDLE = select.EPOLLET
ERROR = select.EPOLLERR | select.EPOLLHUP

Handler = Callable[[int], None]


class Closable(Protocol):
    def close(self) -> None: ...


class Timer:
    """A callback due at a monotonic time, on the relay thread; `cancel()` drops it."""

    __slots__ = ("callback", "cancelled", "due")

    def __init__(self, due: float, callback: Callable[[], None]) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Relay:
    """One thread, one epoll loop; see the module docstring."""

    def __init__(self, *, name: str = "mesh relay") -> None:
        self.name = name
        self._epoll: select.epoll | None = None
        self._wake = -1
        self._thread: threading.Thread | None = None
        self._handlers: dict[int, Handler] = {}
        self._masks: dict[int, int] = {}
        self._commands: deque[Callable[[], None]] = deque()
        self._timers: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._stopping = False
        self._lock = threading.Lock()
        #: What `stop()` closes: the connections (and listeners) the relay holds.
        self.held: set[Closable] = set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- from any thread ------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._epoll = select.epoll()
            self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._epoll.register(self._wake, READ)
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close every held connection and end the thread (waits up to `timeout`)."""
        thread = self._thread
        if thread is None:
            return
        self.call(self._shut)
        thread.join(timeout)
        with self._lock:
            self._thread = None

    def call(self, command: Callable[[], None]) -> None:
        """Run `command` on the relay thread, soon (starts the thread if needed)."""
        self.start()
        self._commands.append(command)
        with contextlib.suppress(OSError):
            os.eventfd_write(self._wake, 1)

    # --- on the relay thread --------------------------------------------------------------
    def watch(self, fd: int, mask: int, handler: Handler) -> None:
        assert self._epoll is not None
        self._epoll.register(fd, mask or IDLE)
        self._handlers[fd] = handler
        self._masks[fd] = mask

    def handle(self, fd: int, handler: Handler) -> None:
        """Give `fd`'s events to `handler` from now on (it stays registered)."""
        if fd in self._handlers:
            self._handlers[fd] = handler

    def want(self, fd: int, mask: int) -> None:
        """Ask for `mask` readiness on `fd` from now on (a no-op if it is already so)."""
        if self._masks.get(fd) != mask and fd in self._handlers:
            assert self._epoll is not None
            self._epoll.modify(fd, mask or IDLE)
            self._masks[fd] = mask

    def forget(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None:
            self._masks.pop(fd, None)
            assert self._epoll is not None
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)

    def later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(time.monotonic() + delay, callback)
        heapq.heappush(self._timers, (timer.due, next(self._order), timer))
        return timer

    def _shut(self) -> None:
        self._stopping = True
        for held in list(self.held):
            try:
                held.close()
            except Exception:
                log.exception("%s: closing %r failed", self.name, held)
        self.held.clear()

    def _run(self) -> None:
        epoll = self._epoll
        assert epoll is not None
        poll = epoll.poll
        handlers = self._handlers
        wake = self._wake
        while not self._stopping:
            timeout = self._due_in() if self._timers else -1.0
            try:
                events = poll(timeout, 512)
            except InterruptedError:
                continue
            for fd, mask in events:
                if fd == wake:
                    self._drain_commands()
                    continue
                handler = handlers.get(fd)
                if handler is None:
                    continue
                try:
                    handler(mask)
                except Exception:  # a bug must not end every connection's relay
                    log.exception("%s: event on fd %d failed", self.name, fd)
            if self._timers:
                self._fire_timers()
        self._drain_commands()  # a listener closed while stopping is closed, not leaked
        self._handlers.clear()
        self._masks.clear()
        epoll.close()
        os.close(wake)

    def _drain_commands(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wake)
        commands = self._commands
        while commands:
            command = commands.popleft()
            try:
                command()
            except Exception:
                log.exception("%s: command failed", self.name)

    def _due_in(self) -> float:
        return max(0.0, self._timers[0][0] - time.monotonic())

    def _fire_timers(self) -> None:
        now = time.monotonic()
        timers = self._timers
        while timers and timers[0][0] <= now:
            timer = heapq.heappop(timers)[2]
            if not timer.cancelled:
                try:
                    timer.callback()
                except Exception:
                    log.exception("%s: timer failed", self.name)


_shared: Relay | None = None
_shared_lock = threading.Lock()


def shared_relay() -> Relay:
    """The process's relay for forwarders made without one (started on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Relay(name="mesh relay (shared)")
        return _shared
