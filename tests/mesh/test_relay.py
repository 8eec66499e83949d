"""The relay thread behind every forwarder, on real loopback sockets: bytes intact in
both directions across the switch from small reads to splicing, half-closes passed
through either way, many clients at once, and connections closed when the relay stops."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from controlplane.agent.mesh import PortForwarder
from controlplane.agent.mesh.relay import Relay
from controlplane.models.route import Backend

HOST = "127.0.0.1"


@asynccontextmanager
async def serving(handler: object) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, HOST, 0)  # type: ignore[arg-type]
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@asynccontextmanager
async def forwarding(port: int, relay: Relay | None = None) -> AsyncIterator[PortForwarder]:
    forwarder = PortForwarder(
        address=HOST, port=0, backends=[Backend(host=HOST, port=port)], relay=relay
    )
    await forwarder.start()
    try:
        yield forwarder
    finally:
        forwarder.close()


async def test_requests_and_answers_of_every_size_on_one_connection() -> None:
    """A keep-alive client: small answers, then 3 MiB ones (the relay splices from the
    first read that fills its buffer), then small ones again, each exactly as sent."""
    sizes = [13, 1, 70_000, 3 * 1024 * 1024, 13, 64 * 1024, 5]
    pattern = bytes(range(251)) * (3 * 1024 * 1024 // 251 + 1)

    async def sized(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            size = int(line)
            writer.write(pattern[:size])
            await writer.drain()
        writer.close()

    async with serving(sized) as port, forwarding(port) as forwarder:
        reader, writer = await asyncio.open_connection(HOST, forwarder.bound_port)
        try:
            for size in sizes:
                writer.write(b"%d\n" % size)
                answer = await reader.readexactly(size)
                assert answer == pattern[:size]
        finally:
            writer.close()


async def test_a_large_upload_arrives_intact_while_the_answer_streams_back() -> None:
    payload = hashlib.sha256(b"seed").digest() * (3 * 1024 * 1024 // 32)  # 3 MiB

    async def digest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = await reader.read()
        writer.write(hashlib.sha256(received).hexdigest().encode() + b" %d" % len(received))
        writer.close()

    async with serving(digest) as port, forwarding(port) as forwarder:
        reader, writer = await asyncio.open_connection(HOST, forwarder.bound_port)
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        answer = await reader.read()
        writer.close()
    assert answer == hashlib.sha256(payload).hexdigest().encode() + b" %d" % len(payload)


async def test_the_backend_half_closing_first_leaves_the_client_able_to_send() -> None:
    """The backend says its piece and shuts its sending side; the client sees the end of
    the answer and may still send, and the backend still receives it."""
    heard: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def greeter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        writer.write_eof()
        heard.set_result(await reader.read())
        writer.close()

    async with serving(greeter) as port, forwarding(port) as forwarder:
        reader, writer = await asyncio.open_connection(HOST, forwarder.bound_port)
        assert await reader.read() == b"hello"  # the end of stream came through
        writer.write(b"still here")
        writer.write_eof()
        assert await asyncio.wait_for(heard, 5) == b"still here"
        writer.close()


async def test_many_clients_at_once_each_get_their_own_answer() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read())
        writer.close()

    async with serving(echo) as port, forwarding(port) as forwarder:

        async def client(number: int) -> bytes:
            reader, writer = await asyncio.open_connection(HOST, forwarder.bound_port)
            writer.write(b"client %d " % number * 100)
            writer.write_eof()
            try:
                return await reader.read()
            finally:
                writer.close()

        answers = await asyncio.gather(*(client(n) for n in range(200)))
    assert answers == [b"client %d " % n * 100 for n in range(200)]
    assert forwarder.relayed == 200


async def test_backends_changed_while_clients_connect_apply_to_the_next_ones() -> None:
    async def named(name: bytes) -> object:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()
            writer.write(name)
            writer.close()

        return answer

    async with (
        serving(await named(b"a")) as a,
        serving(await named(b"b")) as b,
        forwarding(a) as forwarder,
    ):

        async def ask() -> bytes:
            reader, writer = await asyncio.open_connection(HOST, forwarder.bound_port)
            writer.write_eof()
            try:
                return await reader.read()
            finally:
                writer.close()

        assert {await ask() for _ in range(3)} == {b"a"}
        forwarder.update([Backend(host=HOST, port=b)])
        assert {await ask() for _ in range(3)} == {b"b"}


async def test_stopping_the_relay_closes_the_connections_it_relays() -> None:
    """What an agent that stops does to the clients still connected through it: they see
    the connection end, they are not left hanging."""
    release, relayed = asyncio.Event(), asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(7)
        relayed.set()
        await release.wait()
        writer.close()

    relay = Relay(name="test relay")
    try:
        async with serving(slow) as port, forwarding(port, relay) as forwarder:
            reader, writer = await asyncio.open_connection(HOST, forwarder.bound_port)
            writer.write(b"waiting")
            await asyncio.wait_for(relayed.wait(), 5)
            relay.stop()
            try:
                answer = await asyncio.wait_for(reader.read(), 5)
            except ConnectionResetError:
                answer = b""
            assert answer == b""
            writer.close()
            release.set()
    finally:
        relay.stop()
    assert not relay.running


async def test_a_backend_that_never_answers_the_connect_is_skipped_after_the_timeout() -> None:
    """A listener whose queue is full leaves further connects unanswered (no SYN-ACK):
    the mesh gives up on it after `connect_timeout` and tries the next backend."""
    import socket

    stuck = socket.socket()
    stuck.bind((HOST, 0))
    stuck.listen(0)
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue (it never accepts)
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(stuck.getsockname())
            fillers.append(filler)
        await asyncio.sleep(0.1)
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect(stuck.getsockname())
            pytest.skip("this kernel answers connects beyond a full queue")
        except TimeoutError:
            pass
        finally:
            probe.close()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()
            writer.write(b"alive")
            writer.close()

        async with serving(answer) as alive:
            forwarder = PortForwarder(
                address=HOST,
                port=0,
                backends=[
                    Backend(host=HOST, port=stuck.getsockname()[1]),
                    Backend(host=HOST, port=alive),
                ],
                connect_timeout=0.3,
            )
            await forwarder.start()
            try:
                reader, writer = await asyncio.open_connection(HOST, forwarder.bound_port)
                writer.write_eof()
                assert await asyncio.wait_for(reader.read(), 5) == b"alive"
                writer.close()
            finally:
                forwarder.close()
    finally:
        for filler in fillers:
            filler.close()
        stuck.close()


async def test_a_handed_over_client_reaches_the_next_backend_with_one_proxy_line() -> None:
    """The first backend hangs up without a byte once the request has arrived; the next
    one gets the PROXY line once, then everything the client sent, as if it had been the
    first."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the PROXY line and the request
        writer.close()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read())
        writer.close()

    async with serving(hang_up) as closing, serving(echo) as alive:
        forwarder = PortForwarder(
            address=HOST,
            port=0,
            backends=[Backend(host=HOST, port=closing), Backend(host=HOST, port=alive)],
            proxy_protocol=True,
        )
        await forwarder.start()
        port = forwarder.bound_port
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            client_port = writer.get_extra_info("sockname")[1]
            writer.write(b"GET / HTTP/1.0\r\n\r\n")
            writer.write_eof()
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
        finally:
            forwarder.close()
    header = f"PROXY TCP4 {HOST} {HOST} {client_port} {port}\r\n".encode()
    assert answer == header + b"GET / HTTP/1.0\r\n\r\n"
    assert forwarder.retried == 1


async def test_a_client_that_stops_reading_gets_every_byte_when_it_reads_again() -> None:
    """A download larger than every buffer on the way while the client reads nothing: the
    relay holds what the client cannot take (back-pressure), and drops or reorders
    nothing when it reads again."""
    payload = bytes(range(256)) * (8 * 4096)  # 8 MiB

    async def firehose(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        await writer.drain()
        writer.close()

    async with serving(firehose) as port, forwarding(port) as forwarder:
        reader, writer = await asyncio.open_connection(HOST, forwarder.bound_port, limit=1024)
        writer.transport.pause_reading()  # the client reads nothing for a while
        await asyncio.sleep(0.5)
        writer.transport.resume_reading()
        received = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert received == payload
