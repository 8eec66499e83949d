"""Rolling update: replacing a service's outdated tasks in batches, and what a failure does.

A service's spec changed when some slot is *outdated* (its task's spec is not the one
the service's spec gives now; see `taskspec`). The update's progress is kept nowhere but
in the tasks and in the record's `update_state`, so a new leader carries on where the
last one stopped. The settings are the spec's `update_config`, or its `rollback_config`
while rolling back:

- `parallelism` (0: all): at most this many slots are replaced per batch;
- a batch starts when no slot is in flight (a new task not running yet) and `delay`
  seconds have passed since the last new task started running;
- `order`: `stop-first` stops a slot's old task in the pass that creates its
  replacement; `start-first` stops it once the replacement runs (`slots`);
- `monitor`: a new task that fails before it runs, or within `monitor` seconds of
  running, is a failure of the update. With a healthcheck a task runs once healthy
  (`running_at`), so one that turns unhealthy before that fails the update however
  long its checks took, and one still `starting` `monitor` seconds after its
  healthcheck must have decided is a failure too (`health`). Only tasks made from the
  record's current `spec_version` count, so a new spec (or a rollback, which is a new
  version) starts with a clean slate, and no manager's clock is compared with another's;
- `max_failure_ratio`: failed slots over all slots above this triggers `failure_action`:
  `pause` stops starting batches (state `paused`), `continue` carries on, `rollback`
  writes the record back to `previous_spec` as a new version (state `rolling back`) and
  the rollback proceeds like an update, by `rollback_config`. A failing rollback
  pauses (`rollback paused`), unless that config's `failure_action` is `continue`
  (`rollback` there pauses: there is nothing further back to roll to).
  A manual rollback (the API's) writes the record in state `rolling back` too, so it is
  paced by `rollback_config` the same way; any other new spec clears a rollback's state
  (`next_version`), so it is an update again.
- Once nothing is outdated or in flight and the last new task has run for `monitor`
  seconds, the state is `completed` (`rolled back`).

A paused update stays paused while its failures are there to see; a new spec (a new
version) resumes it. Restarts and scaling go on while paused: they create
tasks with the current spec.
"""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.models.service import (
    COMPLETED,
    PAUSED,
    ROLLBACK_PAUSED,
    ROLLED_BACK,
    ROLLING_BACK,
    UPDATING,
    FailureAction,
    UpdateConfig,
    UpdateOrder,
)
from controlplane.reconciler.builder import PlanBuilder
from controlplane.reconciler.health import never_healthy
from controlplane.reconciler.slots import Slot, replace_for_update
from controlplane.reconciler.view import ServiceContext, TaskInfo

_ACTIVE = (UPDATING, ROLLING_BACK)
_PAUSED = (PAUSED, ROLLBACK_PAUSED)


def _describe(info: TaskInfo) -> str:
    status = info.status.status if info.status is not None else None
    detail = ""
    if status is not None:
        detail = status.error or status.message
        if status.exit_code is not None:
            detail = f"{detail} (exit code {status.exit_code})".strip()
    return f"task {info.id} {info.state.value}" + (f": {detail}" if detail else "")


class UpdateRun:
    """One service's update during one pass: `begin` before the slots, `advance` after."""

    def __init__(self, ctx: ServiceContext, slots: Sequence[Slot], *, out: PlanBuilder) -> None:
        self.ctx = ctx
        self.out = out
        record = ctx.record
        self.state = record.update_state
        self.message = record.update_message
        self.rolling_back = self.state in (ROLLING_BACK, ROLLBACK_PAUSED)
        self.config: UpdateConfig = (
            ctx.spec.rollback_config if self.rolling_back else ctx.spec.update_config
        )
        self.halted = False
        self.failures = self._failures(slots)
        self.slot_count = len(slots)

    # --- before the slots -------------------------------------------------------------
    def begin(self) -> bool:
        """Act on failures. True when the record was rolled back: skip this service now,
        the next pass plans against the restored spec."""
        if self.state in _PAUSED:
            if self.failures:
                self.halted = True
                return False
            self.state = ROLLING_BACK if self.rolling_back else UPDATING
            self.message = "update resumed"
        if self.state not in _ACTIVE or not self._failed():
            return False
        action = self.config.failure_action
        if action is FailureAction.CONTINUE:
            return False
        first = _describe(self.failures[0])
        previous = self.ctx.record.previous_spec
        if action is FailureAction.ROLLBACK and not self.rolling_back and previous is not None:
            self._roll_back(reason=first)
            return True
        self.state = ROLLBACK_PAUSED if self.rolling_back else PAUSED
        what = "rollback" if self.rolling_back else "update"
        self.message = f"{what} paused due to failure: {first}"
        self.halted = True
        return False

    # --- after the slots --------------------------------------------------------------
    def advance(self, slots: Sequence[Slot]) -> None:
        """Start the next batch if it is due, or complete the update; write the state."""
        if not self.halted:
            self._advance(slots)
        record = self.ctx.record
        if (self.state, self.message) != (record.update_state, record.update_message):
            changed = record.model_copy(
                update={"update_state": self.state, "update_message": self.message}
            )
            self.out.update_record(self.ctx.stored, changed, reason=self.state or "update state")

    def _advance(self, slots: Sequence[Slot]) -> None:
        now = self.out.view.now
        outdated = [slot for slot in slots if slot.outdated and slot.can_create]
        in_flight = any(slot.in_flight for slot in slots)
        if self.state not in _ACTIVE:
            if not outdated:
                return
            self.state, self.message = UPDATING, "update in progress"
        last_started = self._last_started(slots)
        if outdated:
            if in_flight:
                return
            due = now if last_started is None else last_started + self.config.delay
            if due > now:
                self.out.wake_at(due)
                return
            size = self.config.parallelism or len(outdated)
            stop_first = self.config.order is UpdateOrder.STOP_FIRST
            for slot in outdated[:size]:
                replace_for_update(slot, ctx=self.ctx, out=self.out, stop_first=stop_first)
            return
        if in_flight:
            return
        done = now if last_started is None else last_started + self.config.monitor
        if done > now:
            self.out.wake_at(done)
            return
        if self.rolling_back:
            self.state, self.message = ROLLED_BACK, "rollback completed"
        else:
            self.state, self.message = COMPLETED, "update completed"

    # --- helpers ----------------------------------------------------------------------
    def _new_tasks(self, slots: Sequence[Slot]) -> list[TaskInfo]:
        """The tasks made from the current spec version."""
        version = self.ctx.record.spec_version
        return [info for slot in slots for info in slot.tasks if info.task.spec_version == version]

    def _failures(self, slots: Sequence[Slot]) -> list[TaskInfo]:
        """The first failed new task of each slot that has one, newest first."""
        monitor = self.config.monitor
        version = self.ctx.record.spec_version
        found = []
        for slot in slots:
            for info in slot.tasks:
                if info.task.spec_version != version:
                    continue
                if not info.failed:
                    if never_healthy(info, monitor=monitor, out=self.out):
                        found.append(info)
                        break
                    continue
                ran = info.running_at
                if ran is None or info.finished_at - ran < monitor:
                    found.append(info)
                    break
        return found

    def _failed(self) -> bool:
        ratio = len(self.failures) / max(1, self.slot_count)
        return bool(self.failures) and ratio > self.config.max_failure_ratio

    def _last_started(self, slots: Sequence[Slot]) -> float | None:
        started = [
            info.running_at
            for info in self._new_tasks(slots)
            if info.running and info.running_at is not None
        ]
        return max(started, default=None)

    def _roll_back(self, *, reason: str) -> None:
        record = self.ctx.record
        assert record.previous_spec is not None
        rolled = record.model_copy(
            update={
                "spec": record.previous_spec,
                "previous_spec": record.spec,
                "spec_version": record.spec_version + 1,
                "updated": self.out.view.now,
                "update_state": ROLLING_BACK,
                "update_message": f"update rolled back due to failure: {reason}",
            }
        )
        self.out.update_record(self.ctx.stored, rolled, reason="rollback")
