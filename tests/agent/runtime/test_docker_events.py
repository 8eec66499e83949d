"""The Docker event pump survives a dropped stream (no engine needed: a scripted one).

Restarting the harness's shared engine would disturb everyone else's tests, so the
reconnection is checked against a stand-in API whose first stream fails and whose
second ends: the pump must reopen it from the last event it saw, and keep delivering.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from controlplane.agent.runtime import LABEL_TASK
from controlplane.agent.runtime.docker import _EventPump
from controlplane.agent.runtime.feed import ChangeStream


def event(task_id: str, time_nano: int) -> dict[str, Any]:
    return {
        "Type": "container",
        "Action": "die",
        "timeNano": time_nano,
        "Actor": {"ID": f"c-{task_id}", "Attributes": {LABEL_TASK: task_id}},
    }


class ScriptedStream:
    def __init__(self, events: list[dict[str, Any]], *, then_fail: bool) -> None:
        self.events = events
        self.then_fail = then_fail

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self.events
        if self.then_fail:
            raise ConnectionError("engine went away")

    def close(self) -> None:
        return None


class ScriptedAPI:
    """First call: refused; second: one event then a dropped connection; then events."""

    def __init__(self) -> None:
        self.since: list[str] = []

    def events(self, *, since: str, filters: dict[str, Any], decode: bool) -> ScriptedStream:
        self.since.append(since)
        if len(self.since) == 1:
            raise ConnectionError("connection refused")
        if len(self.since) == 2:
            return ScriptedStream([event("t1", 5_000_000_000)], then_fail=True)
        return ScriptedStream([event("t2", 6_000_000_000)], then_fail=False)


async def test_the_pump_reconnects_from_the_last_event_and_keeps_delivering() -> None:
    api = ScriptedAPI()
    forgotten: list[str] = []
    pump = _EventPump(api=lambda: api, filters={}, since=1.0, forget=forgotten.append)
    pump.RETRY_MIN = 0.01
    stream = ChangeStream(on_close=pump.stop)
    pump.start(loop=asyncio.get_running_loop(), deliver=stream.publish)
    try:
        assert await asyncio.wait_for(anext(stream), 5) == "t1"
        assert await asyncio.wait_for(anext(stream), 5) == "t2"
    finally:
        stream.close()

    assert api.since[:3] == ["1.000000000", "1.000000000", "5.000000000"]
    assert forgotten[:2] == ["c-t1", "c-t2"]
