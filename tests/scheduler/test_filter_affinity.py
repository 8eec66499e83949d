from __future__ import annotations

import pytest
from scheduler_helpers import node, replicas, request

from scheduler import ConstraintError, NodeView, load_pipeline, parse_affinity
from scheduler.filters.affinity import AffinityFilter


def busy() -> NodeView:
    return node(tasks_by_service={"db": 1, "cache": 0}, images={"registry:5000/redis:7.2"})


CASES = [
    ("affinity:service==db", True),
    ("affinity:service==DB", True),
    ("affinity:service==web", False),
    ("affinity:service==cache", False),  # a zero count is no task
    ("affinity:service!=db", False),
    ("affinity:service!=web", True),
    ("affinity:service==d*", True),
    ("affinity:service==/d[a-z]/", True),
    ("affinity:image==registry:5000/redis:7.2", True),
    ("affinity:image==registry:5000/redis", True),  # the repository without its tag
    ("affinity:image==*redis*", True),
    ("affinity:image==nginx", False),
    ("affinity:image!=nginx", True),
    ("affinity:service==~web", False),
    ("affinity:service!=~db", False),
]


@pytest.mark.parametrize(("text", "passes"), CASES)
def test_affinity_filter(text: str, passes: bool) -> None:
    assert AffinityFilter().check(request(affinities=[text]), busy()) is passes


@pytest.mark.parametrize(
    "text", ["service==db", "affinity:container==x", "affinity:service=db", "affinity:service=="]
)
def test_bad_affinities(text: str) -> None:
    with pytest.raises(ConstraintError):
        parse_affinity(text)


def test_affinity_sees_tasks_placed_earlier_in_the_pass() -> None:
    nodes = [node("a"), node("b"), node("c")]
    wants = [request("db", 1), request("api", 1, affinities=["affinity:service==db"])]
    result = load_pipeline().place(wants, nodes)
    assert result.assignments["api.1"] == result.assignments["db.1"]


def test_anti_affinity_with_itself_is_one_task_per_node() -> None:
    nodes = [node("a"), node("b")]
    result = load_pipeline().place(replicas("web", 3, affinities=["affinity:service!=web"]), nodes)
    assert sorted(result.assignments.values()) == ["a", "b"]
    [(_, why)] = result.unplaced
    assert why == "2 nodes do not satisfy affinity:service!=web"


def test_soft_affinity_is_dropped_when_nothing_fits() -> None:
    result = load_pipeline().place([request(affinities=["affinity:service==~db"])], [node("a")])
    assert result.assignments == {"web.1": "a"}
