from __future__ import annotations

import pytest
from scheduler_helpers import node, replicas, request

from scheduler import load_pipeline
from scheduler.filters.max_replicas import MaxReplicasFilter

CASES = [
    # (tasks of web already there, max per node, passes)
    (0, 0, True),
    (50, 0, True),  # 0 is unlimited
    (0, 1, True),
    (1, 1, False),
    (1, 2, True),
    (2, 2, False),
    (3, 2, False),
]


@pytest.mark.parametrize(("running", "limit", "passes"), CASES)
def test_max_replicas_filter(running: int, limit: int, passes: bool) -> None:
    view = node(tasks_by_service={"web": running, "other": 9})
    assert MaxReplicasFilter().check(request(max_replicas_per_node=limit), view) is passes


def test_other_services_do_not_count() -> None:
    view = node(tasks_by_service={"other": 9})
    assert MaxReplicasFilter().check(request(max_replicas_per_node=1), view)


def test_max_replicas_in_a_pass() -> None:
    result = load_pipeline().place(
        replicas("web", 5, max_replicas_per_node=2), [node("a"), node("b")]
    )
    assert len(result.placements) == 4
    [(_, why)] = result.unplaced
    assert why == "2 nodes already run 2 tasks of web (max 2 per node)"
