"""The leader's routing tables, on the in-memory store: what a table holds, that it
follows task changes, that it goes with its service, and that the fence holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from controlplane import keys
from controlplane.manager.routes import RouteWriter
from controlplane.models import NodeInfo, ServiceSpec, Task, TaskSpec, TaskState, TaskStatus
from controlplane.models.route import RouteTable
from controlplane.models.service import PortConfig, PublishMode, ServiceRecord
from controlplane.models.task import DesiredState, Endpoint
from controlplane.state import ClusterMirror
from discovery import Store, open_store
from discovery.election import NotLeader

WEB_PORTS = [
    PortConfig(target=80, published=8080),
    PortConfig(target=81, published=9000, mode=PublishMode.HOST),
    PortConfig(target=53, published=5353, protocol="udp"),
]


async def put_node(store: Store, node_id: str, addr: str) -> None:
    await store.put(keys.node(node_id), NodeInfo(id=node_id, hostname=node_id, addr=addr).dump())


async def put_service(store: Store, name: str, ports: list[PortConfig]) -> None:
    spec = ServiceSpec(name=name, image="busybox", ports=ports)
    await store.put(keys.service(name), ServiceRecord(id=name, spec=spec).dump())


async def put_task(
    store: Store,
    task_id: str,
    *,
    node: str,
    addr: str,
    port: int,
    state: TaskState = TaskState.RUNNING,
    desired: DesiredState = DesiredState.RUNNING,
    service: str = "web",
) -> None:
    task = Task(
        id=task_id,
        service=service,
        node_id=node,
        spec_version=1,
        spec=TaskSpec(image="busybox", ports=WEB_PORTS),
        desired_state=desired,
    )
    status = TaskStatus(
        task_id=task_id,
        state=state,
        endpoints=[
            Endpoint(target_port=80, published_port=port, host_ip=addr),
            Endpoint(target_port=81, published_port=9000, host_ip=addr),
        ],
    )
    await store.put(keys.task(node, task_id), task.dump())
    await store.put(keys.status(task_id), status.dump())


async def table(store: Store, name: str) -> RouteTable | None:
    kv = await store.get(keys.route(name))
    return RouteTable.load(kv.value) if kv is not None else None


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 5.0) -> None:
    """Poll `check` until it holds; TimeoutError after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)


@pytest.fixture
async def store(memory_url: str) -> AsyncIterator[Store]:
    opened = await open_store(memory_url)
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_table_lists_running_ingress_endpoints_and_follows_changes(store: Store) -> None:
    token = await store.put(keys.LEADER, b"{}")
    await put_node(store, "n1", "127.0.0.2")
    await put_node(store, "n2", "127.0.0.3")
    await put_service(store, "web", WEB_PORTS)
    await put_service(store, "quiet", [PortConfig(target=80, mode=PublishMode.HOST)])
    await put_task(store, "t1", node="n1", addr="127.0.0.2", port=40001)
    await put_task(store, "t2", node="n2", addr="127.0.0.3", port=40002)
    await put_task(store, "t3", node="n2", addr="127.0.0.3", port=40003, state=TaskState.STARTING)
    await put_task(store, "t4", node="gone", addr="127.0.0.9", port=40004)  # node down

    async with ClusterMirror(store) as mirror:
        writer = RouteWriter(store, mirror, fencing_token=token)
        running = asyncio.create_task(writer.run())
        try:

            async def backends() -> list[tuple[str, int]] | None:
                found = await table(store, "web")
                if found is None:
                    return None
                (route,) = found.ports  # only the ingress TCP port
                assert (route.published_port, route.target_port) == (8080, 80)
                return [(b.host, b.port) for b in route.backends]

            async def two() -> bool:
                return await backends() == [("127.0.0.2", 40001), ("127.0.0.3", 40002)]

            await eventually(two)
            assert await table(store, "quiet") is None  # no ingress port: no table

            # t1 stops, t3 runs: the table follows
            await put_task(
                store, "t1", node="n1", addr="127.0.0.2", port=40001, desired=DesiredState.SHUTDOWN
            )
            await put_task(store, "t3", node="n2", addr="127.0.0.3", port=40003)

            async def changed() -> bool:
                return await backends() == [("127.0.0.3", 40002), ("127.0.0.3", 40003)]

            await eventually(changed, within=1.0)  # "within a second"
            writes = writer.writes
            await store.put(keys.node("n3"), NodeInfo(id="n3", hostname="n3", addr="x").dump())
            await asyncio.sleep(0.3)
            assert writer.writes == writes  # nothing changed for the mesh: nothing written

            await store.delete(keys.service("web"))

            async def removed() -> bool:
                return await table(store, "web") is None

            await eventually(removed)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)


async def test_a_deposed_leader_writes_no_table(store: Store) -> None:
    token = await store.put(keys.LEADER, b"{}")
    await put_node(store, "n1", "127.0.0.2")
    async with ClusterMirror(store) as mirror:
        writer = RouteWriter(store, mirror, fencing_token=token)
        await store.put(keys.LEADER, b'{"another": 1}')  # another term began
        running = asyncio.create_task(writer.run())
        await put_service(store, "web", WEB_PORTS)
        with pytest.raises(NotLeader):
            async with asyncio.timeout(5):
                await running
    assert await table(store, "web") is None


async def test_a_new_leader_removes_tables_no_service_needs(store: Store) -> None:
    """Tables written by an earlier leader for services removed since are deleted."""
    stale = RouteTable(service="gone").dump()
    await store.put(keys.route("gone"), stale)
    token = await store.put(keys.LEADER, b"{}")
    await put_node(store, "n1", "127.0.0.2")
    await put_service(store, "web", WEB_PORTS)
    async with ClusterMirror(store) as mirror:
        running = asyncio.create_task(RouteWriter(store, mirror, fencing_token=token).run())
        try:

            async def swept() -> bool:
                return await table(store, "gone") is None and await table(store, "web") is not None

            await eventually(swept)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
