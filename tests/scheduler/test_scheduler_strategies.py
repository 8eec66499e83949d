from __future__ import annotations

from collections import Counter

from scheduler_helpers import GiB, node, replicas, request

from scheduler import Pipeline, Resources, load_filters, load_pipeline, load_strategy
from scheduler.strategies.binpack import BinpackStrategy
from scheduler.strategies.spread import SpreadStrategy


def test_spread_prefers_fewest_tasks_of_the_service_then_fewest_in_total() -> None:
    views = [
        node("a", tasks_by_service={"web": 1}, total_tasks=1),
        node("b", tasks_by_service={"db": 3}, total_tasks=3),
        node("c", tasks_by_service={"db": 1}, total_tasks=1),
    ]
    ranked = SpreadStrategy().rank(request("web"), views)
    assert [view.id for view in ranked] == ["c", "b", "a"]


def test_spread_breaks_ties_by_node_id() -> None:
    result = load_pipeline().place(replicas("web", 3), [node("c"), node("a"), node("b")])
    assert [node_id for _, node_id in result.placements] == ["a", "b", "c"]


def test_spread_deprioritises_nodes_where_the_service_failed_recently() -> None:
    views = [node("a", recent_failures={"web": 5}), node("b", total_tasks=7)]
    assert load_pipeline().place([request("web")], views).assignments == {"web.1": "b"}
    strict = SpreadStrategy(failure_threshold=10)
    assert [v.id for v in strict.rank(request("web"), views)] == ["a", "b"]


def test_spread_over_a_label_first() -> None:
    views = [
        node("a1", labels={"zone": "a"}),
        node("a2", labels={"zone": "a"}),
        node("a3", labels={"zone": "a"}),
        node("b1", labels={"zone": "b"}),
        node("x1"),  # no zone: its own group, ""
    ]
    wants = replicas("web", 6, preferences=["spread=node.labels.zone"])
    result = load_pipeline().place(wants, views)
    placed = Counter(result.assignments.values())
    by_zone = Counter({"a": 0, "b": 0, "": 0})
    for view in views:
        by_zone[view.labels.get("zone", "")] += placed[view.id]
    assert dict(by_zone) == {"a": 2, "b": 2, "": 2}
    assert placed["a1"] == placed["a2"] == 1


def test_spread_preference_counts_existing_tasks() -> None:
    views = [
        node("a1", labels={"zone": "a"}, tasks_by_service={"web": 2}),
        node("b1", labels={"zone": "b"}),
    ]
    wants = replicas("web", 3, preferences=["node.labels.zone"])
    placed = Counter(load_pipeline().place(wants, views).assignments.values())
    # b catches up with a's two tasks first, then they alternate: b, b, then a (tie, "a").
    assert placed == {"b1": 2, "a1": 1}


def test_nested_preferences() -> None:
    views = [
        node(f"{dc}-{rack}-{n}", labels={"dc": dc, "rack": rack})
        for dc in ("east", "west")
        for rack in ("r1", "r2")
        for n in range(2)
    ]
    wants = replicas("web", 8, preferences=["spread=node.labels.dc", "spread=node.labels.rack"])
    placed = load_pipeline().place(wants, views).assignments
    assert sorted(placed.values()) == sorted(view.id for view in views)


def test_preference_skips_a_value_with_no_room() -> None:
    views = [node("a1", labels={"zone": "a"}, memory=GiB), node("b1", labels={"zone": "b"})]
    wants = replicas("web", 4, preferences=["spread=node.labels.zone"], resources=Resources(0, GiB))
    placed = Counter(load_pipeline().place(wants, views).assignments.values())
    assert placed == {"a1": 1, "b1": 3}


def test_binpack_fills_the_most_used_node_that_fits() -> None:
    views = [
        node("a", memory=4 * GiB),
        node("b", memory=4 * GiB, reserved=Resources(0, 2 * GiB), total_tasks=1),
        node("c", memory=4 * GiB, reserved=Resources(0, 3 * GiB), total_tasks=1),
    ]
    pipeline = Pipeline(load_filters(), BinpackStrategy())
    wants = replicas("web", 4, resources=Resources(0, GiB))
    assert [n for _, n in pipeline.place(wants, views).placements] == ["c", "b", "b", "a"]


def test_binpack_prefers_an_open_node_when_nothing_is_reserved() -> None:
    views = [node("a"), node("b", total_tasks=1)]
    result = load_pipeline(strategy="binpack").place(replicas("web", 3), views)
    assert set(result.assignments.values()) == {"b"}


def test_binpack_sees_nodes_filled_by_other_services_in_the_same_pass() -> None:
    views = [node("a", memory=4 * GiB), node("b", memory=4 * GiB)]
    wants = [
        *replicas("web", 1, resources=Resources(0, GiB)),
        request("db", 1, constraints=["node.id==b"], resources=Resources(0, 2 * GiB)),
        *[request("web", slot, resources=Resources(0, GiB)) for slot in (2, 3)],
    ]
    result = load_pipeline(strategy="binpack").place(wants, views)
    # web.1 opens a; db fills b further than a, so binpack now fills b before a.
    assert result.assignments == {"web.1": "a", "db.1": "b", "web.2": "b", "web.3": "b"}


def test_random_is_reproducible_and_depends_on_the_seed() -> None:
    views = [node(f"n{i:02}") for i in range(20)]
    wants = replicas("web", 10)

    def run(seed: int) -> list[str]:
        pipeline = load_pipeline(strategy="random", seed=seed)
        return [n for _, n in pipeline.place(wants, views).placements]

    assert run(7) == run(7)
    assert run(7) != run(8)
    assert len(set(run(7))) > 1


def test_rank_is_best_first() -> None:
    views = [node("b"), node("a", total_tasks=2), node("c")]
    assert [v.id for v in load_strategy("spread").rank(request(), views)] == ["b", "c", "a"]
