"""The manager's long-lived objects kept out of the garbage collector's way.

A manager holds the whole cluster in its mirror: at ten thousand tasks, a few hundred
thousand objects that live for as long as their documents do. Python's collector walks
every one of them on each full (oldest generation) collection, and while ten thousand
statuses stream in, those come often: measured on the convergence benchmark, the
manager spent more time in the collector than in everything else. Frozen objects
(`gc.freeze()`) are never walked, so the keeper freezes what is alive every
`freeze_every` seconds: a full collection then only walks what was made since.

The price of freezing: an object frozen while alive that later becomes unreachable
through a reference cycle (not by its count falling to zero, which frees it at once)
is not collected. So every `collect_every` seconds the keeper unfreezes everything and
runs one full collection, which bounds what such cycles can hold to what a few minutes
make. Both steps run on the event loop, between other work.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Seconds between freezes of what is alive.
FREEZE_EVERY = 2.0
#: Seconds between full collections over everything (unfreeze, collect, freeze).
COLLECT_EVERY = 300.0


class HeapKeeper:
    """`await run()` until cancelled; see the module docstring."""

    def __init__(
        self,
        *,
        freeze_every: float = FREEZE_EVERY,
        collect_every: float = COLLECT_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._freeze_every = freeze_every
        self._collect_every = collect_every
        self._clock = clock
        self._last_collect = clock()
        #: How many full collections over everything ran (and how many freezes).
        self.collections = 0
        self.freezes = 0

    def step(self) -> None:
        """One turn: a full collection when one is due, then a freeze."""
        now = self._clock()
        if now - self._last_collect >= self._collect_every:
            self._last_collect = now
            gc.unfreeze()
            started = time.perf_counter()
            found = gc.collect()
            self.collections += 1
            log.debug(
                "full collection: %d unreachable, %.3f s", found, time.perf_counter() - started
            )
        gc.freeze()
        self.freezes += 1

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self._freeze_every)
                self.step()
        finally:
            gc.unfreeze()  # a stopped manager leaves the process's collector as it was
