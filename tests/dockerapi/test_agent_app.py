"""The agent endpoint's app over the process and hollow runtimes (no Docker, no cluster):
its secret, its NDJSON logs with `tail` and `follow`, and its refusals."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import httpx

from controlplane.agent.api.app import create_agent_app
from controlplane.agent.api.server import AgentEndpoint
from controlplane.agent.runtime import Runtime
from controlplane.agent.runtime.hollow import HollowRuntime
from controlplane.agent.runtime.process import ProcessRuntime
from controlplane.models import Task, TaskSpec

SECRET = "s3cret"
AUTH = {"Authorization": f"Bearer {SECRET}"}


def _task(task_id: str, script: str) -> Task:
    return Task(
        id=task_id,
        service="svc",
        slot=1,
        node_id="n1",
        spec_version=1,
        spec=TaskSpec(image="none", command=["/bin/sh", "-c", script]),
    )


def _client(runtime: Runtime) -> httpx.AsyncClient:
    app = create_agent_app(runtime=runtime, secret=SECRET)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agent")


async def _lines(client: httpx.AsyncClient, path: str) -> list[dict[str, object]]:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return [json.loads(x) for x in response.text.splitlines() if x]


def test_process_task_logs_with_tail_and_follow(tmp_path: Path) -> None:
    """Through a served endpoint (a real socket: following is a response that never ends)."""

    async def scenario() -> None:
        runtime = ProcessRuntime(cluster_id="c", node_id="n1", state_dir=tmp_path)
        endpoint = AgentEndpoint(runtime=runtime, host="127.0.0.1", port=0)
        serving = asyncio.create_task(endpoint.serve())
        auth = {"Authorization": f"Bearer {endpoint.secret}"}
        try:
            await runtime.ensure(_task("t1", "echo one; echo two >&2; echo three; sleep 30"))
            async with httpx.AsyncClient(base_url=endpoint.url, headers=auth) as client:
                deadline = time.monotonic() + 20
                lines: list[dict[str, object]] = []
                while len(lines) < 3 and time.monotonic() < deadline:
                    lines = await _lines(client, "/tasks/t1/logs")
                    await asyncio.sleep(0.1)
                assert [x["line"] for x in lines] == ["one", "two", "three"]
                tail = await _lines(client, "/tasks/t1/logs?tail=1")
                assert [x["line"] for x in tail] == ["three"]

                async with client.stream("GET", "/tasks/t1/logs?follow=true&tail=1") as response:
                    assert response.status_code == 200
                    first = json.loads(await anext(response.aiter_lines()))
                    assert first == {"stream": "stdout", "line": "three", "time": None}
        finally:
            endpoint.stop()
            await asyncio.wait_for(serving, timeout=10)
            await runtime.remove("t1")
            await runtime.close()

    asyncio.run(scenario())


def test_refusals(tmp_path: Path) -> None:
    async def scenario() -> None:
        process = ProcessRuntime(cluster_id="c", node_id="n1", state_dir=tmp_path)
        hollow = HollowRuntime(node_id="n1", nano_cpus=1, memory_bytes=1)
        async with _client(process) as client:
            assert (await client.get("/tasks/t1/logs")).status_code == 401
            wrong = {"Authorization": "Bearer nope"}
            assert (await client.get("/tasks/t1/logs", headers=wrong)).status_code == 401
            unknown = await client.get("/tasks/nosuch/logs", headers=AUTH)
            assert unknown.status_code == 404
            assert "nosuch" in unknown.json()["detail"]
            bad = await client.get("/tasks/t1/logs?tail=many", headers=AUTH)
            assert bad.status_code == 422
            assert "tail" in bad.json()["detail"]
            images = await client.get("/images", headers=AUTH)
            assert images.status_code == 501
            assert "process" in images.json()["detail"]
        async with _client(hollow) as client:
            refused = await client.get("/tasks/t1/logs", headers=AUTH)
            assert refused.status_code == 501
            assert "hollow" in refused.json()["detail"]
        await process.close()

    asyncio.run(scenario())


def test_the_endpoint_answers_without_nagles_wait(tmp_path: Path) -> None:
    """Its accepted connections have Nagle off (asyncio does that only for a listener
    created as TCP): a small answer in two writes must not wait ~40 ms for an ACK."""

    async def scenario() -> None:
        runtime = HollowRuntime(node_id="n1", nano_cpus=1, memory_bytes=1)
        endpoint = AgentEndpoint(runtime=runtime, host="127.0.0.1", port=0)
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=endpoint._socket)
        try:
            _, writer = await asyncio.open_connection(
                "127.0.0.1", int(endpoint.url.rsplit(":", 1)[1])
            )
            assert await asyncio.wait_for(seen, 5) != 0
            writer.close()
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())
