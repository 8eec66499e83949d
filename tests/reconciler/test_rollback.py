"""Rollbacks: a manual one (`POST /services/{ref}/rollback`) and the one an update's
`failure_action: rollback` starts are both paced by `rollback_config`, report `rolling
back` then `rolled back`, and pause (`rollback paused`) when the rollback fails."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.reconciler import CreateTask, ShutdownTask
from tests.reconciler.world import World


def running_cluster(replicas: int, *, update: dict[str, Any], rollback: dict[str, Any]) -> World:
    """`replicas` of nginx:1 running on three nodes, one second ago."""
    world = World()
    for node_id in ("n1", "n2", "n3"):
        world.add_node(node_id)
    world.create_service("web", replicas=replicas, update_config=update, rollback_config=rollback)
    world.settle()
    world.now += 1
    return world


def updated_cluster(*, update: dict[str, Any], rollback: dict[str, Any]) -> World:
    """Six replicas of nginx:1, updated to nginx:2 and settled: ready to roll back."""
    world = running_cluster(6, update=update, rollback=rollback)
    world.update_service("web", image="nginx:2")
    world.roll(passes=60)
    assert world.record("web").update_state == "completed"
    assert images(world) == ["nginx:2"] * 6
    return world


def images(world: World) -> list[str]:
    return sorted(task.spec.image for task in world.running("web"))


@pytest.mark.parametrize(
    ("update_parallelism", "rollback_parallelism", "batches"),
    [
        (1, 3, [[1, 2, 3], [4, 5, 6]]),
        (3, 1, [[1], [2], [3], [4], [5], [6]]),
        (1, 0, [[1, 2, 3, 4, 5, 6]]),  # 0: all at once
        (6, 2, [[1, 2], [3, 4], [5, 6]]),
    ],
)
def test_a_manual_rollback_is_paced_by_rollback_config_and_ends_rolled_back(
    update_parallelism: int, rollback_parallelism: int, batches: list[list[int]]
) -> None:
    world = updated_cluster(
        update={"parallelism": update_parallelism, "monitor": 0},
        rollback={"parallelism": rollback_parallelism, "monitor": 0},
    )
    written = world.rollback_service("web")
    assert (written.update_state, written.update_message) == (
        "rolling back",
        "manually requested rollback",
    )
    assert world.roll(passes=60) == [("rolling back", batch) for batch in batches]
    record = world.record("web")
    assert (record.update_state, record.update_message) == ("rolled back", "rollback completed")
    assert record.spec.image == "nginx:1"
    assert images(world) == ["nginx:1"] * 6
    assert world.plan().ops == ()


def test_a_manual_rollback_takes_order_delay_and_monitor_from_rollback_config() -> None:
    world = updated_cluster(
        update={"parallelism": 3, "monitor": 0},
        rollback={"parallelism": 3, "order": "start-first", "delay": 10, "monitor": 7},
    )
    world.rollback_service("web")
    decided = world.step()
    assert sorted(op.task.slot or 0 for op in decided.ops if isinstance(op, CreateTask)) == [
        1,
        2,
        3,
    ]
    # start-first: the old tasks stop only once their replacements run
    assert not [op for op in decided.ops if isinstance(op, ShutdownTask)]
    world.agents()
    first = world.now
    decided = world.step()
    assert sorted(op.task.slot or 0 for op in decided.ops if isinstance(op, ShutdownTask)) == [
        1,
        2,
        3,
    ]
    assert decided.next_wakeup == first + 10  # the delay before the next batch
    world.now = first + 10
    world.step()
    world.agents()
    second = world.now
    world.step()
    decided = world.step()
    assert decided.next_wakeup == second + 7  # monitoring the last batch
    assert world.record("web").update_state == "rolling back"
    world.now = second + 7
    world.step()
    assert world.record("web").update_state == "rolled back"
    assert images(world) == ["nginx:1"] * 6


def test_a_manual_rollback_that_replaces_no_task_ends_rolled_back() -> None:
    world = updated_cluster(update={"monitor": 0}, rollback={"monitor": 0})
    world.update_service("web", replicas=8)
    world.settle()
    world.rollback_service("web")
    world.settle()
    record = world.record("web")
    assert (record.spec.replicas, record.update_state) == (6, "rolled back")
    assert images(world) == ["nginx:2"] * 6


@pytest.mark.parametrize(
    ("rollback_parallelism", "rollback_batches"),
    [(1, [[1], [2]]), (2, [[1, 2]])],
)
def test_an_automatic_rollback_is_paced_by_rollback_config(
    rollback_parallelism: int, rollback_batches: list[list[int]]
) -> None:
    world = running_cluster(
        6,
        update={"parallelism": 2, "monitor": 5, "failure_action": "rollback"},
        rollback={"parallelism": rollback_parallelism, "monitor": 0},
    )
    world.update_service("web", image="broken:2")
    batches = world.roll(failing={"broken:2"}, passes=60)
    # the update's first batch fails; only its two slots are outdated after the rollback
    assert batches == [
        ("updating", [1, 2]),
        *[("rolling back", batch) for batch in rollback_batches],
    ]
    record = world.record("web")
    assert record.update_state == "rolled back"
    assert images(world) == ["nginx:1"] * 6


@pytest.mark.parametrize("failure_action", ["pause", "rollback"])
def test_a_failing_manual_rollback_pauses(failure_action: str) -> None:
    world = updated_cluster(
        update={"parallelism": 6, "monitor": 0},
        rollback={"parallelism": 2, "monitor": 5, "failure_action": failure_action},
    )
    world.rollback_service("web")
    batches = world.roll(failing={"nginx:1"}, passes=30)  # nginx:1 no longer starts
    assert batches == [("rolling back", [1, 2])]
    record = world.record("web")
    assert record.update_state == "rollback paused"
    assert record.update_message.startswith("rollback paused due to failure: task ")
    assert record.spec.image == "nginx:1"  # paused, not rolled forward again
    assert images(world) == ["nginx:2"] * 4  # slots 3..6 untouched


def test_a_failing_manual_rollback_with_continue_carries_on() -> None:
    world = updated_cluster(
        update={"parallelism": 6, "monitor": 0},
        rollback={"parallelism": 2, "monitor": 5, "failure_action": "continue"},
    )
    world.rollback_service("web")
    batches = world.roll(failing={"nginx:1"}, passes=30)
    assert [batch for _, batch in batches] == [[1, 2], [3, 4], [5, 6]]
    assert world.record("web").update_state != "rollback paused"


def test_a_failing_automatic_rollback_pauses() -> None:
    world = running_cluster(
        3,
        update={"parallelism": 1, "monitor": 5, "failure_action": "rollback"},
        rollback={"parallelism": 1, "monitor": 5, "failure_action": "pause"},
    )
    world.update_service("web", image="broken:2")
    # nginx:1 stops starting too: the rollback to it fails
    batches = world.roll(failing={"broken:2", "nginx:1"}, passes=40)
    assert batches == [("updating", [1]), ("rolling back", [1])]
    record = world.record("web")
    assert record.update_state == "rollback paused"
    assert "rollback paused due to failure" in record.update_message
    assert (record.spec.image, record.spec_version) == ("nginx:1", 3)


def test_a_new_spec_during_a_paused_rollback_is_an_update() -> None:
    world = updated_cluster(
        update={"parallelism": 3, "monitor": 0},
        rollback={"parallelism": 1, "monitor": 5, "failure_action": "pause"},
    )
    world.rollback_service("web")
    world.roll(failing={"nginx:1"}, passes=10)
    assert world.record("web").update_state == "rollback paused"

    world.update_service("web", image="nginx:3")
    assert world.record("web").update_state == ""
    batches = world.roll(passes=40)
    # by update_config's 3 at a time; slot 1's failed task is restarted with nginx:3
    assert batches == [("updating", [2, 3, 4]), ("updating", [5, 6])]
    assert world.record("web").update_state == "completed"
    assert images(world) == ["nginx:3"] * 6
