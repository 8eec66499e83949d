"""When `create`, `update`, `scale` and `deploy` stop waiting: `assess`, case by case."""

from __future__ import annotations

from typing import Any

from controlplane.cli.service.converge import Watch, assess
from controlplane.models import ServiceSpec


def service(
    version: int,
    *,
    replicas: int = 3,
    image: str = "nginx:1.27",
    previous_image: str | None = None,
    previous_replicas: int | None = None,
    mode: str = "replicated",
    state: str = "",
    message: str = "",
) -> dict[str, Any]:
    spec = ServiceSpec(name="web", image=image, replicas=replicas, mode=mode)  # type: ignore[arg-type]
    previous = None
    if previous_image or previous_replicas is not None:
        previous = spec.model_copy(
            update={"image": previous_image or image, "replicas": previous_replicas or replicas}
        )
    return {
        "name": "web",
        "spec": spec.model_dump(mode="json"),
        "previous_spec": previous.model_dump(mode="json") if previous else None,
        "spec_version": version,
        "update_state": state,
        "update_message": message,
    }


def task(
    slot: int | None,
    *,
    version: int = 1,
    state: str = "running",
    desired: str = "running",
    node: str = "n1",
    message: str = "",
) -> dict[str, Any]:
    return {
        "slot": slot,
        "node_id": node,
        "spec_version": version,
        "state": state,
        "desired_state": desired,
        "message": message,
        "error": "",
    }


def test_a_new_service_is_done_when_all_its_tasks_run() -> None:
    watch = Watch(name="web", version=1, started=0.0)
    assert not assess(watch, service(1), [], now=1.0).done
    starting = assess(watch, service(1), [task(1), task(2, state="starting"), task(3)], now=2.0)
    assert (starting.done, starting.summary) == (False, "web: overall progress: 2 out of 3 tasks")
    assert assess(watch, service(1), [task(1), task(2), task(3)], now=3.0).done


def test_scaling_down_waits_for_the_extra_tasks_to_go() -> None:
    watch = Watch(name="web", version=2, started=0.0)
    scaled = service(2, replicas=2, previous_replicas=5)
    five = [task(slot) for slot in range(1, 6)]
    result = assess(watch, scaled, five, now=1.0)
    assert not result.done
    assert result.summary == "web: overall progress: 2 out of 2 tasks"  # never "5 out of 2"
    stopping = [task(1), task(2)] + [task(s, desired="shutdown") for s in (3, 4, 5)]
    assert not assess(watch, scaled, stopping, now=2.0).done  # told to stop, still running
    stopped = [task(1), task(2)]
    stopped += [task(s, desired="shutdown", state="shutdown") for s in (3, 4, 5)]
    assert assess(watch, scaled, stopped, now=3.0).done


def test_an_image_update_is_not_done_before_the_leader_acts() -> None:
    watch = Watch(name="web", version=2, started=0.0)
    # the last update's "completed" is still there, and the old tasks all run
    stale = service(2, image="nginx:1.28", previous_image="nginx:1.27", state="completed")
    old = [task(slot, version=1) for slot in (1, 2, 3)]
    assert not assess(watch, stale, old, now=1.0).done
    updating = service(2, image="nginx:1.28", previous_image="nginx:1.27", state="updating")
    halfway = [task(1, version=2), task(2, version=1), task(3, version=1)]
    result = assess(watch, updating, halfway, now=2.0)
    assert not result.done
    assert result.summary == "web: overall progress: 3 out of 3 tasks (updating)"
    done = service(2, image="nginx:1.28", previous_image="nginx:1.27", state="completed")
    assert assess(watch, done, [task(s, version=2) for s in (1, 2, 3)], now=3.0).done


def test_a_paused_update_is_a_failure_but_not_an_old_pause() -> None:
    watch = Watch(name="web", version=2, started=0.0)
    old_pause = service(2, image="b", previous_image="a", state="paused", message="old")
    assert (
        assess(watch, old_pause, [task(s, version=1) for s in (1, 2, 3)], now=1.0).failure is None
    )
    paused = service(
        2, image="b", previous_image="a", state="paused",
        message="update paused due to failure: task t1 failed: exit 1",
    )  # fmt: skip
    failed = [task(1, version=2, state="failed", desired="shutdown"), task(2), task(3)]
    result = assess(watch, paused, failed, now=2.0)
    assert result.failure == "update paused due to failure: task t1 failed: exit 1"


def test_an_update_the_leader_rolled_back_fails_once_converged() -> None:
    watch = Watch(name="web", version=2, started=0.0)
    rolled = service(
        3, image="a", previous_image="b", state="rolled back",
        message="update rolled back due to failure: task t1 failed",
    )  # fmt: skip
    result = assess(watch, rolled, [task(s, version=3) for s in (1, 2, 3)], now=1.0)
    assert result.done
    assert result.failure == "update rolled back due to failure: task t1 failed"


def test_a_global_service_with_no_eligible_node_converges_after_a_grace() -> None:
    watch = Watch(name="agent", version=1, started=0.0)
    empty = service(1, mode="global")
    assert not assess(watch, empty, [], now=1.0).done
    assert assess(watch, empty, [], now=6.0).done
    other = Watch(name="agent", version=1, started=0.0)
    on_two = [task(None, node="n1"), task(None, node="n2")]
    result = assess(other, empty, on_two, now=1.0)
    assert (result.done, result.desired) == (True, 2)


def test_pending_tasks_say_why() -> None:
    watch = Watch(name="web", version=1, started=0.0)
    pending = [
        task(s, state="pending", node="", message="no suitable node (2 nodes lack memory)")
        for s in (1, 2)
    ]
    result = assess(watch, service(1, replicas=2), pending, now=1.0)
    assert result.summary == (
        "web: overall progress: 0 out of 2 tasks; 2 pending: no suitable node (2 nodes lack memory)"
    )


def test_a_change_that_moves_no_task_is_done_when_counts_match() -> None:
    watch = Watch(name="web", version=2, started=0.0)
    relabelled = service(2, previous_replicas=3)  # same task spec: nothing to replace
    assert assess(watch, relabelled, [task(s, version=1) for s in (1, 2, 3)], now=1.0).done


def test_a_manual_rollback_waits_for_rolled_back_and_fails_if_it_pauses() -> None:
    watch = Watch(name="web", version=3, started=0.0)
    old_tasks = [task(s, version=2) for s in (1, 2, 3)]
    rolling = service(
        3, image="a", previous_image="b", state="rolling back",
        message="manually requested rollback",
    )  # fmt: skip
    result = assess(watch, rolling, old_tasks, now=1.0)
    assert not result.done
    assert result.failure is None
    assert result.summary.endswith("(rolling back)")

    rolled = service(
        3, image="a", previous_image="b", state="rolled back", message="rollback completed"
    )
    result = assess(watch, rolled, [task(s, version=3) for s in (1, 2, 3)], now=2.0)
    assert (result.done, result.failure) == (True, None)

    paused = service(
        3, image="a", previous_image="b", state="rollback paused",
        message="rollback paused due to failure: task t1 failed",
    )  # fmt: skip
    failed = [task(1, version=3, state="failed", desired="shutdown"), *old_tasks[1:]]
    result = assess(Watch(name="web", version=3, started=0.0), paused, failed, now=2.0)
    assert result.failure == "rollback paused due to failure: task t1 failed"
