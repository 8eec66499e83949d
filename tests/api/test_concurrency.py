"""Any manager may write desired state: concurrent writers through two managers lose nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from controlplane import keys
from controlplane.api.context import ApiContext
from controlplane.api.main import create_app
from controlplane.models import NodeSpec
from controlplane.state import ClusterMirror
from discovery import open_store
from tests.api.conftest import Api


@pytest.fixture
async def second(cluster: Api) -> AsyncIterator[httpx.AsyncClient]:
    """Another manager on the same store, with its own mirror."""
    store = await open_store(cluster.url)
    mirror = ClusterMirror(store)
    await mirror.start()
    context = ApiContext(store=store, view=mirror, manager_id="m-two", discovery_url=cluster.url)
    transport = httpx.ASGITransport(app=create_app(context))
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://manager-two", headers=cluster.auth
        ) as client:
            yield client
    finally:
        await mirror.stop()
        await store.close()


async def test_concurrent_label_updates_through_two_managers_all_land(
    cluster: Api, second: httpx.AsyncClient
) -> None:
    await cluster.add_node("n1", hostname="alpha")

    async def label(client: httpx.AsyncClient, name: str) -> None:
        response = await client.post("/nodes/n1/update", json={"labels_add": {name: "yes"}})
        assert response.status_code == 200, response.text

    await asyncio.gather(
        *(label(cluster.client, f"a{i}") for i in range(15)),
        *(label(second, f"b{i}") for i in range(15)),
    )
    kv = await cluster.store.get(keys.node_spec("n1"))
    assert kv is not None
    assert set(NodeSpec.load(kv.value).labels) == {f"a{i}" for i in range(15)} | {
        f"b{i}" for i in range(15)
    }


async def test_a_service_created_through_one_manager_is_updated_through_the_other(
    cluster: Api, second: httpx.AsyncClient
) -> None:
    created = await cluster.client.post("/services", json={"name": "web", "image": "nginx"})
    assert created.status_code == 201
    scaled = await second.post("/services/web/scale", json={"replicas": 3})
    assert scaled.status_code == 200
    assert scaled.json()["spec"]["replicas"] == 3
    await cluster.settle()
    assert (await cluster.client.get("/services/web")).json()["spec_version"] == 2


async def test_two_managers_racing_on_init_make_one_cluster(api: Api) -> None:
    store = await open_store(api.url)
    mirror = ClusterMirror(store)
    await mirror.start()
    context = ApiContext(store=store, view=mirror, manager_id="m-two", discovery_url=api.url)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(context)), base_url="http://two"
        ) as other:
            results = await asyncio.gather(
                api.client.post("/swarm/init"), other.post("/swarm/init")
            )
    finally:
        await mirror.stop()
        await store.close()
    codes = sorted(r.status_code for r in results)
    assert codes in ([201, 401], [201, 409])
