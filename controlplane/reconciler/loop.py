"""The reconcile loop: snapshot, plan, apply, wait; for as long as this manager leads.

`Reconciler(store, mirror, *, fencing_token, config, clock)` is one leader duty. The
manager starts the mirror (every manager has one), and when it wins an election starts
`run()` with the term's fencing token; when the term ends it cancels `run()` and calls
`stop()`. One pass:

1. take a snapshot of the mirror and the time (`clock`: wall seconds, like the
   timestamps agents write), and ask the mirror which services' inputs changed since
   the last pass's snapshot;
2. `plan(snapshot, now=..., config=..., services=...)` (pure, so it runs in a worker
   thread and the manager's API keeps answering during a long pass): a *full* pass (every
   service) first, whenever something that concerns every service changed (a node, a
   node spec), when a wake-up asked for by an earlier plan is due, and at least every
   `full_pass_interval`; otherwise a pass over the changed services, and every
   service with a pending task (a change may have freed room for it); none changed: no
   pass. The plan stays a pure function; only the choice of what to
   re-plan is incremental;
3. apply the plan in fenced transactions (`applier`), then wait until the mirror has
   seen the last write, so that the next pass never plans from a view that lacks this
   pass's own writes (it would create every new task twice).

Then it waits for the mirror to change after the snapshot, or for the plan's
`next_wakeup` (or the next full pass), whichever comes first; after a change it waits
`debounce` seconds more, and at least `pace` times the last pass's duration, so that a
burst of events costs one pass and a stream of them cannot keep the leader planning
back to back. A pass that fails (the store is down, a bug) is
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
from collections.abc import Awaitable, Callable, Collection
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
        self,
        snapshot: ClusterSnapshot,
        *,
        now: float,
        config: ReconcilerConfig,
        services: Collection[str] | None = None,
    ) -> Plan: ...


@dataclass
class ReconcilerMetrics:
    """Counters since this reconciler was made; the manager exports them as it likes."""

    passes: int = 0
    full_passes: int = 0  # of `passes`, those that planned every service
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
        self._planned_through: int | None = None  # the last pass's snapshot revision
        self._last_full = 0.0
        self._due: float | None = None  # the earliest wake-up any plan asked for

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
    def _scope(self, now: float) -> frozenset[str] | None:
        """The services to re-plan now; None: every one (a full pass)."""
        if self._planned_through is None:
            return None
        if self._due is not None and now >= self._due:
            return None
        if now - self._last_full >= self._config.full_pass_interval:
            return None
        changed = self._mirror.changed_services(self._planned_through)
        if changed:
            # whatever changed may have freed room: pending tasks of any service may fit
            changed |= self._mirror.pending_services()
        return changed

    def _next_wakeup(self) -> float:
        full = self._last_full + self._config.full_pass_interval
        return full if self._due is None else min(self._due, full)

    async def _pass(self) -> tuple[int, float | None]:
        started = self._clock()
        snapshot = self._mirror.snapshot()
        scope = self._scope(started)
        if scope is not None and not scope:  # nothing any service depends on changed
            self._planned_through = self.metrics.last_revision = snapshot.revision
            return snapshot.revision, self._next_wakeup()
        # In a worker thread: the planner is pure and reads only the snapshot, and a pass
        # over ten thousand tasks must not hold the manager's API up for its duration.
        decided = await asyncio.to_thread(
            self._planner, snapshot, now=started, config=self._config, services=scope
        )
        result = ApplyResult()
        if decided.ops:
            log.info("reconciler: revision %d: %s", snapshot.revision, decided.summary())
            result = await apply_plan(
                self._store,
                decided,
                fencing_token=self._token,
                max_txn_items=self._config.txn_items(self._store.max_txn_ops),
                expect=self._mirror.expect,
            )
        elapsed = self._clock() - started
        metrics = self.metrics
        metrics.passes += 1
        if scope is None:
            metrics.full_passes += 1
            self._last_full = started
            self._due = decided.next_wakeup
        elif decided.next_wakeup is not None:
            self._due = min(self._due or decided.next_wakeup, decided.next_wakeup)
        self._planned_through = snapshot.revision
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
        self._mirror.clear_expected()
        return snapshot.revision, self._next_wakeup()

    # --- waiting ----------------------------------------------------------------------
    async def _wait(self, *, after: int, wakeup: float | None) -> None:
        timeout = None if wakeup is None else max(0.0, wakeup - self._clock())
        changed = await self._until(self._mirror.wait_changed(after), within=timeout)
        pause = max(self._config.debounce, self._config.pace * self.metrics.last_pass_seconds)
        if changed and pause > 0:
            await self._until(asyncio.sleep(pause))

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
