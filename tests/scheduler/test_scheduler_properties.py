"""Properties of a pass, over generated clusters and requests (hypothesis)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from scheduler_helpers import CPU, GiB, MiB, node

from scheduler import (
    NodeView,
    Pipeline,
    PlacementRequest,
    Platform,
    PortRequest,
    Resources,
    load_filters,
    load_strategy,
)
from scheduler.strategies.binpack import BinpackStrategy
from scheduler.strategies.random import RandomStrategy

ZONES = ("a", "b", "c")
# Loaded once: the registry scans the installed distributions on every call.
FILTERS = load_filters()
STRATEGIES = {name: load_strategy(name, seed=3) for name in ("spread", "binpack", "random")}


@st.composite
def nodes(draw: st.DrawFn) -> list[NodeView]:
    count = draw(st.integers(min_value=0, max_value=12))
    views = []
    for i in range(count):
        views.append(
            node(
                f"n{i:02}",
                cpus=draw(st.sampled_from([1, 2, 4])),
                memory=draw(st.sampled_from([1, 2, 4])) * GiB,
                ready=draw(st.booleans() | st.just(True)),
                availability=draw(st.sampled_from(["active", "active", "pause", "drain"])),
                role=draw(st.sampled_from(["worker", "manager"])),
                labels={"zone": draw(st.sampled_from(ZONES))},
                platform=Platform("linux", draw(st.sampled_from(["amd64", "arm64"]))),
                tasks_by_service={"db": draw(st.integers(0, 2))},
                host_ports_in_use=draw(st.sets(st.just(("tcp", 80)), max_size=1)),
            )
        )
    return views


@st.composite
def requests(draw: st.DrawFn) -> list[PlacementRequest]:
    wanted: list[PlacementRequest] = []
    for service in range(draw(st.integers(min_value=1, max_value=4))):
        constraints = draw(
            st.lists(
                st.sampled_from(
                    [
                        "node.labels.zone==a",
                        "node.labels.zone!=b",
                        "node.role==worker",
                        "constraint:zone==~c",
                        "constraint:node==n0*",
                    ]
                ),
                max_size=2,
                unique=True,
            )
        )
        affinities = draw(
            st.lists(
                st.sampled_from(
                    ["affinity:service==db", "affinity:service!=db", "affinity:service==~db"]
                ),
                max_size=1,
            )
        )
        fields = dict(
            resources=Resources(
                draw(st.sampled_from([0, CPU // 2, CPU])),
                draw(st.sampled_from([0, 256 * MiB, GiB])),
            ),
            constraints=constraints,
            affinities=affinities,
            host_ports=draw(st.sampled_from([[], [PortRequest("tcp", 80)]])),
            max_replicas_per_node=draw(st.integers(0, 2)),
            platforms=draw(st.sampled_from([[], [Platform("linux", "amd64")]])),
            preferences=draw(st.sampled_from([[], ["spread=node.labels.zone"]])),
        )
        for slot in range(1, draw(st.integers(min_value=1, max_value=8)) + 1):
            wanted.append(PlacementRequest(service=f"s{service}", slot=slot, **fields))  # type: ignore[arg-type]
    return draw(st.permutations(wanted))


def replay(result_placements: list[tuple[PlacementRequest, str]], views: list[NodeView]) -> None:
    """Re-apply the placements one by one and check every hard filter at each step."""
    filters = FILTERS
    state = {view.id: view.copy() for view in views}
    for placed, node_id in result_placements:
        view = state[node_id]
        hard = placed.hard_only()
        for filter_ in filters:
            assert filter_.check(hard, view), f"{placed.key} on {node_id} fails {filter_.name}"
        view.reserve(placed)


@settings(max_examples=150, deadline=None)
@given(views=nodes(), wanted=requests(), strategy=st.sampled_from(["spread", "binpack", "random"]))
def test_no_task_lands_on_a_node_failing_a_hard_filter(
    views: list[NodeView], wanted: list[PlacementRequest], strategy: str
) -> None:
    result = Pipeline(FILTERS, STRATEGIES[strategy]).place(wanted, views)
    assert len(result.placements) + len(result.unplaced) == len(wanted)
    replay(result.placements, views)
    for view in result.nodes:
        assert view.reserved.nano_cpus <= view.capacity.nano_cpus
        assert view.reserved.memory_bytes <= view.capacity.memory_bytes


@settings(max_examples=150, deadline=None)
@given(views=nodes(), wanted=requests())
def test_unplaced_requests_really_fit_nowhere(
    views: list[NodeView], wanted: list[PlacementRequest]
) -> None:
    """Completeness: a request is unplaced only if every node fails a hard filter then."""
    pipeline = Pipeline(FILTERS, STRATEGIES["spread"])
    filters = FILTERS
    state = {view.id: view.copy() for view in views}
    placed_at = dict(
        (id(placed), node_id) for placed, node_id in pipeline.place(wanted, views).placements
    )
    for one in wanted:
        node_id = placed_at.get(id(one))
        if node_id is None:
            hard = one.hard_only()
            assert not any(all(f.check(hard, v) for f in filters) for v in state.values())
        else:
            state[node_id].reserve(one)


@settings(max_examples=100, deadline=None)
@given(count=st.integers(1, 30), tasks=st.integers(0, 200), strategy=st.just("spread"))
def test_spread_over_identical_nodes_is_even(count: int, tasks: int, strategy: str) -> None:
    views = [node(f"n{i:03}") for i in range(count)]
    wanted = [PlacementRequest(service="web", slot=s) for s in range(tasks)]
    result = Pipeline(FILTERS, STRATEGIES[strategy]).place(wanted, views)
    per_node = Counter(result.assignments.values())
    loads = [per_node.get(view.id, 0) for view in views]
    assert max(loads) - min(loads) <= 1


@settings(max_examples=100, deadline=None)
@given(
    count=st.integers(1, 10),
    memories=st.lists(st.sampled_from([256 * MiB, 512 * MiB, GiB]), min_size=1, max_size=40),
)
def test_binpack_never_opens_a_node_while_an_open_one_fits(count: int, memories: list[int]) -> None:
    views = [node(f"n{i:02}", memory=2 * GiB) for i in range(count)]
    wanted = [
        PlacementRequest(service=f"s{i % 3}", slot=i, resources=Resources(0, memory))
        for i, memory in enumerate(memories)
    ]
    pipeline = Pipeline(FILTERS, BinpackStrategy())
    state = {view.id: view.copy() for view in views}
    filters = FILTERS
    for placed, node_id in pipeline.place(wanted, views).placements:
        target = state[node_id]
        if target.total_tasks == 0:
            open_fitting = [
                v.id
                for v in state.values()
                if v.total_tasks > 0 and all(f.check(placed, v) for f in filters)
            ]
            assert not open_fitting, f"{placed.key} opened {node_id} while {open_fitting} fit"
        target.reserve(placed)


@settings(max_examples=50, deadline=None)
@given(views=nodes(), wanted=requests(), seed=st.integers(0, 2**32))
def test_the_same_seed_gives_the_same_placement(
    views: list[NodeView], wanted: list[PlacementRequest], seed: int
) -> None:
    first = Pipeline(FILTERS, RandomStrategy(seed=seed)).place(wanted, views)
    second = Pipeline(FILTERS, RandomStrategy(seed=seed)).place(wanted, views)
    assert first.placements == second.placements
    assert first.unplaced == second.unplaced
