"""History: each slot keeps its last five tasks; removed services and stray statuses go."""

from __future__ import annotations

from controlplane import keys
from controlplane.models import TaskState, TaskStatus
from tests.reconciler.world import World


def test_history_is_trimmed_to_five_tasks_per_slot() -> None:
    world = World()
    world.add_node("n1")
    world.create_service("crash", replicas=2, restart_policy={"delay": 0})
    world.step()
    for _ in range(8):
        for task in world.live("crash"):
            if not world.state(task.id).terminal:
                world.report(task.id, TaskState.FAILED, exit_code=1)
        world.now += 1
        world.step()
    per_slot = {slot: [t for t in world.tasks("crash") if t.slot == slot] for slot in (1, 2)}
    assert {slot: len(tasks) for slot, tasks in per_slot.items()} == {1: 5, 2: 5}
    for tasks in per_slot.values():
        newest = max(tasks, key=lambda t: t.created)
        assert not world.state(newest.id).terminal  # the current attempt is kept


def test_history_never_hides_the_restart_budget() -> None:
    world = World(history_limit=2)
    world.add_node("n1")
    world.create_service("crash", replicas=1, restart_policy={"delay": 0, "max_attempts": 4})
    world.step()
    for _ in range(8):
        for task in world.live("crash"):
            if not world.state(task.id).terminal:
                world.report(task.id, TaskState.FAILED, exit_code=1)
        world.now += 1
        world.step()
    assert len(world.tasks("crash")) == 5  # 1 + 4 restarts, all kept to count them


def test_a_removed_service_is_stopped_then_deleted() -> None:
    world = World()
    world.add_node("n1")
    world.create_service("web", replicas=3)
    world.settle()
    world.delete(keys.service("web"))
    decided = world.step()
    assert {(type(op).__name__, op.reason) for op in decided.ops} == {
        ("ShutdownTask", "service removed")
    }
    world.settle()
    assert world.tasks("web") == []
    assert not world.contents.statuses


def test_a_service_created_again_under_its_name_replaces_the_old_tasks() -> None:
    world = World()
    world.add_node("n1")
    world.create_service("web", replicas=1)
    world.settle()
    (old,) = world.live("web")
    world.delete(keys.service("web"))
    world.put(
        keys.service("web"),
        world.create_service("web", replicas=1).model_copy(update={"id": "svc-web-2"}),
    )
    world.settle()
    (new,) = world.live("web")
    assert new.id != old.id
    assert new.service_id == "svc-web-2"


def test_a_status_without_its_task_is_deleted() -> None:
    world = World()
    world.put(keys.status("ghost"), TaskStatus(task_id="ghost", state=TaskState.RUNNING))
    (op,) = world.step().ops
    assert type(op).__name__ == "DeleteStatus"
    assert keys.status("ghost") not in world.kv
