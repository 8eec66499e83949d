"""The agent's mesh following `routes/` on the in-memory store, with real loopback
listeners: a table opens a port, its changes move the traffic, its removal closes it;
hollow nodes never get a mesh."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane import keys
from controlplane.agent.agent import Agent
from controlplane.agent.mesh import MeshConfig, RoutingMesh
from controlplane.agent.runtime.hollow import HollowRuntime
from controlplane.models.route import Backend, PortRoute, RouteTable
from discovery import Store, open_store
from tests.mesh.conftest import ask, free_tcp_port, named_server

HOST = "127.0.0.1"


@pytest.fixture
async def store(memory_url: str) -> AsyncIterator[Store]:
    opened = await open_store(memory_url)
    try:
        yield opened
    finally:
        await opened.close()


def table(service: str, port: int, *backends: int) -> bytes:
    route = PortRoute(
        published_port=port,
        target_port=80,
        backends=tuple(Backend(host=HOST, port=b) for b in backends),
    )
    return RouteTable(service=service, ports=(route,)).dump()


async def answers(port: int, count: int) -> set[bytes]:
    return {(await ask(HOST, port)).split(b"|")[0] for _ in range(count)}


async def test_the_mesh_follows_the_tables(store: Store) -> None:
    published = free_tcp_port()
    async with named_server("a") as a, named_server("b") as b:
        await store.put(keys.route("web"), table("web", published, a))
        mesh = RoutingMesh(store, address=HOST)
        running = asyncio.create_task(mesh.run())
        try:
            async with asyncio.timeout(5):
                while published not in mesh.ports:
                    await mesh.applied.wait()
            assert await answers(published, 4) == {b"a"}

            await store.put(keys.route("web"), table("web", published, a, b))
            async with asyncio.timeout(5):
                while len(mesh.ports.get(published, ())) != 2:
                    await mesh.applied.wait()
            assert await answers(published, 6) == {b"a", b"b"}

            await store.delete(keys.route("web"))
            async with asyncio.timeout(5):
                while published in mesh.ports:
                    await mesh.applied.wait()
            with pytest.raises(ConnectionRefusedError):
                await ask(HOST, published)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)


async def test_a_port_held_by_another_process_is_bound_once_it_is_free(store: Store) -> None:
    async with named_server("a") as a:
        squatter = socket.socket()
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((HOST, 0))
        squatter.listen()
        published = squatter.getsockname()[1]
        await store.put(keys.route("web"), table("web", published, a))
        mesh = RoutingMesh(store, address=HOST, rebind_interval=0.1)
        running = asyncio.create_task(mesh.run())
        try:
            async with asyncio.timeout(5):
                while published not in mesh.forwarders:
                    await mesh.applied.wait()
            assert published not in mesh.ports  # known, but not listening
            squatter.close()
            async with asyncio.timeout(5):
                while True:  # the rebind loop, not a table change, binds it
                    if published in mesh.ports:
                        break
                    await asyncio.sleep(0.05)
            assert await answers(published, 2) == {b"a"}
        finally:
            squatter.close()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)


async def test_a_stopped_mesh_closes_the_connections_it_relayed(store: Store) -> None:
    """An agent that stops leaves no client hanging on its mesh: the port is closed
    and a connection still relayed through it ends."""
    published = free_tcp_port()
    async with named_server("a") as a:  # answers only after the client's end: never
        await store.put(keys.route("web"), table("web", published, a))
        mesh = RoutingMesh(store, address=HOST)
        running = asyncio.create_task(mesh.run())
        try:
            async with asyncio.timeout(5):
                while published not in mesh.ports:
                    await mesh.applied.wait()
            reader, writer = await asyncio.open_connection(HOST, published)
            writer.write(b"waiting")
            await writer.drain()
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        try:
            assert await asyncio.wait_for(reader.read(), 5) == b""
        except ConnectionResetError:
            pass  # closed with the request unread: a reset is an end too
        finally:
            writer.close()
        assert not mesh.relay.running
        with pytest.raises(ConnectionRefusedError):
            await ask(HOST, published)


async def test_a_hollow_node_has_no_mesh(store: Store, tmp_path: Path) -> None:
    agent = Agent(
        runtime=HollowRuntime(node_id="h1", nano_cpus=1, memory_bytes=1 << 30),
        state_dir=tmp_path,
        advertise_addr=HOST,
        store=store,
        mesh=MeshConfig(),
    )
    await agent.start()
    try:
        assert agent.mesh is None
    finally:
        await agent.stop()
