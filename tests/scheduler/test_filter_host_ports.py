from __future__ import annotations

import pytest
from scheduler_helpers import node, replicas, request

from scheduler import PortRequest, load_pipeline
from scheduler.filters.host_ports import HostPortsFilter

CASES = [
    # (in use, wanted, passes)
    (set(), [], True),
    (set(), [("tcp", 80)], True),
    ({("tcp", 80)}, [("tcp", 80)], False),
    ({("tcp", 80)}, [("udp", 80)], True),
    ({("tcp", 80)}, [("tcp", 8080)], True),
    ({("tcp", 80), ("tcp", 443)}, [("tcp", 8080), ("tcp", 443)], False),
    ({("tcp", 80)}, [], True),
]


@pytest.mark.parametrize(("in_use", "wanted", "passes"), CASES)
def test_host_ports_filter(
    in_use: set[tuple[str, int]], wanted: list[tuple[str, int]], passes: bool
) -> None:
    view = node(host_ports_in_use=in_use)
    ports = [PortRequest(*port) for port in wanted]
    assert HostPortsFilter().check(request(host_ports=ports), view) is passes


def test_host_port_explanation_names_the_port() -> None:
    wants = request(host_ports=[PortRequest("tcp", 80)])
    views = [node("a", host_ports_in_use={("tcp", 80)}), node("b", host_ports_in_use={("tcp", 80)})]
    assert HostPortsFilter().explain_failures(wants, views) == [
        (2, "2 nodes have host port 80/tcp in use")
    ]


def test_a_pass_never_puts_one_host_port_twice_on_a_node() -> None:
    wants = replicas("web", 3, host_ports=[PortRequest("tcp", 80)])
    result = load_pipeline().place(wants, [node("a"), node("b")])
    assert sorted(result.assignments.values()) == ["a", "b"]
    [(_, why)] = result.unplaced
    assert why == "2 nodes have host port 80/tcp in use"
