"""A `Manager` run in-process: it serves, registers, leads, reconciles, and cleans up."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import httpx
import pytest

from controlplane import keys
from controlplane.manager.config import ConfigError, ListenAddress, ManagerConfig
from controlplane.manager.process import Manager
from controlplane.manager.registration import Registration
from controlplane.models import NodeInfo, NodeSpec
from discovery import open_store
from discovery.backends.memory import MemoryStore

DEADLINE = 10.0


async def eventually(condition: Callable[[], object], *, within: float = DEADLINE) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_manager_serves_leads_reconciles_and_leaves_no_trace(memory_url: str) -> None:
    store = await open_store(memory_url)
    config = ManagerConfig(
        discovery=memory_url, listen=ListenAddress("127.0.0.1", 0), lease_ttl=1.0, manager_id="m1"
    )
    manager = Manager(config, store=store)
    running = asyncio.create_task(manager.run())
    try:
        await asyncio.wait_for(manager.ready.wait(), DEADLINE)
        assert manager.api_url.startswith("http://127.0.0.1:")
        assert not manager.api_url.endswith(":0")
        await eventually(lambda: manager.is_leader)
        assert await store.get(keys.manager("m1")) is not None

        async with httpx.AsyncClient(base_url=manager.api_url) as client:
            health = (await client.get("/health")).json()
            assert health == {**health, "manager_id": "m1", "leader": True}
            token = (await client.post("/swarm/init")).json()["api_token"]
            client.headers["Authorization"] = f"Bearer {token}"
            lease = await store.grant(60)
            info = NodeInfo(id="n1", hostname="alpha", addr="10.0.0.1")
            await store.put(keys.node("n1"), info.dump(), lease=lease.id)
            await store.put(keys.node_spec("n1"), NodeSpec(id="n1").dump())
            created = await client.post(
                "/services", json={"name": "web", "image": "nginx", "replicas": 2}
            )
            assert created.status_code == 201

            async def placed() -> int:
                tasks = (await client.get("/tasks", params={"service": "web"})).json()
                return sum(1 for t in tasks if t["node_id"] == "n1")

            deadline = time.monotonic() + DEADLINE
            while await placed() < 2:  # the leader's reconciler wrote the tasks
                assert time.monotonic() < deadline, "the leader did not place the tasks"
                await asyncio.sleep(0.05)
            leader = (await client.get("/swarm")).json()["leader"]
            assert leader["manager_id"] == "m1"
            assert leader["term"] > 0
            metrics = (await client.get("/metrics")).text
            assert "shoal_manager_is_leader 1.0" in metrics
            assert "shoal_leader_terms_won_total 1.0" in metrics
    finally:
        manager.stop()
        await asyncio.wait_for(running, DEADLINE)
    assert await store.get(keys.manager("m1")) is None  # deregistered
    assert await store.get(keys.LEADER) is None  # resigned
    await store.close()
    MemoryStore.reset(memory_url.split("://", 1)[1])


async def test_a_taken_port_is_a_clear_error(memory_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = ManagerConfig(discovery=memory_url, listen=ListenAddress("127.0.0.1", port))
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            await Manager(config).run()


def test_listen_addresses() -> None:
    assert ListenAddress.parse("127.0.0.1:2377") == ListenAddress("127.0.0.1", 2377)
    assert ListenAddress.parse(":2377") == ListenAddress("0.0.0.0", 2377)
    assert ListenAddress.parse("[::1]:0") == ListenAddress("::1", 0)
    for bad in ("2377", "host:", "host:99999", "host:http"):
        with pytest.raises(ConfigError, match="--listen"):
            ListenAddress.parse(bad)


async def test_a_failing_part_stops_the_manager_with_its_reason(
    memory_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controlplane.manager import process

    async def broken(self: object) -> None:
        await asyncio.sleep(0.2)
        raise RuntimeError("the registration broke")

    monkeypatch.setattr(Registration, "run", broken)
    store = await open_store(memory_url)
    config = ManagerConfig(
        discovery=memory_url, listen=ListenAddress("127.0.0.1", 0), lease_ttl=1.0, manager_id="m1"
    )
    with pytest.raises(process.ManagerFailed, match="registration") as failed:
        await asyncio.wait_for(Manager(config, store=store).run(), DEADLINE)
    assert isinstance(failed.value.__cause__, RuntimeError)
    assert await store.get(keys.LEADER) is None  # it resigned on the way out
    await store.close()
    MemoryStore.reset(memory_url.split("://", 1)[1])
