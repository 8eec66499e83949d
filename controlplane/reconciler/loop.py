"""The reconcile loop: snapshot, plan, apply, wait; for as long as this manager leads.

`Reconciler(store, mirror, *, fencing_token, config, clock)` is one leader duty. The
manager starts the mirror (every manager has one), and when it wins an election starts
`run()` with the term's fencing token; when the term ends it cancels `run()` and calls
`stop()`. One pass:

1. take a snapshot of the mirror and the time (`clock`: wall seconds, like the
   timestamps agents write);
2. `plan(snapshot, now=..., config=...)` (pure);
3. apply the plan in fenced transactions (`applier`), then wait until the mirror has
   seen the last write, so that the next pass never plans from a view that lacks this
   pass's own writes (it would create every new task twice).

Then it waits for the mirror to change after the snapshot, or for the plan's
`next_wakeup`, whichever comes first; after a change it waits `debounce` seconds more so
that a burst of events costs one pass. A pass that fails (the store is down, a bug) is
logged and retried after `retry_delay`. A fence failure raises `NotLeader` out of
`run()`: the term is over, and the manager's leader loop knows what that means.

`metrics` holds plain counters (passes, ops, conflicts, latency) for the manager to
export; `on_pass(seconds)`, if given, is called after every pass that ran (e.g. the
API's `ManagerMetrics.reconcile_pass`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from controlplane.reconciler.applier import ApplyResult, NotLeader, apply_plan
from controlplane.reconciler.config import ReconcilerConfig
from controlplane.reconciler.plan import Plan
from controlplane.reconciler.planner import plan as default_planner
from controlplane.state import ClusterMirror, ClusterSnapshot
from discovery import Store

log = logging.getLogger(__name__)


class Planner(Protocol):
    def __call__(
        self, snapshot: ClusterSnapshot, *, now: float, config: ReconcilerConfig
    ) -> Plan: ...


@dataclass
class ReconcilerMetrics:
    """Counters since this reconciler was made; the manager exports them as it likes."""

    passes: int = 0
    failed_passes: int = 0
    ops_applied: int = 0
    conflicts: int = 0
    transactions: int = 0
    last_plan_ops: int = 0
    last_revision: int = 0  # the snapshot revision of the last pass
    last_pass_seconds: float = 0.0
    total_pass_seconds: float = 0.0


class Reconciler:
    """The leader's reconcile loop (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        mirror: ClusterMirror,
        *,
        fencing_token: int,
        config: ReconcilerConfig | None = None,
        clock: Callable[[], float] = time.time,
        planner: Planner = default_planner,
        on_pass: Callable[[float], None] | None = None,
    ) -> None:
        self._store = store
        self._mirror = mirror
        self._token = fencing_token
        self._config = config or ReconcilerConfig()
        self._clock = clock
        self._planner = planner
        self._on_pass = on_pass
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._running = False
        self.metrics = ReconcilerMetrics()

    @property
    def fencing_token(self) -> int:
        return self._token

    async def run(self) -> None:
        """Reconcile until `stop()`; raises `NotLeader` when a write is fenced off."""
        if self._running:
            raise RuntimeError("this reconciler is already running")
        self._running = True
        self._stopped.clear()
        try:
            if not await self._until(self._mirror.wait_synced()):
                return
            while not self._stopping.is_set():
                try:
                    after, wakeup = await self._pass()
                except NotLeader:
                    log.warning("reconciler: fenced off (term %d is over)", self._token)
                    raise
                except Exception:
                    self.metrics.failed_passes += 1
                    log.exception("reconciler: pass failed; retrying")
                    await self._until(asyncio.sleep(self._config.retry_delay))
                    continue
                await self._wait(after=after, wakeup=wakeup)
        finally:
            self._running = False
            self._stopped.set()

    async def stop(self) -> None:
        """Finish the current pass (if any) and return once `run()` has returned."""
        self._stopping.set()
        if self._running:
            await self._stopped.wait()

    # --- one pass ---------------------------------------------------------------------
    async def _pass(self) -> tuple[int, float | None]:
        started = self._clock()
        snapshot = self._mirror.snapshot()
        decided = self._planner(snapshot, now=started, config=self._config)
        result = ApplyResult()
        if decided.ops:
            log.info("reconciler: revision %d: %s", snapshot.revision, decided.summary())
            result = await apply_plan(
                self._store,
                decided,
                fencing_token=self._token,
                max_txn_items=self._config.max_txn_items,
            )
        for line in decided.unplaced:
            log.info("reconciler: not placed: %s", line)
        elapsed = self._clock() - started
        metrics = self.metrics
        metrics.passes += 1
        metrics.ops_applied += result.applied
        metrics.conflicts += result.conflicts
        metrics.transactions += result.transactions
        metrics.last_plan_ops = len(decided.ops)
        metrics.last_revision = snapshot.revision
        metrics.last_pass_seconds = elapsed
        metrics.total_pass_seconds += elapsed
        if self._on_pass is not None:
            self._on_pass(elapsed)
        if result.revision:
            await self._until(self._mirror.wait_for_revision(result.revision))
        return snapshot.revision, decided.next_wakeup

    # --- waiting ----------------------------------------------------------------------
    async def _wait(self, *, after: int, wakeup: float | None) -> None:
        timeout = None if wakeup is None else max(0.0, wakeup - self._clock())
        changed = await self._until(self._mirror.wait_changed(after), within=timeout)
        if changed and self._config.debounce > 0:
            await self._until(asyncio.sleep(self._config.debounce))

    async def _until(self, awaitable: Awaitable[object], *, within: float | None = None) -> bool:
        """Await `awaitable` unless stopped or `within` seconds pass first; True when it
        finished (its exception, if any, is raised)."""
        work = asyncio.ensure_future(awaitable)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait(
                {work, stopping}, timeout=within, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for future in (work, stopping):
                if not future.done():
                    future.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await future
        if work.cancelled():
            return False
        work.result()
        return True
