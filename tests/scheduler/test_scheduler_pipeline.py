from __future__ import annotations

from scheduler_helpers import CPU, GiB, MiB, node, replicas, request

from scheduler import (
    NodeView,
    PlacementRequest,
    PortRequest,
    Resources,
    load_pipeline,
)
from scheduler.units import format_bytes, format_cpus


def test_later_placements_see_earlier_ones() -> None:
    result = load_pipeline().place(replicas("web", 4), [node("a"), node("b")])
    assert sorted(result.assignments.values()) == ["a", "a", "b", "b"]
    assert {v.id: v.tasks_by_service["web"] for v in result.nodes} == {"a": 2, "b": 2}


def test_the_callers_node_views_are_not_changed() -> None:
    views = [node("a")]
    load_pipeline().place(replicas("web", 2, resources=Resources(CPU, GiB)), views)
    assert views[0].total_tasks == 0
    assert views[0].reserved == Resources()


def test_resources_are_never_over_committed_in_one_pass() -> None:
    views = [node(f"n{i}", cpus=2, memory=(i + 1) * GiB) for i in range(4)]
    wants = [
        *replicas("big", 6, resources=Resources(CPU, GiB)),
        *replicas("small", 20, resources=Resources(CPU // 4, 256 * MiB)),
    ]
    result = load_pipeline().place(wants, views)
    for view in result.nodes:
        assert view.reserved.nano_cpus <= view.capacity.nano_cpus
        assert view.reserved.memory_bytes <= view.capacity.memory_bytes
    assert result.unplaced  # the cluster was too small for everything


def test_explanation_counts_nodes_per_first_failing_filter_most_frequent_first() -> None:
    views = [
        node("d1", availability="drain"),
        node("d2", availability="drain"),
        node("d3", availability="drain"),
        node("s1", memory=256 * MiB),
        node("s2", memory=256 * MiB),
        node("z1", labels={"zone": "b"}, memory=256 * MiB),  # fails constraint first
        node("p1", host_ports_in_use={("tcp", 80)}),
        node("down", ready=False),
    ]
    wants = request(
        constraints=["node.labels.zone!=b"],
        resources=Resources(0, 512 * MiB),
        host_ports=[PortRequest("tcp", 80)],
    )
    [(_, why)] = load_pipeline().place([wants], views).unplaced
    assert why == (
        "3 nodes not available (drained); 2 nodes lack 512 MiB memory; "
        "1 node not available (down); 1 node does not satisfy node.labels.zone!=b; "
        "1 node has host port 80/tcp in use"
    )


def test_explanation_reflects_the_pass_so_far() -> None:
    views = [node("a", memory=GiB), node("b", memory=GiB, availability="pause")]
    result = load_pipeline().place(replicas("web", 2, resources=Resources(0, GiB)), views)
    assert result.assignments == {"web.1": "a"}
    [(unplaced, why)] = result.unplaced
    assert unplaced.slot == 2
    assert why == "1 node not available (paused); 1 node lacks 1 GiB memory"  # tie: filter order


def test_pinned_request_considers_only_its_node() -> None:
    views = [node("a"), node("b", availability="drain")]
    wants = [
        PlacementRequest(service="agent", node_id="a"),
        PlacementRequest(service="agent", node_id="b"),
        PlacementRequest(service="agent", node_id="zz"),
    ]
    result = load_pipeline().place(wants, views)
    assert result.assignments == {"agent@a": "a"}
    assert [why for _, why in result.unplaced] == [
        "1 node not available (drained)",
        "node zz is not in the cluster",
    ]


def test_empty_cluster() -> None:
    [(_, why)] = load_pipeline().place([request()], []).unplaced
    assert why == "no nodes in the cluster"


def test_task_id_is_the_assignment_key() -> None:
    result = load_pipeline().place([request(task_id="t-1")], [node("a")])
    assert result.assignments == {"t-1": "a"}


def test_parked_node_comes_back_when_a_placement_makes_it_fit() -> None:
    # api wants a node running db; no node runs it at first, then db lands on b.
    views = [node("a"), node("b", total_tasks=5)]
    wants = [
        request("api", 1, affinities=["affinity:service==db"]),
        request("db", 1, constraints=["node.id==b"]),
        request("api", 2, affinities=["affinity:service==db"]),
    ]
    result = load_pipeline().place(wants, views)
    assert result.assignments == {"db.1": "b", "api.2": "b"}
    assert result.unplaced[0][1] == "2 nodes do not satisfy affinity:service==db"


def test_groups_share_feasibility_but_not_identity() -> None:
    wants = [request("web", slot, resources=Resources(0, GiB)) for slot in range(1, 4)]
    assert wants[0].feasibility_key == wants[2].feasibility_key
    assert wants[0].key != wants[2].key
    assert PlacementRequest(service="web", constraints=["a==b"]) == PlacementRequest(
        service="web", constraints=("a==b",)
    )


def test_interleaved_services_with_constraints_and_memory() -> None:
    views = [
        node(f"n{i}", labels={"zone": "abc"[i % 3]}, memory=(2 + i % 2) * GiB) for i in range(9)
    ]
    wants: list[PlacementRequest] = []
    for slot in range(1, 5):
        for service, zone in (("x", "a"), ("y", "b"), ("z", "c")):
            wants.append(
                request(
                    service,
                    slot,
                    constraints=[f"node.labels.zone=={zone}"],
                    resources=Resources(0, GiB),
                )
            )
    result = load_pipeline().place(wants, views)
    assert not result.unplaced
    by_id: dict[str, NodeView] = {v.id: v for v in result.nodes}
    for placed, node_id in result.placements:
        assert placed.constraints[0].endswith(by_id[node_id].labels["zone"])


def test_units() -> None:
    assert format_bytes(512 * MiB) == "512 MiB"
    assert format_bytes(3 * GiB // 2) == "1.5 GiB"
    assert format_bytes(100) == "100 B"
    assert format_cpus(CPU // 2) == "0.5 CPUs"
    assert format_cpus(CPU) == "1 CPU"
    assert format_cpus(2 * CPU) == "2 CPUs"


def test_new_services_sharing_one_heap_still_see_every_earlier_placement() -> None:
    views = [node(f"n{i}") for i in range(3)]
    wants = [request(service, 1) for service in ("a", "b", "c", "d", "e", "f")]
    spread = load_pipeline().place(wants, views)
    assert sorted(spread.assignments.values()) == ["n0", "n0", "n1", "n1", "n2", "n2"]
    binpack = load_pipeline(strategy="binpack").place(wants, views)
    assert set(binpack.assignments.values()) == {"n0"}
