"""`/events`: a client sees service, node and task changes as server-sent events."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from controlplane.models import TaskState
from tests.api.conftest import Api

DEADLINE = 10.0


def parse_sse(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if "data" in fields:
            events.append(
                {"event": fields.get("event"), "id": fields.get("id"), **json.loads(fields["data"])}
            )
    return events


async def stream_while(cluster: Api, params: dict[str, str], change: Any) -> list[dict[str, Any]]:
    """Open the stream, then keep making changes until it has delivered `limit` events."""
    request = asyncio.create_task(cluster.client.get("/events", params=params))
    deadline = time.monotonic() + DEADLINE
    step = 0
    while not request.done():
        assert time.monotonic() < deadline, "no event arrived"
        step += 1
        await change(step)
        await asyncio.wait({request}, timeout=0.05)
    response = request.result()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    return parse_sse(response.text)


async def test_a_service_change_reaches_the_stream(cluster: Api) -> None:
    await cluster.client.post("/services", json={"name": "web", "image": "nginx"})

    async def scale(step: int) -> None:
        response = await cluster.client.post("/services/web/scale", json={"replicas": step + 1})
        assert response.status_code == 200

    events = await stream_while(cluster, {"types": "service", "limit": "1"}, scale)
    assert len(events) == 1
    event = events[0]
    assert event["event"] == "service"
    assert event["type"] == "service"
    assert event["action"] == "update"
    assert event["id"] == "web"
    assert int(event["attributes"]["spec_version"]) >= 2
    assert event["revision"] > 0


async def test_node_and_task_changes_reach_the_stream(cluster: Api) -> None:
    async def add_node(step: int) -> None:
        await cluster.add_node(f"n{step}", hostname=f"host{step}")

    [node] = await stream_while(cluster, {"types": "node", "limit": "1"}, add_node)
    assert node["type"] == "node"
    assert node["action"] == "create"
    assert node["attributes"]["hostname"] == f"host{node['id'][1:]}"
    assert node["attributes"]["status"] == "ready"

    async def add_task(step: int) -> None:
        await cluster.add_task(f"t{step}", service="web", node_id="n1", state=TaskState.RUNNING)

    [task] = await stream_while(cluster, {"types": "task", "limit": "1"}, add_task)
    assert task["type"] == "task"
    assert task["action"] == "create"
    assert task["attributes"]["service"] == "web"
    assert task["attributes"]["state"] == "running"


async def test_a_removed_service_is_a_remove_event(cluster: Api) -> None:
    async def create_then_remove(step: int) -> None:
        await cluster.client.post("/services", json={"name": f"s{step}", "image": "nginx"})
        if step > 1:
            await cluster.client.delete(f"/services/s{step - 1}")

    events = await stream_while(cluster, {"types": "service", "limit": "2"}, create_then_remove)
    assert [e["action"] for e in events] in (
        ["create", "remove"],
        ["create", "create"],
        ["remove", "create"],
    )
    removes = [e for e in events if e["action"] == "remove"]
    assert all(e["attributes"]["name"] == e["id"] for e in removes)


async def test_an_unknown_event_type_is_refused(cluster: Api) -> None:
    response = await cluster.client.get("/events", params={"types": "service,weather"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "types"]


async def test_streams_end_when_the_manager_shuts_down(cluster: Api) -> None:
    request = asyncio.create_task(cluster.client.get("/events"))
    await asyncio.sleep(0)  # let the stream start; it must end however far it got
    cluster.context.closing.set()
    response = await asyncio.wait_for(request, DEADLINE)
    assert response.status_code == 200
    assert parse_sse(response.text) == []
