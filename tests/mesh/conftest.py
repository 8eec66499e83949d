"""Small TCP servers on loopback that the mesh's unit tests forward to."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], "asyncio.Future[None] | object"]


@asynccontextmanager
async def named_server(name: str, *, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """A server that answers each connection with `name`, after reading until the
    client's EOF (it echoes what it read after the name); yields its port."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            received = await reader.read()
            writer.write(name.encode() + b"|" + received)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(answer, host, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def ask(host: str, port: int, payload: bytes = b"") -> bytes:
    """Connect, send `payload`, half-close, read the whole answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(payload)
        writer.write_eof()
        return await reader.read()
    finally:
        writer.close()


def free_tcp_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
