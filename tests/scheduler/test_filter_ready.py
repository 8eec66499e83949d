from __future__ import annotations

import pytest
from scheduler_helpers import node, request

from scheduler.filters.ready import ReadyFilter

CASES = [
    # (ready, availability, passes, reason)
    (True, "active", True, ""),
    (True, "pause", False, "paused"),
    (True, "drain", False, "drained"),
    (False, "active", False, "down"),
    (False, "drain", False, "down"),
]


@pytest.mark.parametrize(("ready", "availability", "passes", "reason"), CASES)
def test_ready_filter(ready: bool, availability: str, passes: bool, reason: str) -> None:
    view = node(ready=ready, availability=availability)
    assert ReadyFilter().check(request(), view) is passes
    if not passes:
        [(count, phrase)] = ReadyFilter().explain_failures(request(), [view])
        assert (count, phrase) == (1, f"1 node not available ({reason})")


def test_ready_explains_each_reason_with_its_count() -> None:
    views = [
        node("a", availability="drain"),
        node("b", availability="drain"),
        node("c", ready=False),
    ]
    assert sorted(ReadyFilter().explain_failures(request(), views)) == [
        (1, "1 node not available (down)"),
        (2, "2 nodes not available (drained)"),
    ]
    assert ReadyFilter().explain(request(), 3) == "3 nodes not available"
