"""Restart policy: when a slot whose task ended on its own gets a new task.

A task is never started twice; a restart is a new task in the same slot. The policy
(`ServiceSpec.restart_policy`, swarm mode's) is read when the slot's newest wanted task
has ended and nothing else runs in the slot:

- `condition`: `none` never restarts; `on-failure` restarts unless the task completed
  (exit code 0); `any` always restarts.
- `delay`: the new task is created `delay` seconds after the old one ended (as its agent
  reported); until then the reconciler only asks to be woken at that time.
- `max_attempts` (0: unlimited): the slot's tasks that ended on their own (`complete`,
  `failed`, `rejected`), with the current spec, are its attempts. While there are at
  most `max_attempts` of them, another is allowed; beyond that the slot stays as it is
  (for `max_attempts` 2, a task that keeps exiting 1 gives exactly 3 tasks). A new spec
  gets a new budget. The history kept per slot is never smaller than the budget.
- `window` (0: forever): only attempts that ended within the last `window` seconds
  count; once the oldest of them leaves the window, the slot may restart again.

A task that stopped on request (`shutdown`) or was given up with its node (`orphaned`)
is not an attempt, and replacing a lost or drained task is not a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from controlplane.models import TaskState
from controlplane.models.service import RestartCondition, RestartPolicy
from controlplane.reconciler.view import TaskInfo


def restart_at(
    ended: TaskInfo,
    history: Sequence[TaskInfo],
    *,
    policy: RestartPolicy,
    now: float,
    is_current: Callable[[TaskInfo], bool],
) -> float | None:
    """When `ended` (the slot's newest task) is to be followed by a new one; None: never."""
    if policy.condition is RestartCondition.NONE:
        return None
    if policy.condition is RestartCondition.ON_FAILURE and ended.state is TaskState.COMPLETE:
        return None
    due = ended.finished_at + policy.delay
    if not policy.max_attempts:
        return due
    since = now - policy.window if policy.window else float("-inf")
    attempts = sorted(
        info.finished_at
        for info in history
        if info.exited and is_current(info) and info.finished_at >= since
    )
    excess = len(attempts) - policy.max_attempts
    if excess <= 0:
        return due
    if not policy.window:
        return None
    # Allowed again once `excess` of the attempts have left the window.
    return max(due, attempts[excess - 1] + policy.window)
