"""`/stacks` on every store (memory, file, etcd, Consul): deploy a compose document or
converted specs, list, services, tasks, prune, remove; a deploy is whole or nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from controlplane import keys
from controlplane.api.context import ApiContext
from controlplane.api.main import create_app
from controlplane.models import ServiceSpec
from controlplane.state import ClusterMirror
from discovery import open_store
from tests.api.conftest import Api

COMPOSE = """\
services:
  web:
    image: nginx:${TAG:?set TAG}
    deploy:
      replicas: 2
  db:
    image: postgres:16
"""


@pytest.fixture
async def stacked(store_url: str) -> AsyncIterator[Api]:
    store = await open_store(store_url)
    mirror = ClusterMirror(store)
    await mirror.start()
    context = ApiContext(store=store, view=mirror, manager_id="m-test", discovery_url=store_url)
    transport = httpx.ASGITransport(app=create_app(context))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://manager") as client:
            api = Api(client=client, store=store, mirror=mirror, context=context, url=store_url)
            await api.init()
            yield api
    finally:
        await mirror.stop()
        await store.close()


async def deploy(api: Api, **body: object) -> httpx.Response:
    return await api.client.post("/stacks", json={"name": "shop", **body})


def spec(name: str, **fields: object) -> dict[str, object]:
    return ServiceSpec(name=name, image="nginx", **fields).model_dump(mode="json")  # type: ignore[arg-type]


async def test_deploy_a_compose_document_then_read_it_back(stacked: Api) -> None:
    response = await deploy(stacked, compose=COMPOSE, environment={"TAG": "1.27"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert sorted(body["created"]) == ["shop_db", "shop_web"]
    assert body["updated"] == body["removed"] == []

    assert (await stacked.client.get("/stacks")).json() == [{"name": "shop", "services": 2}]
    services = (await stacked.client.get("/stacks/shop/services")).json()
    by_name = {s["name"]: s for s in services}
    assert by_name["shop_web"]["spec"]["image"] == "nginx:1.27"
    assert by_name["shop_web"]["spec"]["replicas"] == 2
    assert by_name["shop_web"]["spec"]["stack"] == "shop"
    tasks = await stacked.client.get("/stacks/shop/tasks")
    assert tasks.status_code == 200
    assert tasks.json() == []  # no leader here: nothing placed yet

    again = (await deploy(stacked, compose=COMPOSE, environment={"TAG": "1.27"})).json()
    assert sorted(again["unchanged"]) == ["shop_db", "shop_web"]
    assert again["created"] == again["updated"] == []


async def test_prune_removes_what_the_deploy_no_longer_names_in_the_same_write(
    stacked: Api,
) -> None:
    first = await deploy(stacked, services=[spec("shop_web"), spec("shop_db")])
    assert first.status_code == 200, first.text
    second = await deploy(stacked, services=[spec("shop_web", replicas=3)], prune=True)
    assert second.status_code == 200, second.text
    assert second.json()["updated"] == ["shop_web"]
    assert second.json()["removed"] == ["shop_db"]
    web = await stacked.store.get(keys.service("shop_web"))
    assert web is not None
    assert await stacked.store.get(keys.service("shop_db")) is None
    names = [s["name"] for s in (await stacked.client.get("/stacks/shop/services")).json()]
    assert names == ["shop_web"]


async def test_a_bad_service_writes_nothing_and_names_it(stacked: Api) -> None:
    bad = spec("shop_db", placement={"constraints": ["node.nonsense==x"]})
    response = await deploy(stacked, services=[spec("shop_web"), bad])
    assert response.status_code == 422
    loc = response.json()["detail"][0]["loc"]
    assert loc[:3] == ["body", "services", 1]
    assert (await stacked.store.list(keys.SERVICES)).items == []


async def test_bad_compose_and_bad_bodies_are_422s_that_write_nothing(stacked: Api) -> None:
    broken = await deploy(stacked, compose="services: [not, a, mapping")
    assert broken.status_code == 422
    assert broken.json()["detail"][0]["loc"] == ["body", "compose"]
    unset = await deploy(stacked, compose=COMPOSE)  # ${TAG} is not given
    assert unset.status_code == 422
    assert "TAG" in unset.json()["detail"][0]["msg"]
    both = await deploy(stacked, compose=COMPOSE, services=[spec("shop_web")])
    assert both.status_code == 422
    foreign = await deploy(stacked, services=[spec("other_web")])
    assert foreign.status_code == 422
    assert foreign.json()["detail"][0]["loc"] == ["body", "services", 0, "name"]
    assert (await stacked.store.list(keys.SERVICES)).items == []


async def test_a_stack_larger_than_one_transaction_is_refused_before_writing(
    stacked: Api,
) -> None:
    too_many = stacked.store.max_txn_ops // 2 + 1  # two items per new service
    if too_many > 300:
        pytest.skip("this store takes thousands of items in one transaction")
    services = [spec(f"shop_s{i:03d}") for i in range(too_many)]
    response = await deploy(stacked, services=services)
    assert response.status_code == 422
    assert str(stacked.store.max_txn_ops) in response.json()["detail"][0]["msg"]
    assert (await stacked.store.list(keys.SERVICES)).items == []
    fits = await deploy(stacked, services=services[:-1])
    assert fits.status_code == 200, fits.text


async def test_remove_a_stack_and_unknown_stacks_are_404(stacked: Api) -> None:
    await deploy(stacked, services=[spec("shop_web"), spec("shop_db")])
    await stacked.client.post("/services", json={"name": "loner", "image": "nginx"})
    removed = await stacked.client.delete("/stacks/shop")
    assert removed.status_code == 200, removed.text
    assert sorted(removed.json()["removed"]) == ["shop_db", "shop_web"]
    assert [s["name"] for s in (await stacked.client.get("/services")).json()] == ["loner"]
    assert (await stacked.client.get("/stacks")).json() == []
    for path in ("/stacks/shop/services", "/stacks/shop/tasks"):
        assert (await stacked.client.get(path)).status_code == 404
    assert (await stacked.client.delete("/stacks/shop")).status_code == 404


async def test_a_document_yaml_cannot_read_is_a_422(stacked: Api) -> None:
    response = await deploy(stacked, compose="\x81services: {}")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "compose"]


async def test_published_ports_are_assigned_and_never_claimed_twice(stacked: Api) -> None:
    taken = await stacked.client.post(
        "/services",
        json=spec("front", ports=[{"target": 80, "published": 8080}]),
    )
    assert taken.status_code == 201, taken.text

    clash = await deploy(
        stacked,
        services=[spec("shop_web"), spec("shop_api", ports=[{"target": 80, "published": 8080}])],
    )
    assert clash.status_code == 409, clash.text
    assert "8080" in clash.text
    assert "front" in clash.text
    assert [kv.key for kv in (await stacked.store.list(keys.SERVICES)).items] == [
        keys.service("front")
    ]

    auto = await deploy(stacked, services=[spec("shop_web", ports=[{"target": 80}])])
    assert auto.status_code == 200, auto.text
    [web] = (await stacked.client.get("/stacks/shop/services")).json()
    [port] = web["spec"]["ports"]
    assert 30000 <= port["published"] <= 32767
    again = await deploy(stacked, services=[spec("shop_web", ports=[{"target": 80}])])
    assert again.json()["unchanged"] == ["shop_web"]  # the assigned port stays put
