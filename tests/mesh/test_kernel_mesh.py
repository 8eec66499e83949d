"""The mesh's kernel mode on real nftables (root, loopback): the agent programs a table
and the kernel forwards, round robin, to the endpoints of `routes/`.

Each test uses its own 127.0.0.x advertise address (its own table), backends on other
loopback addresses that answer their own name. Under CI=true a machine without nft or
root fails these tests instead of skipping them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controlplane import keys
from controlplane.agent.mesh import RoutingMesh, kernel
from controlplane.agent.mesh.nftables import NftError, check_nft, table_name
from controlplane.cli.app import app
from controlplane.models.route import Backend, PortRoute, RouteTable
from discovery import Store, open_store
from tests.harness.manager import REPO, SHOAL
from tests.mesh.conftest import ask, free_tcp_port, named_server


@pytest.fixture(autouse=True)
def nft_works() -> None:
    try:
        check_nft()
    except NftError as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the kernel mesh tests: {exc}")
        pytest.skip(str(exc))


@pytest.fixture
async def store(memory_url: str) -> AsyncIterator[Store]:
    opened = await open_store(memory_url)
    try:
        yield opened
    finally:
        await opened.close()


def table(port: int, *backends: tuple[str, int]) -> bytes:
    route = PortRoute(
        published_port=port,
        target_port=80,
        backends=tuple(Backend(host=h, port=p) for h, p in backends),
    )
    return RouteTable(service="web", ports=(route,)).dump()


def nft_table(address: str) -> str | None:
    """The table's listing, or None when it does not exist."""
    done = subprocess.run(
        ["nft", "list", "table", "ip", table_name(address)], capture_output=True, text=True
    )
    return done.stdout if done.returncode == 0 else None


@contextmanager
def no_table_left(address: str) -> Iterator[None]:
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "ip", table_name(address)], capture_output=True)


@asynccontextmanager
async def running(mesh: RoutingMesh) -> AsyncIterator[RoutingMesh]:
    task = asyncio.create_task(mesh.run())
    try:
        yield mesh
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(mesh: RoutingMesh, check: object) -> None:
    async with asyncio.timeout(5):
        while not check():  # type: ignore[operator]
            await mesh.applied.wait()


async def names(address: str, port: int, count: int) -> list[bytes]:
    return [(await ask(address, port)).split(b"|")[0] for _ in range(count)]


async def test_the_kernel_forwards_round_robin_and_follows_the_tables(store: Store) -> None:
    address = "127.0.0.21"
    published = free_tcp_port(address)
    async with AsyncExitStack() as stack:
        a, b, c = [
            (host, await stack.enter_async_context(named_server(name, host=host)))
            for name, host in (("a", "127.0.0.22"), ("b", "127.0.0.23"), ("c", "127.0.0.24"))
        ]
        await store.put(keys.route("web"), table(published, a, b, c))
        with no_table_left(address):
            async with running(RoutingMesh(store, address=address, forwarding="kernel")) as mesh:
                await until(mesh, lambda: len(mesh.ports.get(published, ())) == 3)
                assert mesh.relay.running is False  # no byte goes through the agent
                answers = await names(address, published, 30)
                assert sorted(answers) == [b"a"] * 10 + [b"b"] * 10 + [b"c"] * 10

                # Three connections in flight (one per backend), then c leaves the table:
                # conntrack keeps each on its endpoint, so all three still finish.
                flights = [await asyncio.open_connection(address, published) for _ in range(3)]
                await store.put(keys.route("web"), table(published, a, b))
                await until(mesh, lambda: len(mesh.ports.get(published, ())) == 2)
                assert set(await names(address, published, 10)) == {b"a", b"b"}
                finished = []
                for reader, writer in flights:
                    writer.write_eof()
                    finished.append((await reader.read()).split(b"|")[0])
                    writer.close()
                assert sorted(finished) == [b"a", b"b", b"c"]

                await store.put(keys.route("web"), table(published, c))
                await until(mesh, lambda: mesh.ports.get(published) == (c,))
                assert set(await names(address, published, 3)) == {b"c"}
            assert nft_table(address) is None  # a clean stop deletes the table


async def test_a_port_without_a_running_endpoint_refuses(store: Store) -> None:
    address = "127.0.0.25"
    published = free_tcp_port(address)
    async with named_server("a", host="127.0.0.32") as a:
        await store.put(keys.route("web"), table(published, ("127.0.0.32", a)))
        with no_table_left(address):
            mesh = RoutingMesh(store, address=address, forwarding="kernel")
            async with running(mesh):
                await until(mesh, lambda: published in mesh.ports)
                assert await names(address, published, 1) == [b"a"]

                await store.put(keys.route("web"), table(published))  # scaled to zero
                await until(mesh, lambda: published not in mesh.ports)
                assert "reject with tcp reset" in (nft_table(address) or "")
                with pytest.raises(ConnectionRefusedError):
                    await ask(address, published)


async def test_a_stale_table_is_replaced_at_start(store: Store) -> None:
    address = "127.0.0.26"
    published = free_tcp_port(address)
    stale = f"table ip {table_name(address)} {{\n\tchain left_by_a_killed_agent {{\n\t}}\n}}\n"
    with no_table_left(address):
        nft = await asyncio.create_subprocess_exec("nft", "-f", "-", stdin=subprocess.PIPE)
        await nft.communicate(stale.encode())
        assert nft.returncode == 0
        async with named_server("a", host="127.0.0.27") as port:
            await store.put(keys.route("web"), table(published, ("127.0.0.27", port)))
            async with running(RoutingMesh(store, address=address, forwarding="kernel")) as mesh:
                await until(mesh, lambda: published in mesh.ports)
                listing = nft_table(address) or ""
                assert "left_by_a_killed_agent" not in listing
                assert "dnat" in listing
                assert await names(address, published, 2) == [b"a", b"a"]
        assert nft_table(address) is None


async def test_a_port_served_on_this_node_is_not_shadowed_until_it_is_free(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    address = "127.0.0.28"
    mesh = RoutingMesh(store, address=address, forwarding="kernel", rebind_interval=0.2)
    async with named_server("mesh", host="127.0.0.29") as backend:
        with no_table_left(address), caplog.at_level(logging.WARNING):
            host_mode = named_server("host-mode", host=address)
            served = await host_mode.__aenter__()
            try:
                await store.put(keys.route("web"), table(served, ("127.0.0.29", backend)))
                async with running(mesh):
                    await until(mesh, lambda: "listens there" in caplog.text)
                    assert served not in mesh.ports
                    assert await names(address, served, 2) == [b"host-mode", b"host-mode"]
                    await host_mode.__aexit__(None, None, None)
                    await until(mesh, lambda: served in mesh.ports)  # the next check
                    assert await names(address, served, 2) == [b"mesh", b"mesh"]
            finally:
                await host_mode.__aexit__(None, None, None)


async def test_remote_endpoints_are_masqueraded_and_need_ip_forward(
    store: Store, caplog: pytest.LogCaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = "127.0.0.30"
    published = free_tcp_port(address)
    switch = tmp_path / "ip_forward"
    switch.write_text("0\n")
    monkeypatch.setattr(kernel, "IP_FORWARD", switch)
    remote = ("192.0.2.10", 8080)  # TEST-NET-1: an address of no host here
    await store.put(keys.route("web"), table(published, remote))
    with no_table_left(address), caplog.at_level(logging.WARNING):
        async with running(RoutingMesh(store, address=address, forwarding="kernel")) as mesh:
            await until(mesh, lambda: published in mesh.ports)
            listing = nft_table(address) or ""
            assert "masquerade" in listing
            assert "192.0.2.10 . 8080" in listing
            assert "set net.ipv4.ip_forward=1" in caplog.text


def test_kernel_forwarding_with_the_proxy_protocol_is_a_usage_error() -> None:
    result = CliRunner().invoke(
        app,
        [
            "agent",
            "--discovery",
            "file:///nonexistent",
            "--mesh-forwarding",
            "kernel",
            "--mesh-proxy-protocol",
        ],
    )
    assert result.exit_code == 2
    said = " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())  # rich's box, unwrapped
    assert "--mesh-proxy-protocol needs --mesh-forwarding relay" in said
    ipv6 = CliRunner().invoke(
        app, ["agent", "--discovery", "file:///x", "--mesh-forwarding", "kernel",
              "--advertise-addr", "::1"]
    )  # fmt: skip
    assert ipv6.exit_code == 2
    assert "IPv4" in ipv6.output
    with pytest.raises(ValueError, match="PROXY"):
        RoutingMesh(object(), address="127.0.0.1", forwarding="kernel", proxy_protocol=True)  # type: ignore[arg-type]


def test_an_agent_without_cap_net_admin_exits_2_saying_so(tmp_path: Path) -> None:
    """Root without CAP_NET_ADMIN (as in an unprivileged container): nft cannot work."""
    done = subprocess.run(
        [
            "setpriv",
            "--inh-caps=-net_admin",
            "--bounding-set=-net_admin",
            *SHOAL,
            "agent",
            "--discovery",
            f"file://{tmp_path / 'store'}",
            "--advertise-addr",
            "127.0.0.9",
            "--state-dir",
            str(tmp_path / "state"),
            "--mesh-forwarding",
            "kernel",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "needs root or CAP_NET_ADMIN" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1  # one sentence, no traceback
    assert not (tmp_path / "state").exists()  # it stopped before joining anything
