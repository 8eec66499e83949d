"""Rolling updates and task health: a new task that never becomes healthy fails the update.

With a healthcheck, a task is `running` only once healthy. What users care about, as in
swarm mode: an update to a spec whose tasks turn unhealthy is a failed update (and
`failure_action: rollback` rolls it back) however long the checks took to decide; a task
stuck `starting` long after its checks must have decided fails it too; a task that ran
healthy for the whole `monitor` period and failed later does not; and the monitor period
counts from when the task became healthy, not from when its container started.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from controlplane import keys
from controlplane.models import HealthCheck, Task, TaskState, TaskStatus
from controlplane.models.task import DesiredState
from controlplane.reconciler.health import decided_within
from tests.reconciler.world import World

CHECK = HealthCheck(
    test=["CMD-SHELL", "test -e /ready"], interval_seconds=2, timeout_seconds=1, retries=2
)
MONITOR = 5.0


def updating(*, failure_action: str = "rollback") -> tuple[World, Task]:
    """One replica of nginx:1, updated to nginx:2 with a healthcheck; its new task."""
    world = World()
    world.add_node("n1")
    config = {"failure_action": failure_action, "monitor": MONITOR}
    world.create_service("web", update_config=config)
    world.settle()
    world.now += 1
    world.update_service("web", image="nginx:2", healthcheck=CHECK.model_dump())
    world.step()
    for task in world.tasks("web"):
        if task.desired_state is DesiredState.SHUTDOWN:
            world.report(task.id, TaskState.SHUTDOWN)
    (new,) = [t for t in world.live("web") if t.spec.image == "nginx:2"]
    assert new.spec.healthcheck == CHECK  # the healthcheck travels with the task
    return world, new


def report(
    world: World,
    task: Task,
    state: TaskState,
    *,
    started_at: float,
    running_at: float | None = None,
    message: str = "",
) -> None:
    status = TaskStatus(
        task_id=task.id,
        state=state,
        message=message,
        timestamp=world.now,
        started_at=started_at,
        running_at=running_at,
        finished_at=world.now if state.terminal else None,
    )
    world.put(keys.status(task.id), status)


@dataclass(frozen=True)
class Story:
    """What the new task's agent reports, seconds after its container started."""

    healthy_after: float | None  # None: never healthy
    failed_after: float | None  # None: never fails (unhealthy)
    rolled_back: bool


STORIES = {
    # Checks that took 60 s to decide "unhealthy": far longer than `monitor`, still a
    # failure, because the task never ran.
    "unhealthy after slow checks": Story(None, 60.0, rolled_back=True),
    "unhealthy at once": Story(None, 1.0, rolled_back=True),
    "healthy, then unhealthy within monitor": Story(10.0, 10.0 + MONITOR - 1, rolled_back=True),
    "healthy for the monitor period, then unhealthy": Story(10.0, 10.0 + MONITOR + 1, False),
    "healthy after a long start": Story(60.0, None, rolled_back=False),
}


@pytest.mark.parametrize("story", list(STORIES.values()), ids=list(STORIES))
def test_an_update_whose_task_is_unhealthy_rolls_back(story: Story) -> None:
    world, task = updating()
    started = world.now
    report(world, task, TaskState.STARTING, started_at=started)
    events = [(story.healthy_after, TaskState.RUNNING), (story.failed_after, TaskState.FAILED)]
    for after, state in sorted((a, s) for a, s in events if a is not None):
        world.now = started + after
        running_at = started + story.healthy_after if story.healthy_after is not None else None
        message = "unhealthy container" if state is TaskState.FAILED else ""
        report(world, task, state, started_at=started, running_at=running_at, message=message)
        world.step()

    record = world.record("web")
    if story.rolled_back:
        assert record.update_state == "rolling back"
        assert record.spec.image == "nginx:1"
        assert f"task {task.id} failed: unhealthy container" in record.update_message
    else:
        assert record.update_state in ("updating", "completed")
        assert record.spec.image == "nginx:2"


def test_a_task_stuck_starting_past_its_health_deadline_fails_the_update() -> None:
    world, task = updating()
    started = world.now
    report(world, task, TaskState.STARTING, started_at=started)
    deadline = started + decided_within(CHECK) + MONITOR
    assert decided_within(CHECK) == 3 * (2 + 1)  # (retries + 1) probes of interval + timeout

    decided = world.step()
    assert decided.next_wakeup == deadline  # the planner comes back to look
    world.now = deadline - 0.5
    world.step()
    assert world.record("web").update_state == "updating"

    world.now = deadline
    world.step()
    record = world.record("web")
    assert record.update_state == "rolling back"
    assert f"task {task.id} starting" in record.update_message


def test_a_stuck_task_pauses_with_failure_action_pause() -> None:
    world, task = updating(failure_action="pause")
    report(world, task, TaskState.STARTING, started_at=world.now)
    world.now += decided_within(CHECK) + MONITOR
    world.step()
    assert world.record("web").update_state == "paused"


def test_the_monitor_period_counts_from_healthy_not_from_start() -> None:
    world, task = updating()
    started = world.now
    report(world, task, TaskState.STARTING, started_at=started)
    world.now = started + 30
    report(world, task, TaskState.RUNNING, started_at=started, running_at=world.now)
    world.step()
    world.now += MONITOR - 1  # 34 s after the container started, 4 s after healthy
    world.step()
    assert world.record("web").update_state == "updating"
    world.now += 1
    world.step()
    assert world.record("web").update_state == "completed"
