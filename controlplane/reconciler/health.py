"""Task health, as a rolling update judges it: a new task that never becomes healthy.

A task whose container has a healthcheck reports `starting` until the check passes. The
engine itself turns a failing check into `unhealthy` (the task fails) within a bounded
time: the start period, then `retries` probes, each at most `interval` apart and taking
at most `timeout`. A task still `starting` well after that (its agent or engine stuck,
or a check that hangs past its timeout) would hold a rolling update forever, since the
next batch waits for it; so once `monitor` seconds have passed beyond that bound it
counts as a failure of the update, and `failure_action` decides what happens.

Only the task's own healthcheck gives a bound; with none (or the image's own, which the
spec does not know) the engine's `unhealthy` verdict is the only signal.
"""

from __future__ import annotations

from controlplane.models import HealthCheck, TaskState
from controlplane.reconciler.builder import PlanBuilder
from controlplane.reconciler.view import TaskInfo


def decided_within(check: HealthCheck) -> float:
    """Seconds after its start by which the engine has called a container healthy or not."""
    probe = check.interval_seconds + check.timeout_seconds
    return check.start_period_seconds + (check.retries + 1) * probe


def never_healthy(info: TaskInfo, *, monitor: float, out: PlanBuilder) -> bool:
    """True when the live task `info` is still starting past its health deadline plus
    `monitor`; before that, asks to be woken at that moment."""
    check = info.task.spec.healthcheck
    if check is None or check.disabled or not info.live or info.state is not TaskState.STARTING:
        return False
    status = info.status.status if info.status is not None else None
    began = status.started_at if status is not None and status.started_at else info.created
    deadline = began + decided_within(check) + monitor
    if out.view.now >= deadline:
        return True
    out.wake_at(deadline)
    return False
