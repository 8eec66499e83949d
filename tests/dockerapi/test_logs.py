"""Task logs through the REST API (`/tasks/{id}/logs`, `/services/{name}/logs`) and the
agent endpoint they come from, on a real cluster.

The contract the `shoal service logs` CLI reads: NDJSON, one object per line with the
task, service, slot, node and stream; `tail`, `timestamps` and `follow`; 404 for an
unknown service or task; a node that cannot be asked costs its tasks' lines and gives
one error object instead.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import httpx
import pytest

from controlplane import keys
from controlplane.models import NodeInfo
from discovery import open_store
from tests.e2e.conftest import Cluster, poll
from tests.harness.images import shell_until_sigterm

SCRIPT = 'echo "out-$(hostname)"; echo "err-line" >&2; echo second-out'


def _logs(swarm: Cluster, path: str) -> tuple[int, list[dict[str, Any]], str]:
    request = urllib.request.Request(f"{swarm.api.url}{path}")
    request.add_header("Authorization", f"Bearer {swarm.token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
            kind = response.headers.get("Content-Type", "")
            return response.status, [json.loads(x) for x in text.splitlines() if x], kind
    except urllib.error.HTTPError as exc:
        return exc.code, [json.loads(exc.read() or b"null")], ""


def _three_lines_each(swarm: Cluster, service: str, count: int) -> list[dict[str, Any]]:
    def complete() -> list[dict[str, Any]] | None:
        status, items, _ = _logs(swarm, f"/services/{service}/logs")
        lines = [i for i in items if "line" in i]
        return lines if status == 200 and len(lines) == 3 * count else None

    found: list[dict[str, Any]] = poll(complete, within=60, what=f"{service}'s log lines")
    return found


def test_service_logs_are_ndjson_with_task_node_and_stream(swarm: Cluster) -> None:
    swarm.create("chatty", replicas=2, command=shell_until_sigterm(SCRIPT))
    swarm.running("chatty", 2, within=60)
    lines = _three_lines_each(swarm, "chatty", 2)
    tasks = {t["id"]: t for t in swarm.tasks("chatty")}
    hostnames = {n["id"]: n["hostname"] for n in swarm.call("GET", "/nodes")}
    for item in lines:
        task = tasks[item["task_id"]]
        assert item["service"] == "chatty"
        assert item["slot"] == task["slot"]
        assert item["node_id"] == task["node_id"]
        assert item["node"] == hostnames[task["node_id"]]
        assert item["time"] is None
    by_stream = sorted((i["stream"], i["line"]) for i in lines if i["task_id"] == item["task_id"])
    assert by_stream[0] == ("stderr", "err-line")
    assert [s for s, _ in by_stream].count("stdout") == 2
    assert ("stdout", "second-out") in by_stream
    _, _, kind = _logs(swarm, "/services/chatty/logs")
    assert kind.startswith("application/x-ndjson")

    task_id = item["task_id"]
    status, last, _ = _logs(swarm, f"/tasks/{task_id}/logs?tail=1&timestamps=true")
    assert status == 200
    assert len(last) == 1
    assert last[0]["task_id"] == task_id
    assert last[0]["time"][:2] == "20"
    assert last[0]["line"] in ("second-out", "err-line")  # the two streams' last line


def test_follow_streams_new_lines(swarm: Cluster) -> None:
    ticker = "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done"
    swarm.create("ticker", command=shell_until_sigterm(ticker))
    swarm.running("ticker", 1, within=60)
    poll(lambda: _logs(swarm, "/services/ticker/logs")[1], within=30, what="a first tick")

    async def follow() -> list[str]:
        seen: list[str] = []
        headers = {"Authorization": f"Bearer {swarm.token}"}
        async with (
            httpx.AsyncClient(base_url=swarm.api.url, headers=headers, timeout=30) as client,
            client.stream("GET", "/services/ticker/logs?follow=true&tail=0") as response,
        ):
            assert response.status_code == 200
            async for text in response.aiter_lines():
                if text:
                    seen.append(json.loads(text)["line"])
                if len(seen) == 3:
                    break
        return seen

    seen = asyncio.run(follow())
    numbers = [int(line.removeprefix("tick-")) for line in seen]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == 3


def test_following_a_service_follows_its_new_tasks(swarm: Cluster) -> None:
    ticker = "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.3; done"
    swarm.create("grower", command=shell_until_sigterm(ticker))
    swarm.running("grower", 1, within=60)

    async def follow() -> set[str]:
        tasks_seen: set[str] = set()
        headers = {"Authorization": f"Bearer {swarm.token}"}
        async with (
            httpx.AsyncClient(base_url=swarm.api.url, headers=headers, timeout=60) as client,
            client.stream("GET", "/services/grower/logs?follow=true&tail=0") as response,
        ):
            assert response.status_code == 200
            scaled = asyncio.create_task(
                asyncio.to_thread(swarm.call, "POST", "/services/grower/scale", {"replicas": 2})
            )
            async for text in response.aiter_lines():
                if text and "line" in (item := json.loads(text)):
                    tasks_seen.add(item["task_id"])
                if len(tasks_seen) == 2:
                    break
            await scaled
        return tasks_seen

    seen = asyncio.run(asyncio.wait_for(follow(), timeout=120))
    assert seen == {task["id"] for task in swarm.tasks("grower")}


def test_bad_requests_name_what_is_wrong(swarm: Cluster) -> None:
    status, [body], _ = _logs(swarm, "/services/no-such-service/logs")
    assert status == 404
    assert "no-such-service" in body["detail"]
    status, [body], _ = _logs(swarm, "/tasks/nosuchtask/logs")
    assert status == 404
    assert "nosuchtask" in body["detail"]
    swarm.create("quiet", command=shell_until_sigterm())
    status, [body], _ = _logs(swarm, "/services/quiet/logs?tail=lots")
    assert status == 422
    assert body["detail"][0]["loc"] == ["query", "tail"]
    request = urllib.request.Request(f"{swarm.api.url}/services/quiet/logs")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401


def _node_records(swarm: Cluster) -> list[NodeInfo]:
    async def read() -> list[NodeInfo]:
        store = await open_store(swarm.discovery)
        try:
            listing = await store.list(keys.NODES)
            return [NodeInfo.load(kv.value) for kv in listing.items]
        finally:
            await store.close()

    return asyncio.run(read())


def test_agent_endpoint_needs_its_secret_which_the_rest_api_never_shows(
    swarm: Cluster,
) -> None:
    records = _node_records(swarm)
    assert len(records) == 3
    for record in records:
        assert record.agent_api.startswith(f"http://{record.addr}:")
        assert record.agent_secret
        assert httpx.get(f"{record.agent_api}/images", timeout=10).status_code == 401
        wrong = {"Authorization": "Bearer not-the-secret"}
        assert httpx.get(f"{record.agent_api}/images", headers=wrong, timeout=10).status_code == 401
        right = {"Authorization": f"Bearer {record.agent_secret}"}
        images = httpx.get(f"{record.agent_api}/images", headers=right, timeout=10)
        assert images.status_code == 200
        assert any(swarm.image in (i.get("RepoTags") or []) for i in images.json())
        missing = httpx.get(f"{record.agent_api}/tasks/nosuch/inspect", headers=right, timeout=10)
        assert missing.status_code == 404
    listed = json.dumps(swarm.call("GET", "/nodes"))
    for record in records:
        assert record.agent_secret not in listed


def test_a_down_node_gives_an_error_object_instead_of_its_lines(swarm: Cluster) -> None:
    """Last: it stops an agent (a node that is down cannot give its tasks' logs)."""
    swarm.create("spread", replicas=3, command=shell_until_sigterm(SCRIPT),
                 placement={"max_replicas_per_node": 1})  # fmt: skip
    swarm.running("spread", 3, within=60)
    _three_lines_each(swarm, "spread", 3)
    victim = swarm.agents[2]
    victim.stop()
    down = swarm.node_id_of(victim)
    poll(
        lambda: any(n["id"] == down and n["status"] == "down" for n in swarm.call("GET", "/nodes")),
        within=30,
        what="the stopped node down",
    )
    status, items, _ = _logs(swarm, "/services/spread/logs")
    assert status == 200
    errors = [i for i in items if "error" in i]
    assert errors
    assert all(e["node_id"] == down for e in errors)
    assert "down" in errors[0]["error"]
    assert not [i for i in items if "line" in i and i["node_id"] == down]
    assert len([i for i in items if "line" in i]) >= 6  # the two live nodes' tasks
