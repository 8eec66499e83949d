"""Oversized request bodies are refused with 413 before the app reads them."""

from __future__ import annotations

from collections.abc import AsyncIterator

from controlplane.api.limits import MAX_BODY_BYTES
from tests.api.conftest import Api


async def test_a_body_over_the_cap_is_413_and_writes_nothing(cluster: Api) -> None:
    before = (await cluster.store.list("")).revision
    huge = {"name": "web", "image": "nginx", "env": {"X": "x" * (MAX_BODY_BYTES + 1)}}
    response = await cluster.client.post("/services", json=huge)
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]
    assert (await cluster.store.list("")).revision == before


async def test_a_chunked_body_over_the_cap_is_413(cluster: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "web", "image": "nginx", "env": {"X": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 1):
            yield b"x" * 65536
        yield b'"}}'

    response = await cluster.client.post(
        "/services", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


async def test_a_value_the_store_refuses_is_422(cluster: Api) -> None:
    too_big_for_the_store = {"name": "web", "image": "nginx", "env": {"X": "x" * 600_000}}
    response = await cluster.client.post("/services", json=too_big_for_the_store)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]


async def test_a_body_under_the_cap_passes(cluster: Api) -> None:
    response = await cluster.client.post(
        "/services", json={"name": "web", "image": "nginx", "env": {"X": "x" * 1000}}
    )
    assert response.status_code == 201
