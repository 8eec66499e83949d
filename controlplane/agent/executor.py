"""The executor: makes the runtime do what the node's tasks say, and reports what happens.

It follows `tasks/<node-id>/`: a listing, then a watch from the listing's revision + 1
(after `RevisionCompacted`: a new listing, diffed against what it knew). For each task:

- desired running: report `starting` (queued, not waited for), `runtime.ensure(task)`,
  then what the runtime observes (`running` with its container id and endpoints).
  `TaskRejected` is reported `rejected` with the reason;
- desired shutdown: `runtime.stop(task, grace)`, then `shutdown`;
- key deleted: `runtime.remove(task)`, and its status key goes too.

The runtime's `changes()` name units that started or exited; the executor observes them
and reports `complete` or `failed` with the exit code. A unit that failed while it still
runs (an unhealthy container: `needs_stop`) is reported failed and then stopped. A task
that reached a final state is never started again: replacing it is the reconciler's
decision, with a new task.

Every `resync_interval` (and at start, before anything else) the executor lists the
runtime's units and compares: a unit whose task exists is adopted as it is (never
restarted: an agent restarted while its containers run takes them back, same ids); a
unit of this cluster whose task is gone is removed; a task whose unit vanished is
reported failed. Units without this cluster's label are never touched.

Work on one task is serialised by a worker per task that acts on the task's *latest*
state (a burst of changes costs one pass), while different tasks proceed concurrently
up to `concurrency` at once. A listing is only as fresh as the moment it was asked
for: each carries the generation (count of finished runtime actions) its task had
then, and it is dropped, and the unit observed again, if the task's worker acted since,
whether it arrives during the action, after it, or just before it and is read after.
A unit is declared gone only when two listings asked after the last action lack it,
the second asked once the worker had read the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pydantic import ValidationError

from controlplane import keys
from controlplane.agent.backoff import Backoff, jittered
from controlplane.agent.runtime import Observed, Runtime, TaskRejected
from controlplane.agent.status import StatusReporter
from controlplane.models import Task, TaskState, TaskStatus
from controlplane.models.task import DesiredState
from discovery import (
    Event,
    EventType,
    Listing,
    RevisionCompacted,
    Store,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Order of the states a task passes through before it is final; reports never go back.
_PROGRESS = {
    TaskState.NEW: 0,
    TaskState.PENDING: 1,
    TaskState.ASSIGNED: 2,
    TaskState.PREPARING: 3,
    TaskState.STARTING: 4,
    TaskState.RUNNING: 5,
}
#: Unit changes arriving within this window are observed together.
CHANGE_BATCH_WINDOW = 0.02


class TaskWatch(Protocol):
    """Where the executor's task events come from: the store, or a fleet's shared watch."""

    def watch(self, prefix: str, *, start_revision: int) -> AsyncIterator[Event]: ...


def _cancelling() -> bool:
    """True when the running task is being cancelled (an exception may hide that)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _progress(status: TaskStatus | None) -> int:
    if status is None:
        return -1
    return _PROGRESS.get(status.state, len(_PROGRESS))


@dataclass(frozen=True, slots=True)
class _Asked:
    """A listing of the runtime as it was asked for: its number, and every slot's
    generation at that moment (the listing says nothing about later actions)."""

    number: int
    generations: dict[str, int]


@dataclass(frozen=True, slots=True)
class _Sighting:
    """What one listing said about a task's unit; None: the listing had no unit for it."""

    unit: Observed | None
    generation: int  # the slot's generation when the listing was asked
    listing: int  # the listing's number


@dataclass(eq=False)
class _Slot:
    """What the executor knows about one task id, and its worker."""

    task_id: str
    task: Task | None = None  # None: the key is gone (or never existed): remove the unit
    reported: TaskStatus | None = None  # the last status written (or found at start)
    sighting: _Sighting | None = None  # the latest listing's word, not yet acted on
    absent: _Sighting | None = None  # a listing without its unit, awaiting a second one
    dirty: bool = False
    busy: bool = False  # a runtime action is in progress
    generation: int = 0  # counts finished runtime actions
    recheck: bool = False  # an observation arrived while busy: observe again after
    removed: bool = False
    worker: asyncio.Task[None] | None = None


class Executor:
    """Runs the tasks of one node on one runtime."""

    def __init__(
        self,
        store: Store,
        runtime: Runtime,
        *,
        node_id: str,
        cluster_id: str,
        reporter: StatusReporter,
        resync_interval: float = 10.0,
        concurrency: int = 16,
        op_timeout: float = 10.0,
        task_watch: TaskWatch | None = None,  # None: the store's own watch
    ) -> None:
        self._store = store
        self._task_watch: TaskWatch = task_watch or store
        self._runtime = runtime
        self.node_id = node_id
        self.cluster_id = cluster_id
        self._reporter = reporter
        self._resync_interval = resync_interval
        self._limit = asyncio.Semaphore(concurrency)
        self._op_timeout = op_timeout
        self._prefix = keys.node_tasks(node_id)
        self._slots: dict[str, _Slot] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._changed: set[str] = set()
        self._changed_event = asyncio.Event()
        self._listings = 0  # listings of the runtime asked for so far
        self.ready = asyncio.Event()  # set once the first listing and resync are done
        # Workers wait for the statuses of the listed tasks: a worker that ran before
        # would take a running task for a new one and report it starting again.
        self._loaded = asyncio.Event()

    # --- the loops ----------------------------------------------------------------------
    async def run(self) -> None:
        """List, adopt what runs, then follow the tasks and the runtime until cancelled."""
        try:
            listing = await self._list()
            self._apply_listing(listing)
            await self._load_reported()
            self._loaded.set()
            await self._resync()
            self.ready.set()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._follow_tasks(listing.revision + 1))
                group.create_task(self._follow_changes())
                group.create_task(self._observe_changed())
                group.create_task(self._resync_periodically())
        finally:
            workers = list(self._workers)
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _list(self) -> Listing:
        backoff = Backoff(first=0.2, cap=5.0)
        while True:
            try:
                return await self._bounded(self._store.list(self._prefix))
            except (StoreUnavailable, TimeoutError) as exc:
                log.info("node %s cannot list its tasks yet: %s", self.node_id, exc)
                await asyncio.sleep(backoff.next_delay())

    async def _follow_tasks(self, start: int) -> None:
        backoff = Backoff(first=0.2, cap=5.0)
        while True:
            try:
                async for event in self._task_watch.watch(self._prefix, start_revision=start):
                    start = event.revision + 1
                    self._on_event(event)
                    backoff.reset()
            except RevisionCompacted as exc:
                log.warning("node %s: task watch compacted (%s); listing again", self.node_id, exc)
                listing = await self._list()
                self._apply_listing(listing)
                start = listing.revision + 1
            except StoreUnavailable as exc:
                delay = backoff.next_delay()
                log.info("node %s: task watch interrupted (%s); resuming", self.node_id, exc)
                await asyncio.sleep(delay)
            except Exception:  # a backend's bug must not end the node: start afresh
                if _cancelling():
                    raise
                log.exception("node %s: task watch failed; listing again", self.node_id)
                await asyncio.sleep(backoff.next_delay())
                listing = await self._list()
                self._apply_listing(listing)
                start = listing.revision + 1

    async def _follow_changes(self) -> None:
        backoff = Backoff(first=0.5, cap=10.0)
        while True:
            try:
                async for task_id in self._runtime.changes():
                    self._want_observe(task_id)
                    backoff.reset()
            except Exception as exc:
                if _cancelling():
                    raise
                log.warning("node %s: runtime change feed failed: %s", self.node_id, exc)
            await asyncio.sleep(backoff.next_delay())

    async def _observe_changed(self) -> None:
        while True:
            await self._changed_event.wait()
            await asyncio.sleep(CHANGE_BATCH_WINDOW)
            self._changed_event.clear()
            wanted, self._changed = self._changed, set()
            await self._observe(wanted)

    async def _resync_periodically(self) -> None:
        while True:
            await asyncio.sleep(jittered(self._resync_interval, 0.1))
            await self._resync()

    # --- what the store says ------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        try:
            node_id, task_id = keys.split_task_key(event.key)
        except ValueError:
            return
        if node_id != self.node_id or "/" in task_id:
            return
        if event.type is EventType.DELETE:
            self._set_task(task_id, None)
        elif event.value is not None:
            task = self._parse(task_id, event.value)
            if task is not None:
                self._set_task(task_id, task)

    def _apply_listing(self, listing: Listing) -> None:
        listed: set[str] = set()
        for kv in listing.items:
            try:
                node_id, task_id = keys.split_task_key(kv.key)
            except ValueError:
                continue
            if node_id != self.node_id or "/" in task_id:
                continue
            listed.add(task_id)
            task = self._parse(task_id, kv.value)
            if task is not None:
                self._set_task(task_id, task)
        for task_id, slot in list(self._slots.items()):
            if slot.task is not None and task_id not in listed:
                self._set_task(task_id, None)

    def _parse(self, task_id: str, raw: bytes) -> Task | None:
        """The task in `raw`, or None (logged) when it is not one: such a key is ignored."""
        try:
            task = Task.load(raw)
        except ValidationError as exc:
            log.error(
                "node %s: task %s is not a valid task document: %s", self.node_id, task_id, exc
            )
            return None
        if task.id != task_id:
            log.error("node %s: task key %s holds task %s", self.node_id, task_id, task.id)
            return None
        return task

    def _set_task(self, task_id: str, task: Task | None) -> None:
        slot = self._slots.get(task_id)
        if slot is None:
            if task is None:
                return  # nothing known, nothing to remove (a resync finds stray units)
            slot = self._slots[task_id] = _Slot(task_id)
        elif slot.task == task and task is not None:
            return
        slot.task = task
        slot.removed = False  # written again while its removal was under way
        self._mark(slot)

    async def _load_reported(self) -> None:
        """Read the statuses of the listed tasks: where each one was when we last looked."""
        limit = asyncio.Semaphore(32)

        async def load(slot: _Slot) -> None:
            async with limit:
                kv = await self._retrying(lambda: self._store.get(keys.status(slot.task_id)))
            if kv is None:
                return
            try:
                slot.reported = TaskStatus.load(kv.value)
            except ValidationError:
                log.warning("node %s: unreadable status of task %s", self.node_id, slot.task_id)

        await asyncio.gather(*(load(slot) for slot in list(self._slots.values())))

    # --- what the runtime says ----------------------------------------------------------
    def _want_observe(self, task_id: str) -> None:
        self._changed.add(task_id)
        self._changed_event.set()

    async def _observe(self, task_ids: set[str]) -> None:
        asked = self._ask()
        units = await self._units()
        if units is None:  # the runtime did not answer: ask again shortly
            await asyncio.sleep(1.0)
            self._changed |= task_ids
            self._changed_event.set()
            return
        for task_id in task_ids:
            unit = units.get(task_id)
            slot = self._slots.get(task_id)
            if slot is None:
                if unit is not None:
                    self._adopt_stray(unit, asked)
                continue
            self._deliver(slot, unit, asked)

    async def _resync(self) -> None:
        asked = self._ask()
        units = await self._units()
        if units is None:
            return
        for task_id, unit in units.items():
            slot = self._slots.get(task_id)
            if slot is None:
                self._adopt_stray(unit, asked)
            else:
                self._deliver(slot, unit, asked)
        for task_id, slot in list(self._slots.items()):
            if task_id not in units:
                self._deliver(slot, None, asked)

    def _ask(self) -> _Asked:
        """Number a listing about to be asked for, and note every slot's generation."""
        self._listings += 1
        generations = {tid: slot.generation for tid, slot in self._slots.items()}
        return _Asked(self._listings, generations)

    async def _units(self) -> dict[str, Observed] | None:
        """This cluster's units on this node, by task id; None if the runtime failed."""
        try:
            observed = await self._bounded(self._runtime.observe())
        except Exception as exc:
            log.warning("node %s: cannot observe the runtime: %s", self.node_id, exc)
            return None
        return {unit.task_id: unit for unit in observed if unit.cluster_id == self.cluster_id}

    def _adopt_stray(self, unit: Observed, asked: _Asked) -> None:
        if unit.task_id in asked.generations:
            return  # its slot was removed since the listing was asked: the unit went with it
        log.info(
            "node %s: unit %s of task %s has no task any more; removing it",
            self.node_id,
            unit.container_id[:12],
            unit.task_id,
        )
        slot = self._slots[unit.task_id] = _Slot(unit.task_id)
        self._mark(slot)

    def _deliver(self, slot: _Slot, unit: Observed | None, asked: _Asked) -> None:
        if slot.busy:
            slot.recheck = True  # taken while it was acting: look again once it is done
            return
        generation = asked.generations.get(slot.task_id)
        if generation != slot.generation:  # asked before an action that has finished since
            self._want_observe(slot.task_id)
            return
        if slot.sighting is not None and slot.sighting.listing > asked.number:
            return  # a later listing's word is already waiting
        slot.sighting = _Sighting(unit, generation, asked.number)
        self._mark(slot)

    # --- the per-task workers -----------------------------------------------------------
    def _mark(self, slot: _Slot) -> None:
        slot.dirty = True
        if slot.worker is None:
            slot.worker = asyncio.create_task(self._work(slot), name=f"task-{slot.task_id}")
            self._workers.add(slot.worker)
            slot.worker.add_done_callback(self._workers.discard)

    async def _work(self, slot: _Slot) -> None:
        await self._loaded.wait()
        try:
            while slot.dirty:
                slot.dirty = False
                async with self._limit:
                    try:
                        await self._step(slot)
                    except Exception:
                        log.exception("node %s: task %s failed a step", self.node_id, slot.task_id)
        finally:
            slot.worker = None
            if slot.removed and self._slots.get(slot.task_id) is slot:
                del self._slots[slot.task_id]

    async def _step(self, slot: _Slot) -> None:
        task = slot.task
        sighting = self._take_sighting(slot)
        unit = sighting.unit if sighting is not None else None
        if task is None:
            await self._remove(slot)
        elif unit is not None and unit.needs_stop:
            await self._stop_failed(slot, task, unit)
        elif task.desired_state is DesiredState.SHUTDOWN:
            await self._shut_down(slot, task, unit)
        else:
            await self._keep_running(slot, task, sighting)

    def _take_sighting(self, slot: _Slot) -> _Sighting | None:
        """The listing's word delivered since the last step, if it still holds.

        It was current when delivered, but the worker may have acted since (a sighting
        delivered while the worker awaited a report, just before it started the unit):
        then it is dropped and the unit observed again.
        """
        sighting, slot.sighting = slot.sighting, None
        if sighting is None:
            return None
        if sighting.generation != slot.generation:
            self._want_observe(slot.task_id)
            return None
        if sighting.unit is not None:
            slot.absent = None
        return sighting

    def _gone(self, slot: _Slot, sighting: _Sighting) -> bool:
        """True once a second listing, asked after the first was read, lacks the unit too.

        Both were asked after the worker's last action (their generation is current).
        The first absence asks for the second listing.
        """
        first = slot.absent
        if first is not None and first.generation == sighting.generation:
            if sighting.listing > first.listing:
                return True
        else:
            slot.absent = _Sighting(None, sighting.generation, self._listings)
        self._want_observe(slot.task_id)  # (again, if this one was older than asked for)
        return False

    async def _keep_running(self, slot: _Slot, task: Task, sighting: _Sighting | None) -> None:
        unit = sighting.unit if sighting is not None else None
        reported = slot.reported
        if reported is not None and reported.state.terminal:
            await self._stop_leftover(slot, task, unit)  # final: never restarted here
            return
        if unit is not None and unit.state is not TaskState.STARTING:
            await self._report_unit(slot, unit)
            return
        # no unit, or one that never finished starting (an agent killed mid-start): ensure
        if unit is None and reported is not None and reported.state is TaskState.RUNNING:
            if sighting is not None and self._gone(slot, sighting):
                await self._report(
                    slot,
                    TaskState.FAILED,
                    message="its unit disappeared from the runtime",
                    error="unit not found",
                )
            return
        # Not waited for: the start does not wait on the store (a slow store would hold
        # every start up by one write), and on a quick runtime `starting` and `running`
        # usually land as one write, of `running`. The order still holds: a task's
        # statuses are written one after another (`StatusReporter`). No `preparing`:
        # `ensure` pulls, creates and starts in one call, so there is no step of its own
        # to report (it was overwritten by `starting` within the same moment).
        if _progress(reported) < _PROGRESS[TaskState.STARTING]:
            await self._report(slot, TaskState.STARTING, wait=False)
        try:
            async with self._acting(slot):
                unit = await self._runtime.ensure(task)
        except TaskRejected as exc:
            await self._report(slot, TaskState.REJECTED, message="rejected", error=str(exc))
            return
        except Exception as exc:
            log.warning("node %s: task %s could not start: %s", self.node_id, task.id, exc)
            await self._report(slot, TaskState.FAILED, message="could not start", error=str(exc))
            return
        await self._report_unit(slot, unit)

    async def _stop_failed(self, slot: _Slot, task: Task, unit: Observed) -> None:
        """A unit that failed while still running (unhealthy): report it, then stop it.

        Reported first, so that the reconciler starts the replacement while this one
        takes its grace period to stop. Its status stays the failure, not `shutdown`.
        """
        await self._report_unit(slot, unit)
        try:
            async with self._acting(slot):
                await self._runtime.stop(task.id, grace=task.spec.stop_grace_seconds)
        except Exception as exc:
            log.warning(
                "node %s: failed task %s could not be stopped: %s", self.node_id, task.id, exc
            )

    async def _stop_leftover(self, slot: _Slot, task: Task, unit: Observed | None) -> None:
        """Stop a unit still alive under a task already reported final, keeping that status.

        A final task has a successor (or none is wanted); its unit running on would put
        its slot twice on the cluster. It happens when a start failed after the unit was
        created, or a status was written by an agent that lost sight of its unit.
        """
        if unit is None or unit.state.terminal:
            return
        log.info(
            "node %s: task %s is %s but its unit still runs; stopping it",
            self.node_id,
            task.id,
            slot.reported.state.value if slot.reported is not None else "final",
        )
        try:
            async with self._acting(slot):
                await self._runtime.stop(task.id, grace=task.spec.stop_grace_seconds)
        except Exception as exc:
            log.warning("node %s: task %s could not be stopped: %s", self.node_id, task.id, exc)

    async def _shut_down(self, slot: _Slot, task: Task, unit: Observed | None) -> None:
        if slot.reported is not None and slot.reported.state.terminal:
            await self._stop_leftover(slot, task, unit)
            return
        try:
            async with self._acting(slot):
                unit = await self._runtime.stop(task.id, grace=task.spec.stop_grace_seconds)
        except Exception as exc:
            log.warning("node %s: task %s could not be stopped: %s", self.node_id, task.id, exc)
            return  # the next resync tries again
        await self._report(slot, TaskState.SHUTDOWN, unit=unit, message="shut down as desired")

    async def _remove(self, slot: _Slot) -> None:
        try:
            async with self._acting(slot):
                await self._runtime.remove(slot.task_id)
        except Exception as exc:
            log.warning(
                "node %s: unit of task %s could not be removed: %s", self.node_id, slot.task_id, exc
            )
            return  # still a stray: the next resync tries again
        await self._reporter.forget(slot.task_id)
        slot.removed = True

    @contextlib.asynccontextmanager
    async def _acting(self, slot: _Slot) -> AsyncIterator[None]:
        slot.busy = True
        try:
            yield
        finally:
            slot.busy = False
            slot.generation += 1
            if slot.recheck:
                slot.recheck = False
                self._want_observe(slot.task_id)

    # --- reporting ----------------------------------------------------------------------
    async def _report_unit(self, slot: _Slot, unit: Observed) -> None:
        """Report what the runtime observed, unless it would take the status backwards."""
        current = slot.reported
        if current is not None and current.state.terminal:
            return
        if not unit.state.terminal:
            ahead = _PROGRESS.get(unit.state, -1) > _progress(current)
            replaced = (
                current is not None
                and unit.state is current.state
                and unit.container_id != current.container_id
            )
            if not (ahead or replaced):
                return
        await self._report(slot, unit.state, unit=unit, message=unit.message)

    async def _report(
        self,
        slot: _Slot,
        state: TaskState,
        *,
        unit: Observed | None = None,
        message: str = "",
        error: str = "",
        wait: bool = True,
    ) -> None:
        previous = slot.reported
        now = time.time()
        running_at = previous.running_at if previous else None
        if state is TaskState.RUNNING and running_at is None:
            running_at = now
        status = TaskStatus(
            task_id=slot.task_id,
            state=state,
            container_id=unit.container_id if unit else (previous.container_id if previous else ""),
            endpoints=list(unit.endpoints) if unit else [],
            exit_code=unit.exit_code if unit else None,
            message=message,
            error=error,
            timestamp=now,
            started_at=unit.started_at if unit else (previous.started_at if previous else None),
            running_at=running_at,
            finished_at=unit.finished_at if unit else None,
        )
        slot.reported = status
        if state in (TaskState.FAILED, TaskState.REJECTED):  # what an operator looks for
            log.info(
                "node %s: task %s %s: %s%s",
                self.node_id,
                slot.task_id,
                state.value,
                message or "no message",
                f" ({error})" if error else "",
            )
        if wait:
            await self._reporter.report(status)
        else:
            self._reporter.report_soon(status)

    # --- helpers ------------------------------------------------------------------------
    async def _bounded(self, call: Awaitable[T]) -> T:
        async with asyncio.timeout(self._op_timeout):  # not wait_for: it can lose a cancel
            return await call

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        backoff = Backoff(first=0.2, cap=5.0)
        while True:
            try:
                return await self._bounded(call())
            except (StoreUnavailable, TimeoutError) as exc:
                log.info("node %s: store call failed (%s); retrying", self.node_id, exc)
                await asyncio.sleep(backoff.next_delay())
