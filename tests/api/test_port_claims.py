"""Ingress ports are claimed in the store with their service: two creates that decided at
the same instant never both get one port; remove, update, rollback and `/stacks` move
the claims in the same write. Over the memory store (`test_port_claims_stores` runs the
races on every store)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from controlplane import keys
from controlplane.api.control.port_claims import PortClaim, Written, claim_ops, claims_for
from controlplane.dockerapi.app import create_docker_app
from controlplane.models import ServiceSpec
from controlplane.models.service import ServiceRecord
from discovery import Compare, Put
from tests.api.conftest import Api
from tests.api.racing import hold_service_writes


def spec(name: str, *ports: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "nginx", "ports": list(ports), **fields}


async def claim_of(api: Api, number: int, protocol: str = "tcp") -> str | None:
    """The name of the service the store says holds the port, or None."""
    kv = await api.store.get(keys.port(protocol, number))
    return None if kv is None else PortClaim.load(kv.value).service


async def claimed(api: Api) -> dict[str, str]:
    """Every claim: `<protocol>/<number>` -> service name."""
    listing = await api.store.list(keys.PORTS)
    return {kv.key[len(keys.PORTS) :]: PortClaim.load(kv.value).service for kv in listing.items}


async def published(api: Api, name: str) -> list[int]:
    body = (await api.client.get(f"/services/{name}")).json()
    return [port["published"] for port in body["spec"]["ports"]]


async def test_a_claim_names_its_service_and_leaves_with_it(cluster: Api) -> None:
    web = await cluster.client.post("/services", json=spec("web", {"target": 80, "published": 80}))
    assert web.status_code == 201, web.text
    kv = await cluster.store.get(keys.port("tcp", 80))
    assert kv is not None
    assert PortClaim.load(kv.value).service_id == web.json()["id"]
    assert await claimed(cluster) == {"tcp/80": "web"}

    assert (await cluster.client.delete("/services/web")).status_code == 204
    assert await claimed(cluster) == {}
    again = await cluster.client.post("/services", json=spec("api", {"target": 5, "published": 80}))
    assert again.status_code == 201, again.text  # the removed service's port is free
    assert await claimed(cluster) == {"tcp/80": "api"}


async def test_host_mode_ports_are_not_claimed(cluster: Api) -> None:
    for name in ("h1", "h2"):
        made = await cluster.client.post(
            "/services", json=spec(name, {"target": 80, "published": 9000, "mode": "host"})
        )
        assert made.status_code == 201, made.text
    assert await claimed(cluster) == {}


async def test_two_creates_of_one_port_at_once_one_wins_one_is_told_who(
    cluster: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    barrier = hold_service_writes(monkeypatch, cluster.store, 2)
    first, second = await asyncio.gather(
        cluster.client.post("/services", json=spec("a", {"target": 80, "published": 8080})),
        cluster.client.post("/services", json=spec("b", {"target": 80, "published": 8080})),
    )
    assert barrier.held == 2  # both decided before either wrote
    assert sorted([first.status_code, second.status_code]) == [201, 409]
    won, lost = (first, second) if first.status_code == 201 else (second, first)
    winner = won.json()["name"]
    loser = "b" if winner == "a" else "a"
    assert "8080" in lost.json()["detail"]
    assert repr(winner) in lost.json()["detail"]
    assert await cluster.store.get(keys.service(loser)) is None  # the loser wrote nothing
    assert await claimed(cluster) == {"tcp/8080": winner}


async def test_many_creates_at_once_get_distinct_automatic_ports(
    cluster: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"s{i}" for i in range(12)]
    hold_service_writes(monkeypatch, cluster.store, len(names))
    answers = await asyncio.gather(
        *(cluster.client.post("/services", json=spec(n, {"target": 80})) for n in names)
    )
    assert [a.status_code for a in answers] == [201] * len(names), [a.text for a in answers]
    ports = {name: (await published(cluster, name))[0] for name in names}
    assert len(set(ports.values())) == len(names)
    assert await claimed(cluster) == {f"tcp/{port}": name for name, port in ports.items()}


async def test_an_update_that_changes_the_port_moves_the_claim(cluster: Api) -> None:
    await cluster.client.post("/services", json=spec("web", {"target": 80, "published": 8080}))
    moved = await cluster.client.post(
        "/services/web/update", json=spec("web", {"target": 80, "published": 9090})
    )
    assert moved.status_code == 200, moved.text
    assert await claimed(cluster) == {"tcp/9090": "web"}
    other = await cluster.client.post(
        "/services", json=spec("api", {"target": 1, "published": 8080})
    )
    assert other.status_code == 201, other.text

    # to host mode: the claim goes, and the port stays refused to ingress elsewhere
    host = await cluster.client.post(
        "/services/web/update", json=spec("web", {"target": 80, "published": 9090, "mode": "host"})
    )
    assert host.status_code == 200, host.text
    assert await claimed(cluster) == {"tcp/8080": "api"}
    clash = await cluster.client.post("/services", json=spec("x", {"target": 1, "published": 9090}))
    assert clash.status_code == 409
    assert "'web'" in clash.json()["detail"]

    # a rollback takes the previous spec's port again, and refuses one taken meanwhile
    back = await cluster.client.post("/services/web/rollback")
    assert back.status_code == 200, back.text
    assert await claim_of(cluster, 9090) == "web"
    await cluster.client.post(
        "/services/web/update", json=spec("web", {"target": 80, "published": 9191})
    )
    await cluster.client.post("/services", json=spec("y", {"target": 1, "published": 9090}))
    refused = await cluster.client.post("/services/web/rollback")
    assert refused.status_code == 409
    assert "'y'" in refused.json()["detail"]
    assert await published(cluster, "web") == [9191]
    assert await claimed(cluster) == {"tcp/8080": "api", "tcp/9191": "web", "tcp/9090": "y"}


async def test_an_update_that_drops_every_port_releases_them(cluster: Api) -> None:
    await cluster.client.post("/services", json=spec("web", {"target": 80}, {"target": 443}))
    assert await published(cluster, "web") == [30000, 30001]
    dropped = await cluster.client.post("/services/web/update", json=spec("web"))
    assert dropped.status_code == 200, dropped.text
    assert await claimed(cluster) == {}
    # scaling leaves the claims alone
    await cluster.client.post("/services", json=spec("api", {"target": 80}))
    assert (
        await cluster.client.post("/services/api/scale", json={"replicas": 3})
    ).status_code == 200
    assert await claimed(cluster) == {"tcp/30000": "api"}


async def test_services_from_before_claims_keep_their_ports_and_claim_on_update(
    cluster: Api,
) -> None:
    """A cluster upgraded in place: its services hold no claim keys yet."""
    old = ServiceSpec.model_validate(spec("old", {"target": 80, "published": 30000}))
    record = ServiceRecord(id="old-id", spec=old, created=1.0, updated=1.0)
    await cluster.store.put(keys.service("old"), record.dump())
    await cluster.settle()

    clash = await cluster.client.post(
        "/services", json=spec("new", {"target": 1, "published": 30000})
    )
    assert clash.status_code == 409
    assert "'old'" in clash.json()["detail"]
    auto = await cluster.client.post("/services", json=spec("auto", {"target": 1}))
    assert await published(cluster, "auto") == [30001], auto.text

    updated = await cluster.client.post(
        "/services/old/update", json=spec("old", {"target": 80}, image="nginx:2")
    )
    assert updated.status_code == 200, updated.text
    assert await published(cluster, "old") == [30000]  # the same port, now claimed
    assert await claimed(cluster) == {"tcp/30000": "old", "tcp/30001": "auto"}


async def test_a_claim_left_without_its_service_is_taken_over(cluster: Api) -> None:
    """A manager older than claims removed the service but not its claim."""
    stale = PortClaim(service_id="gone-id", service="gone")
    await cluster.store.put(keys.port("tcp", 8080), stale.dump())
    made = await cluster.client.post(
        "/services", json=spec("web", {"target": 80, "published": 8080})
    )
    assert made.status_code == 201, made.text
    assert await claimed(cluster) == {"tcp/8080": "web"}


async def stack(api: Api, *services: dict[str, Any], prune: bool = False) -> dict[str, Any]:
    response = await api.client.post(
        "/stacks", json={"name": "shop", "services": list(services), "prune": prune}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_stack_claims_moves_and_releases_its_ports(cluster: Api) -> None:
    await stack(cluster, spec("shop_web", {"target": 80}), spec("shop_api", {"target": 5000}))
    assert await claimed(cluster) == {"tcp/30000": "shop_web", "tcp/30001": "shop_api"}

    # one deploy hands a port from one service to another, and drops one
    moved = await stack(
        cluster,
        spec("shop_web", {"target": 80, "published": 30001}),
        spec("shop_api", {"target": 5000, "published": 8000}),
    )
    assert sorted(moved["updated"]) == ["shop_api", "shop_web"]
    assert await claimed(cluster) == {"tcp/30001": "shop_web", "tcp/8000": "shop_api"}

    pruned = await stack(cluster, spec("shop_web", {"target": 80, "published": 30001}), prune=True)
    assert pruned["removed"] == ["shop_api"]
    assert await claimed(cluster) == {"tcp/30001": "shop_web"}

    clash = await cluster.client.post(
        "/stacks",
        json={"name": "other", "services": [spec("other_x", {"target": 1, "published": 30001})]},
    )
    assert clash.status_code == 409
    assert "'shop_web'" in clash.json()["detail"]

    assert (await cluster.client.delete("/stacks/shop")).status_code == 200
    assert await claimed(cluster) == {}


async def test_a_stack_and_a_service_racing_for_one_port(
    cluster: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold_service_writes(monkeypatch, cluster.store, 2)
    deployed, created = await asyncio.gather(
        cluster.client.post(
            "/stacks",
            json={"name": "shop", "services": [spec("shop_web", {"target": 80, "published": 80})]},
        ),
        cluster.client.post("/services", json=spec("web", {"target": 80, "published": 80})),
    )
    assert sorted([deployed.status_code, created.status_code]) == [200, 409] or sorted(
        [deployed.status_code, created.status_code]
    ) == [201, 409], (deployed.text, created.text)
    holder = "shop_web" if deployed.status_code == 200 else "web"
    assert await claimed(cluster) == {"tcp/80": holder}
    assert len((await cluster.store.list(keys.SERVICES)).items) == 1


async def test_a_docker_api_container_publishes_host_ports_unclaimed(cluster: Api) -> None:
    """`docker run -p` publishes on the container's node (host mode): never claimed, and
    refused with the port's own message when the mesh serves that port."""
    await cluster.client.post("/services", json=spec("web", {"target": 80, "published": 8080}))
    transport = httpx.ASGITransport(app=create_docker_app(cluster.context))
    async with httpx.AsyncClient(transport=transport, base_url="http://docker") as docker:

        async def run(name: str, host_port: str) -> httpx.Response:
            bindings = {"80/tcp": [{"HostPort": host_port}]}
            return await docker.post(
                "/containers/create",
                params={"name": name},
                json={"Image": "redis", "HostConfig": {"PortBindings": bindings}},
            )

        clash = await run("db", "8080")
        assert clash.status_code == 409
        assert "8080" in clash.json()["message"]
        assert "'web'" in clash.json()["message"]
        made = await run("db", "9090")
        assert made.status_code == 201, made.text
    assert await claimed(cluster) == {"tcp/8080": "web"}


async def test_more_ingress_ports_than_one_transaction_holds_is_a_422(
    cluster: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Consul's transaction holds 64 items: a service created there claims at most 31
    ingress ports in its own write."""
    monkeypatch.setattr(cluster.store, "max_txn_ops", 64)
    many = [{"target": 1000 + i} for i in range(32)]
    refused = await cluster.client.post("/services", json=spec("wide", *many))
    assert refused.status_code == 422
    assert "64" in refused.json()["detail"][0]["msg"]
    assert await cluster.store.get(keys.service("wide")) is None
    fits = await cluster.client.post("/services", json=spec("wide", *many[:31]))
    assert fits.status_code == 201, fits.text
    assert len(await claimed(cluster)) == 31
    # an update claims only the ports that change hands
    grown = await cluster.client.post("/services/wide/update", json=spec("wide", *many))
    assert grown.status_code == 200, grown.text
    assert await published(cluster, "wide") == list(range(30000, 30032))


async def test_a_claim_made_after_the_services_were_listed_starts_the_write_again(
    cluster: Api,
) -> None:
    """A writer that listed the services before another service claimed its port finds
    the claim backed by a later listing: it must read again, not replace the claim."""
    wanted = ServiceSpec.model_validate(spec("late", {"target": 80, "published": 8080}))
    writing = [Written("late-id", wanted, None)]
    assert await claims_for(cluster.store, writing) == {}  # free: claim it at revision 0

    await cluster.client.post("/services", json=spec("web", {"target": 80, "published": 8080}))
    assert await claims_for(cluster.store, writing) is None  # web's claim is live

    await cluster.store.delete(keys.service("web"))  # as a manager older than claims did
    stale = await claims_for(cluster.store, writing)
    assert stale is not None
    assert [found.claim.service for found in stale.values() if found.claim] == ["web"]


async def test_a_host_port_decided_before_an_ingress_claim_does_not_commit(cluster: Api) -> None:
    """The host-mode write read the claim key absent; an ingress service claimed the port
    before it wrote: its guard fails, so the two never hold one number."""
    host = ServiceSpec.model_validate(spec("h", {"target": 80, "published": 9000, "mode": "host"}))
    writing = [Written("h-id", host, None)]
    claims = await claims_for(cluster.store, writing)
    assert claims == {}
    compares, ops = claim_ops(claims, writing)
    assert [c.key for c in compares] == [keys.port("tcp", 9000)]
    assert ops == []  # host ports are not claimed

    made = await cluster.client.post(
        "/services", json=spec("web", {"target": 80, "published": 9000})
    )
    assert made.status_code == 201
    record = ServiceRecord(id="h-id", spec=host, created=1.0, updated=1.0)
    result = await cluster.store.txn(
        [Compare(keys.service("h"), 0), *compares], [Put(keys.service("h"), record.dump())]
    )
    assert not result.succeeded
