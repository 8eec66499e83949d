"""The forwarder on real loopback sockets: round robin, refusals skipped, PROXY header,
large transfers, and what happens to connections when the backends change."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack

import pytest

from controlplane.agent.mesh import PortForwarder
from controlplane.agent.mesh.proxy_protocol import MAX_V1_LENGTH, proxy_v1_header
from controlplane.models.route import Backend
from tests.mesh.conftest import ask, free_tcp_port, named_server

HOST = "127.0.0.1"


def backend(port: int) -> Backend:
    return Backend(host=HOST, port=port)


async def test_round_robin_reaches_every_backend_evenly() -> None:
    async with AsyncExitStack() as stack:
        ports = [await stack.enter_async_context(named_server(n)) for n in "abc"]
        forwarder = PortForwarder(address=HOST, port=0, backends=map(backend, ports))
        await forwarder.start()
        stack.callback(forwarder.close)
        port = forwarder.bound_port
        answers = [await ask(HOST, port, b"hi") for _ in range(30)]
    assert Counter(a.split(b"|")[0] for a in answers) == {b"a": 10, b"b": 10, b"c": 10}
    assert all(a.endswith(b"|hi") for a in answers)


async def test_a_refusing_backend_costs_no_failed_request() -> None:
    dead = free_tcp_port()  # nothing listens there: connects are refused
    async with named_server("alive") as alive:
        forwarder = PortForwarder(address=HOST, port=0, backends=[backend(dead), backend(alive)])
        await forwarder.start()
        try:
            port = forwarder.bound_port
            answers = [await ask(HOST, port) for _ in range(10)]
        finally:
            forwarder.close()
    assert answers == [b"alive|"] * 10
    assert forwarder.dropped == 0


async def test_a_backend_that_closes_without_answering_is_skipped_with_the_request() -> None:
    """What a stopping container behind Docker's userland proxy looks like: the port
    accepts, then closes without a byte. The client's request goes to the next one."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # the request has started to arrive: close anyway
        writer.close()

    closer = await asyncio.start_server(hang_up, HOST, 0)
    try:
        async with named_server("alive") as alive:
            closing = closer.sockets[0].getsockname()[1]
            forwarder = PortForwarder(
                address=HOST, port=0, backends=[backend(closing), backend(alive)], quarantine=0
            )
            await forwarder.start()
            try:
                port = forwarder.bound_port
                answers = [await ask(HOST, port, b"GET / %d" % i) for i in range(10)]
            finally:
                forwarder.close()
    finally:
        closer.close()
    assert answers == [b"alive|GET / %d" % i for i in range(10)]
    assert forwarder.retried >= 1  # quarantine 0: the closer was tried again and again


async def test_no_backend_closes_the_client_without_an_answer() -> None:
    forwarder = PortForwarder(address=HOST, port=0, backends=[backend(free_tcp_port())])
    await forwarder.start()
    try:
        port = forwarder.bound_port
        try:
            answer = await ask(HOST, port, b"x")
        except OSError:  # closed with the request unread (a reset), maybe before the EOF
            answer = b""
        assert answer == b""
    finally:
        forwarder.close()
    assert forwarder.dropped == 1


async def test_proxy_protocol_header_comes_first_and_names_the_client() -> None:
    async with named_server("p") as target:
        forwarder = PortForwarder(
            address=HOST, port=0, backends=[backend(target)], proxy_protocol=True
        )
        await forwarder.start()
        try:
            port = forwarder.bound_port
            reader, writer = await asyncio.open_connection(HOST, port)
            client_port = writer.get_extra_info("sockname")[1]
            writer.write(b"GET /")
            writer.write_eof()
            answer = await reader.read()
            writer.close()
        finally:
            forwarder.close()
    expected = f"PROXY TCP4 127.0.0.1 127.0.0.1 {client_port} {port}\r\n".encode()
    assert answer == b"p|" + expected + b"GET /"


def test_proxy_header_families() -> None:
    assert proxy_v1_header(("::1", 5), ("::1", 80)) == b"PROXY TCP6 ::1 ::1 5 80\r\n"
    assert proxy_v1_header(("10.0.0.1", 5), ("::1", 80)) == b"PROXY UNKNOWN\r\n"
    assert proxy_v1_header(None, ("::1", 80)) == b"PROXY UNKNOWN\r\n"
    longest = proxy_v1_header(("ffff:" * 7 + "ffff", 65535), ("ffff:" * 7 + "ffff", 65535))
    assert len(longest) <= MAX_V1_LENGTH


async def test_ten_megabytes_arrive_intact_both_ways() -> None:
    payload = bytes(range(256)) * (10 * 4096)  # 10 MiB

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(1 << 16):
            writer.write(chunk)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, HOST, 0)
    forwarder = PortForwarder(
        address=HOST, port=0, backends=[backend(server.sockets[0].getsockname()[1])]
    )
    await forwarder.start()
    try:
        port = forwarder.bound_port
        reader, writer = await asyncio.open_connection(HOST, port)

        async def send() -> None:
            writer.write(payload)
            await writer.drain()
            writer.write_eof()

        sending = asyncio.create_task(send())
        received = await reader.read(-1)
        await sending
        writer.close()
    finally:
        forwarder.close()
        server.close()
    assert received == payload


async def test_update_and_close_keep_relayed_connections_going() -> None:
    async with named_server("old") as old, named_server("new") as new:
        forwarder = PortForwarder(address=HOST, port=0, backends=[backend(old)])
        await forwarder.start()
        port = forwarder.bound_port
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"first")
        await asyncio.sleep(0.1)  # relayed to "old" by now
        forwarder.update([backend(new)])
        assert await ask(HOST, port) == b"new|"
        forwarder.close()  # stop listening: new connections are refused ...
        with pytest.raises(ConnectionRefusedError):
            await ask(HOST, port)
        writer.write_eof()  # ... but the relayed one still gets its whole answer
        assert await reader.read() == b"old|first"
        writer.close()
