from __future__ import annotations

import pytest
from scheduler_helpers import CPU, GiB, MiB, node, request

from scheduler import Resources
from scheduler.filters.resources import ResourcesFilter

CASES = [
    # (capacity cpus, capacity memory, reserved, wanted, passes)
    (4, 8 * GiB, Resources(), Resources(), True),
    (4, 8 * GiB, Resources(), Resources(4 * CPU, 8 * GiB), True),
    (4, 8 * GiB, Resources(), Resources(4 * CPU + 1, 0), False),
    (4, 8 * GiB, Resources(), Resources(0, 8 * GiB + 1), False),
    (4, 8 * GiB, Resources(3 * CPU, 0), Resources(CPU, 0), True),
    (4, 8 * GiB, Resources(3 * CPU, 0), Resources(CPU + 1, 0), False),
    (4, 8 * GiB, Resources(0, 7 * GiB + 512 * MiB), Resources(0, 512 * MiB), True),
    (4, 8 * GiB, Resources(0, 7 * GiB + 513 * MiB), Resources(0, 512 * MiB), False),
    # Over-reserved node (capacity shrank): still takes tasks that reserve nothing.
    (0, 0, Resources(CPU, GiB), Resources(), True),
]


@pytest.mark.parametrize(("cpus", "memory", "reserved", "wanted", "passes"), CASES)
def test_resources_filter(
    cpus: int, memory: int, reserved: Resources, wanted: Resources, passes: bool
) -> None:
    view = node(cpus=cpus, memory=memory, reserved=reserved)
    assert ResourcesFilter().check(request(resources=wanted), view) is passes


@pytest.mark.parametrize(
    ("wanted", "count", "phrase"),
    [
        (Resources(0, 512 * MiB), 2, "2 nodes lack 512 MiB memory"),
        (Resources(0, 3 * GiB // 2), 1, "1 node lacks 1.5 GiB memory"),
        (Resources(CPU // 2, 0), 3, "3 nodes lack 0.5 CPUs"),
        (Resources(CPU, GiB), 1, "1 node lacks 1 CPU and 1 GiB memory"),
    ],
)
def test_resources_explain(wanted: Resources, count: int, phrase: str) -> None:
    assert ResourcesFilter().explain(request(resources=wanted), count) == phrase


def test_resources_explain_failures_names_what_each_node_lacks() -> None:
    wanted = request(resources=Resources(2 * CPU, 2 * GiB))
    views = [
        node("a", cpus=1),
        node("b", memory=GiB),
        node("c", memory=GiB),
        node("d", cpus=1, memory=GiB),
    ]
    assert sorted(ResourcesFilter().explain_failures(wanted, views)) == [
        (1, "1 node lacks 2 CPUs"),
        (1, "1 node lacks 2 CPUs and 2 GiB memory"),
        (2, "2 nodes lack 2 GiB memory"),
    ]
