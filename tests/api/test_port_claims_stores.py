"""Port claims on the real stores (etcd, Consul, the file store): two managers' store
connections create services at the same instant and never share a published port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from controlplane import keys
from controlplane.api.control.errors import Conflict
from controlplane.api.control.port_claims import PortClaim
from controlplane.api.control.ports import PortTaken
from controlplane.api.control.services import create_service
from controlplane.api.control.stacks import deploy_stack, remove_stack
from controlplane.models import PortConfig, ServiceSpec
from controlplane.models.service import ServiceRecord
from discovery import Store, open_store
from tests.api.racing import hold_service_writes


@pytest.fixture(params=["etcd_url", "consul_url", "file_url"])
async def two_managers(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Store, Store]]:
    """Two connections to one fresh cluster prefix, as two managers hold."""
    url: str = request.getfixturevalue(request.param)
    first, second = await open_store(url), await open_store(url)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def spec(name: str, *ports: PortConfig, stack: str | None = None) -> ServiceSpec:
    return ServiceSpec(name=name, image="nginx", ports=list(ports), stack=stack)


async def claims(store: Store) -> dict[int, str]:
    listing = await store.list(keys.PORTS)
    return {
        int(keys.last_segment(kv.key)): PortClaim.load(kv.value).service for kv in listing.items
    }


async def published(store: Store) -> dict[str, list[int | None]]:
    listing = await store.list(keys.SERVICES)
    records = [ServiceRecord.load(kv.value) for kv in listing.items]
    return {r.spec.name: [p.published for p in r.spec.ports] for r in records}


async def test_one_explicit_port_asked_through_two_managers_at_once(
    two_managers: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two_managers
    barrier = hold_service_writes(monkeypatch, [a, b], 2)
    port = PortConfig(target=80, published=8080)
    results = await asyncio.gather(
        create_service(a, spec("a", port), now=1.0),
        create_service(b, spec("b", port), now=1.0),
        return_exceptions=True,
    )
    assert barrier.held == 2
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1, results
    [error] = refused
    assert isinstance(error, PortTaken)
    winner = "a" if isinstance(results[1], BaseException) else "b"
    assert "8080" in str(error)
    assert repr(winner) in str(error)
    assert await published(a) == {winner: [8080]}
    assert await claims(b) == {8080: winner}


async def test_automatic_ports_through_two_managers_at_once_are_distinct(
    two_managers: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    stores = two_managers
    names = [f"s{i}" for i in range(8)]
    hold_service_writes(monkeypatch, list(stores), len(names))
    await asyncio.gather(
        *(
            create_service(stores[i % 2], spec(name, PortConfig(target=80)), now=1.0)
            for i, name in enumerate(names)
        )
    )
    ports = await published(stores[0])
    numbers = [number for [number] in ports.values()]
    assert sorted(ports) == sorted(names)
    assert len(set(numbers)) == len(names)
    assert await claims(stores[1]) == {number: name for name, [number] in ports.items()}


async def test_a_stack_claims_and_prunes_and_removes_its_ports(
    two_managers: tuple[Store, Store],
) -> None:
    a, b = two_managers
    web = spec("shop_web", PortConfig(target=80), stack="shop")
    api = spec("shop_api", PortConfig(target=80, published=8000), stack="shop")
    await deploy_stack(a, "shop", [web, api], prune=False, now=1.0)
    assert await claims(b) == {30000: "shop_web", 8000: "shop_api"}
    with pytest.raises(Conflict, match="'shop_api'"):
        await create_service(b, spec("other", PortConfig(target=1, published=8000)), now=2.0)

    await deploy_stack(b, "shop", [web], prune=True, now=3.0)
    assert await claims(a) == {30000: "shop_web"}
    await create_service(a, spec("other", PortConfig(target=1, published=8000)), now=4.0)

    await remove_stack(b, "shop")
    assert await claims(a) == {8000: "other"}


async def test_two_stacks_deployed_at_once_get_distinct_automatic_ports(
    two_managers: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two_managers
    hold_service_writes(monkeypatch, [a, b], 2)

    def services(stack: str) -> list[ServiceSpec]:
        return [spec(f"{stack}_{n}", PortConfig(target=80), stack=stack) for n in ("web", "api")]

    await asyncio.gather(
        deploy_stack(a, "one", services("one"), prune=False, now=1.0),
        deploy_stack(b, "two", services("two"), prune=False, now=1.0),
    )
    ports = await published(a)
    numbers = [number for [number] in ports.values()]
    assert len(ports) == 4
    assert len(set(numbers)) == 4, ports
    assert await claims(b) == {number: name for name, [number] in ports.items()}
