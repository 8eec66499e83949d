"""Published ports through the API: ingress ports get a stable one from 30000-32767, and
a port another service publishes is refused with a 409 that names it and the holder."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane import keys
from controlplane.api.control.services import deploy_services
from controlplane.models import PortConfig, ServiceSpec
from tests.api import conftest as api_fixtures
from tests.api.conftest import Api

api = api_fixtures.api  # the API over a memory store, as tests/api drives it


@pytest.fixture
async def manager(api: Api) -> Api:
    """An initialised cluster's API."""
    await api.init()
    return api


def spec(name: str, *ports: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "nginx:1.27", "ports": list(ports), **fields}


async def published(on: Api, name: str) -> list[int | None]:
    body = (await on.client.get(f"/services/{name}")).json()
    return [port["published"] for port in body["spec"]["ports"]]


async def test_ingress_ports_get_stable_ports_from_the_mesh_range(manager: Api) -> None:
    for name in ("a", "b"):
        created = await manager.client.post("/services", json=spec(name, {"target": 80}))
        assert created.status_code == 201, created.text
    assert await published(manager, "a") == [30000]
    assert await published(manager, "b") == [30001]

    # an update that again names no published port keeps the one the service had
    updated = await manager.client.post(
        "/services/a/update", json=spec("a", {"target": 80}, {"target": 443}, image="nginx:2")
    )
    assert updated.status_code == 200, updated.text
    assert await published(manager, "a") == [30000, 30002]

    # a host-mode port without a number is the engine's choice, not the mesh's
    created = await manager.client.post("/services", json=spec("h", {"target": 80, "mode": "host"}))
    assert created.status_code == 201, created.text
    assert await published(manager, "h") == [None]


async def test_a_port_another_service_publishes_is_a_conflict(manager: Api) -> None:
    web = await manager.client.post(
        "/services", json=spec("web", {"target": 80, "published": 8080})
    )
    assert web.status_code == 201

    clash = await manager.client.post(
        "/services", json=spec("api", {"target": 5000, "published": 8080})
    )
    assert clash.status_code == 409
    detail = clash.json()["detail"]
    assert "8080" in detail
    assert "'web'" in detail
    assert await manager.store.get(keys.service("api")) is None  # nothing written

    host = await manager.client.post(
        "/services", json=spec("api", {"target": 5000, "published": 8080, "mode": "host"})
    )
    assert host.status_code == 409  # the mesh listens on 8080 on every node
    assert "'web'" in host.json()["detail"]

    # two host-mode services may share a number: the scheduler keeps them apart
    for name in ("h1", "h2"):
        made = await manager.client.post(
            "/services", json=spec(name, {"target": 80, "published": 9000, "mode": "host"})
        )
        assert made.status_code == 201, made.text
    ingress = await manager.client.post(
        "/services", json=spec("late", {"target": 80, "published": 9000})
    )
    assert ingress.status_code == 409
    assert "'h1'" in ingress.json()["detail"]

    # a service keeps its own port across updates
    again = await manager.client.post(
        "/services/web/update", json=spec("web", {"target": 81, "published": 8080})
    )
    assert again.status_code == 200, again.text


async def test_a_stack_is_assigned_ports_together(manager: Api) -> None:
    specs = [
        ServiceSpec(name=f"shop_{n}", image="nginx", ports=[PortConfig(target=80)])
        for n in ("web", "api")
    ]
    records, _ = await deploy_services(manager.store, specs, now=1.0)
    assert [r.spec.ports[0].published for r in records] == [30000, 30001]
    redeployed, _ = await deploy_services(manager.store, specs, now=2.0)
    assert [r.spec_version for r in redeployed] == [1, 1]  # same file: nothing changes
