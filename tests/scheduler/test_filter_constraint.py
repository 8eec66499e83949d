from __future__ import annotations

import pytest
from scheduler_helpers import GiB, node, replicas, request

from scheduler import (
    ConstraintError,
    NodeView,
    Platform,
    Resources,
    load_pipeline,
    parse_constraint,
)
from scheduler.filters.constraint import ConstraintFilter


def target() -> NodeView:
    return node(
        "id-7f3a",
        hostname="worker-2",
        addr="10.1.2.3",
        role="manager",
        platform=Platform("linux", "x86_64"),
        labels={"zone": "eu-1a", "disk": "ssd"},
        engine_labels={"storagedriver": "overlay2", "region": "us-east"},
    )


CASES = [
    # swarm mode syntax
    ("node.id==id-7f3a", True),
    ("node.id!=id-7f3a", False),
    ("node.hostname==worker-2", True),
    ("node.hostname == WORKER-2", True),  # spaces around the operator; case-insensitive
    ("node.hostname!=worker-1", True),
    ("node.ip==10.1.2.3", True),
    ("node.ip==10.1.2.4", False),
    ("node.ip==10.1.0.0/16", True),
    ("node.ip!=10.1.0.0/16", False),
    ("node.ip==192.168.0.0/16", False),
    ("node.role==manager", True),
    ("node.role!=manager", False),
    ("node.platform.os==linux", True),
    ("node.platform.os==windows", False),
    ("node.platform.arch==amd64", True),  # x86_64 is amd64
    ("node.platform.arch==x86_64", True),
    ("node.platform.arch==arm64", False),
    ("node.labels.zone==eu-1a", True),
    ("node.labels.zone!=eu-1a", False),
    ("node.labels.zone==eu-1b", False),
    ("node.labels.missing==x", False),
    ("node.labels.missing!=x", True),  # a missing label differs from everything
    ("engine.labels.storagedriver==overlay2", True),
    ("engine.labels.storagedriver!=overlay2", False),
    ("node.labels.zone==eu-*", False),  # no globs in swarm mode syntax
    # classic Swarm syntax
    ("constraint:node==worker-2", True),
    ("constraint:node==id-7f3a", True),  # node matches hostname or id
    ("constraint:node!=worker-2", False),
    ("constraint:node==worker-*", True),
    ("constraint:node==worker-[13]", False),
    ("constraint:node==/worker-[0-9]+/", True),
    ("constraint:node==/worker/", False),  # a regex must match the whole value
    ("constraint:node!=/worker-[3-9]/", True),
    ("constraint:region==us-east", True),  # engine label
    ("constraint:region==us-*", True),
    ("constraint:region!=us-*", False),
    ("constraint:zone==eu-1?", True),  # falls back to an operator label
    ("constraint:storagedriver==/overlay.*/", True),
    ("constraint:missing==x", False),
    ("constraint:missing!=x", True),
    ("constraint:node.labels.disk==ss*", True),
    ("constraint:node.ip==10.1.2.0/24", True),
    # soft forms: checked like hard ones by the filter; the pipeline drops them
    ("constraint:region==~us-east", True),
    ("constraint:region==~eu-west", False),
    ("constraint:region!=~us-east", False),
    ("node.labels.zone==~eu-1a", True),
]


@pytest.mark.parametrize(("text", "passes"), CASES)
def test_constraint_filter(text: str, passes: bool) -> None:
    assert ConstraintFilter().check(request(constraints=[text]), target()) is passes


def test_all_constraints_must_hold() -> None:
    both = request(constraints=["node.role==manager", "node.labels.zone==eu-1a"])
    one = request(constraints=["node.role==manager", "node.labels.zone==eu-1b"])
    assert ConstraintFilter().check(both, target())
    assert not ConstraintFilter().check(one, target())


@pytest.mark.parametrize(
    ("text", "soft"),
    [("constraint:a==~b", True), ("constraint:a!=~b", True), ("constraint:a==b", False)],
)
def test_soft_flag(text: str, soft: bool) -> None:
    assert parse_constraint(text).soft is soft


BAD = [
    ("node.zone==a", "unknown constraint key 'node.zone'"),
    ("nodes.labels.x==a", "unknown constraint key"),
    ("node.labels.==a", "unknown constraint key"),
    ("node.role=manager", "operator '='"),
    ("node.role>=manager", "operator '>='"),
    ("node.role~=manager", "operator"),
    ("node.role", "no operator"),
    ("node.role==", "missing value"),
    ("==manager", "missing key"),
    ("node.ip==10.0.0.0/33", "node.ip takes an address or a CIDR"),
    ("constraint:region=us", "operator '='"),
    ("constraint:region===us", "unknown operator '==='"),
    ("constraint:reg ion==us", "invalid key"),
    ("constraint:node==/[/", "invalid regular expression"),
    ("constraint:engine.foo==x", "unknown constraint key"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_constraints_are_validation_errors(text: str, message: str) -> None:
    with pytest.raises(ConstraintError) as info:
        parse_constraint(text)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_key_error_lists_the_known_keys() -> None:
    with pytest.raises(ConstraintError) as info:
        parse_constraint("node.zone==a")
    assert "node.labels.<key>" in str(info.value)
    assert "node.hostname" in str(info.value)


def test_soft_constraint_is_dropped_when_no_node_satisfies_it() -> None:
    nodes = [node("a", labels={"zone": "a"}), node("b", labels={"zone": "b"})]
    pipeline = load_pipeline()
    wants_c = replicas("web", 2, constraints=["constraint:zone==~c"])
    result = pipeline.place(wants_c, nodes)
    assert not result.unplaced
    assert sorted(result.assignments.values()) == ["a", "b"]


def test_soft_constraint_is_kept_while_a_node_satisfies_it() -> None:
    nodes = [node("a", labels={"zone": "a"}, memory=2 * GiB), node("b", labels={"zone": "b"})]
    wants_a = replicas(
        "web", 3, constraints=["constraint:zone==~a"], resources=Resources(memory_bytes=GiB)
    )
    result = load_pipeline().place(wants_a, nodes)
    # Two fit on a; the third falls back to b once a is full.
    assert [node_id for _, node_id in result.placements] == ["a", "a", "b"]


def test_hard_constraints_stay_when_soft_ones_are_dropped() -> None:
    nodes = [node("a", labels={"zone": "a"}), node("b", labels={"zone": "b"})]
    wants = [request(constraints=["node.labels.zone==b", "constraint:disk==~ssd"])]
    result = load_pipeline().place(wants, nodes)
    assert result.assignments == {"web.1": "b"}


def test_unplaced_after_dropping_soft_explains_the_hard_rules() -> None:
    nodes = [node("a", labels={"zone": "a"})]
    wants = [request(constraints=["node.labels.zone==b", "constraint:disk==~ssd"])]
    [(_, why)] = load_pipeline().place(wants, nodes).unplaced
    assert why == "1 node does not satisfy node.labels.zone==b"


def test_invalid_constraint_at_place_time_is_unplaced_with_the_error() -> None:
    [(_, why)] = load_pipeline().place([request(constraints=["node.zone==a"])], [node()]).unplaced
    assert "unknown constraint key 'node.zone'" in why
