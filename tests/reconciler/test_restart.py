"""Restart policy: condition, delay, max_attempts, window; one new task per restart."""

from __future__ import annotations

import pytest

from controlplane.models import TaskState
from controlplane.reconciler import CreateTask
from tests.reconciler.world import World


def crashing_world(**policy: object) -> World:
    world = World()
    world.add_node("n1")
    world.add_node("n2")
    world.create_service("job", replicas=1, restart_policy=policy)
    world.step()
    return world


def exit_newest(world: World, *, code: int) -> str:
    (newest,) = [task for task in world.live("job") if not world.state(task.id).terminal]
    state = TaskState.COMPLETE if code == 0 else TaskState.FAILED
    world.report(newest.id, state, exit_code=code)
    return newest.id


def restarts(world: World) -> list[CreateTask]:
    return [op for op in world.step().ops if isinstance(op, CreateTask)]


@pytest.mark.parametrize("condition", ["any", "on-failure"])
def test_max_attempts_2_gives_exactly_3_tasks_then_the_slot_stays_failed(condition: str) -> None:
    world = crashing_world(condition=condition, delay=0, max_attempts=2)
    for _ in range(5):
        if any(not world.state(task.id).terminal for task in world.tasks("job")):
            exit_newest(world, code=1)
        world.now += 1
        world.step()
    tasks = world.tasks("job")
    assert len(tasks) == 3
    assert all(task.slot == 1 for task in tasks)
    assert all(world.state(task.id) is TaskState.FAILED for task in tasks)
    assert world.plan().ops == ()  # the slot stays failed


@pytest.mark.parametrize(
    ("condition", "code", "restarted"),
    [
        ("any", 0, True),
        ("any", 1, True),
        ("on-failure", 1, True),
        ("on-failure", 0, False),
        ("none", 1, False),
        ("none", 0, False),
    ],
)
def test_condition(condition: str, code: int, restarted: bool) -> None:
    world = crashing_world(condition=condition, delay=0)
    old = exit_newest(world, code=code)
    created = restarts(world)
    assert bool(created) is restarted
    if restarted:
        (op,) = created
        assert op.reason == "restart"
        assert op.task.slot == 1
        assert op.task.id != old


def test_the_delay_is_respected_through_next_wakeup() -> None:
    world = crashing_world(condition="any", delay=5)
    world.now += 1
    exit_newest(world, code=1)
    failed_at = world.now
    world.now += 2
    decided = world.step()
    assert decided.ops == ()
    assert decided.next_wakeup == failed_at + 5
    world.now = failed_at + 5
    assert [op.reason for op in restarts(world)] == ["restart"]


def test_the_window_lets_attempts_expire() -> None:
    world = crashing_world(condition="any", delay=0, max_attempts=1, window=60)
    exit_newest(world, code=1)
    first_failure = world.now
    assert restarts(world)
    world.now += 10
    exit_newest(world, code=1)
    decided = world.step()
    assert decided.ops == ()
    assert decided.next_wakeup == first_failure + 60
    world.now = first_failure + 60
    assert restarts(world)


def test_a_new_spec_gets_a_new_budget() -> None:
    world = crashing_world(condition="any", delay=0, max_attempts=1)
    exit_newest(world, code=1)
    world.step()
    exit_newest(world, code=1)
    assert world.plan().ops == ()
    world.now += 1
    world.update_service("job", image="fixed:2")
    created = restarts(world)
    assert [op.task.spec.image for op in created] == ["fixed:2"]


def test_a_stopped_task_is_not_an_attempt() -> None:
    world = crashing_world(condition="any", delay=0, max_attempts=1)
    (task,) = world.tasks("job")
    world.report(task.id, TaskState.SHUTDOWN)  # stopped without being asked
    assert restarts(world)
    exit_newest(world, code=1)
    assert restarts(world)  # the shutdown did not use the one attempt
