"""An API over a fresh memory store, driven in-process (no sockets, no lifespan).

`api` is an uninitialised cluster; `cluster` is one after `POST /swarm/init`, with the
tokens it printed. Both run a real `ClusterMirror`, as a manager does.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from controlplane import keys
from controlplane.api.context import ApiContext
from controlplane.api.main import create_app
from controlplane.models import NodeInfo, NodeRole, NodeSpec, Task, TaskSpec, TaskState, TaskStatus
from controlplane.models.task import DesiredState
from controlplane.state import ClusterMirror
from discovery import Store, open_store
from discovery.backends.memory import MemoryStore


@dataclass
class Api:
    client: httpx.AsyncClient
    store: Store
    mirror: ClusterMirror
    context: ApiContext
    url: str
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['api']}"}

    async def init(self) -> None:
        response = await self.client.post("/swarm/init")
        assert response.status_code == 201, response.text
        body = response.json()
        self.tokens = {"api": body["api_token"], **body["join_tokens"]}
        self.client.headers.update(self.auth)

    async def add_node(
        self,
        node_id: str,
        *,
        hostname: str,
        up: bool = True,
        role: NodeRole = NodeRole.WORKER,
    ) -> None:
        """What an agent writes: its spec once, its heartbeat on a lease while up."""
        await self.store.put(keys.node_spec(node_id), NodeSpec(id=node_id, role=role).dump())
        if up:
            lease = await self.store.grant(60)
            info = NodeInfo(id=node_id, hostname=hostname, addr="10.0.0.1", engine_version="27.0")
            await self.store.put(keys.node(node_id), info.dump(), lease=lease.id)
        await self.settle()

    async def add_task(
        self,
        task_id: str,
        *,
        service: str,
        node_id: str,
        slot: int = 1,
        state: TaskState | None = None,
        desired: DesiredState = DesiredState.RUNNING,
    ) -> None:
        """What the leader and an agent write for one task."""
        task = Task(
            id=task_id,
            service=service,
            slot=slot,
            node_id=node_id,
            spec_version=1,
            spec=TaskSpec(image="nginx"),
            desired_state=desired,
            created=time.time(),
        )
        await self.store.put(keys.task(node_id, task_id), task.dump())
        if state is not None:
            status = TaskStatus(task_id=task_id, state=state, timestamp=time.time())
            await self.store.put(keys.status(task_id), status.dump())
        await self.settle()

    async def settle(self) -> None:
        revision = (await self.store.list(keys.CLUSTER)).revision
        assert await self.mirror.wait_for_revision(revision, timeout=5)


@pytest.fixture
async def api(memory_url: str) -> AsyncIterator[Api]:
    store = await open_store(memory_url)
    mirror = ClusterMirror(store)
    await mirror.start()
    context = ApiContext(store=store, view=mirror, manager_id="m-test", discovery_url=memory_url)
    app = create_app(context)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://manager") as client:
            yield Api(client=client, store=store, mirror=mirror, context=context, url=memory_url)
    finally:
        await mirror.stop()
        await store.close()
        MemoryStore.reset(memory_url.split("://", 1)[1])


@pytest.fixture
async def cluster(api: Api) -> Api:
    await api.init()
    return api
