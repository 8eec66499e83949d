"""Replicated services: slots 1..N, scale up, scale down, determinism."""

from __future__ import annotations

from collections import Counter

import pytest

from controlplane.models import Availability, TaskState
from controlplane.models.task import DesiredState
from controlplane.reconciler import CreateTask, DeleteTask, ShutdownTask
from tests.reconciler.world import World


@pytest.fixture
def world() -> World:
    world = World()
    for node_id in ("n1", "n2", "n3"):
        world.add_node(node_id)
    return world


def test_scale_up_from_nothing_makes_slots_1_to_n_spread_over_nodes(world: World) -> None:
    world.create_service("web", replicas=5)
    decided = world.step()
    creates = [op for op in decided.ops if isinstance(op, CreateTask)]
    assert sorted(op.task.slot or 0 for op in creates) == [1, 2, 3, 4, 5]
    assert {op.reason for op in creates} == {"scale up"}
    assert all(op.status.state is TaskState.ASSIGNED for op in creates)
    per_node = Counter(op.task.node_id for op in creates)
    assert sorted(per_node.values()) == [1, 2, 2]
    assert all(op.task.spec.image == "nginx:1" for op in creates)


def test_a_settled_service_plans_nothing(world: World) -> None:
    world.create_service("web", replicas=3)
    world.settle()
    decided = world.plan()
    assert decided.ops == ()
    assert decided.next_wakeup is None
    assert len(world.running("web")) == 3


def test_scale_up_adds_the_missing_slots(world: World) -> None:
    world.create_service("web", replicas=2)
    world.settle()
    world.update_service("web", replicas=4)
    decided = world.step()
    assert sorted(op.task.slot or 0 for op in decided.ops if isinstance(op, CreateTask)) == [3, 4]


def test_scale_down_removes_the_highest_slots(world: World) -> None:
    world.create_service("web", replicas=6)
    world.settle()
    world.update_service("web", replicas=3)
    decided = world.step()
    stopped = sorted(op.task.slot or 0 for op in decided.ops if isinstance(op, ShutdownTask))
    assert stopped == [4, 5, 6]
    assert {op.reason for op in decided.ops} == {"scale down"}
    world.agents()
    decided = world.step()
    assert {type(op) for op in decided.ops} == {DeleteTask}
    assert sorted(t.slot or 0 for t in world.tasks("web")) == [1, 2, 3]


def test_scale_down_prefers_tasks_that_are_not_running(world: World) -> None:
    world.create_service("web", replicas=4)
    world.step()
    slot_2 = next(t for t in world.tasks("web") if t.slot == 2)
    for task in world.tasks("web"):
        if task.id != slot_2.id:
            world.report(task.id, TaskState.RUNNING)
    world.update_service("web", replicas=3)
    decided = world.step()
    assert [op.task.slot for op in decided.ops if isinstance(op, ShutdownTask)] == [2]


def test_scale_down_prefers_nodes_with_the_most_copies(world: World) -> None:
    world.create_service("web", replicas=1)
    world.settle()
    # Pile slots 2 and 3 onto n1 by hand-placing them there (n2, n3 empty).
    world.set_availability("n2", Availability.PAUSE)
    world.set_availability("n3", Availability.PAUSE)
    world.update_service("web", replicas=3)
    world.settle()
    world.set_availability("n2", Availability.ACTIVE)
    world.update_service("web", replicas=4)
    world.settle()
    placed = {t.slot: t.node_id for t in world.live("web")}
    assert placed == {1: "n1", 2: "n1", 3: "n1", 4: "n2"}
    world.update_service("web", replicas=3)
    decided = world.step()
    # slot 4 is the highest, but n1 holds three copies: its highest slot goes.
    assert [op.task.slot for op in decided.ops if isinstance(op, ShutdownTask)] == [3]


def test_zero_replicas_stops_everything(world: World) -> None:
    world.create_service("web", replicas=3)
    world.settle()
    world.update_service("web", replicas=0)
    world.settle()
    assert world.tasks("web") == []


def test_planning_is_deterministic(world: World) -> None:
    world.create_service("web", replicas=7)
    assert world.plan() == world.plan()


def test_tasks_carry_the_service_and_spec_version(world: World) -> None:
    record = world.create_service("web", replicas=1)
    world.step()
    (task,) = world.tasks("web")
    assert task.service_id == record.id
    assert task.spec_version == record.spec_version
    assert task.desired_state is DesiredState.RUNNING
    assert task.created == world.now
