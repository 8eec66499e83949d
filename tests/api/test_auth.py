"""Every call but `/health`, `/swarm/join` and the first `/swarm/init` needs the API token."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute

from controlplane.api.main import ROUTERS
from tests.api.conftest import Api

OPEN = {("GET", "/health"), ("POST", "/swarm/join"), ("POST", "/swarm/init")}


def protected_calls() -> list[tuple[str, str]]:
    calls = []
    for router in ROUTERS:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            for method in route.methods or ():
                if (method, route.path) not in OPEN:
                    calls.append((method, route.path.replace("{ref}", "x")))
    return sorted(calls)


def test_every_resource_is_covered() -> None:
    paths = {path for _, path in protected_calls()}
    for resource in ("/swarm", "/nodes", "/services", "/tasks", "/events", "/metrics"):
        assert resource in paths


@pytest.mark.parametrize(("method", "path"), protected_calls())
async def test_protected_calls_need_the_api_token(cluster: Api, method: str, path: str) -> None:
    cluster.client.headers.pop("Authorization")
    missing = await cluster.client.request(method, path, json={})
    assert missing.status_code == 401, missing.text
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    worker = {"Authorization": f"Bearer {cluster.tokens['worker']}"}
    wrong = await cluster.client.request(method, path, json={}, headers=worker)
    assert wrong.status_code == 401, wrong.text
    assert "not valid" in wrong.json()["detail"]


async def test_before_init_protected_calls_say_to_init(api: Api) -> None:
    response = await api.client.get("/services", headers={"Authorization": "Bearer SHOAL-1-a-b"})
    assert response.status_code == 401
    assert "/swarm/init" in response.json()["detail"]
