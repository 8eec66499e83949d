"""The manager's listener: connections answer small requests without Nagle's wait.

With Nagle's algorithm on, an answer written as two small parts (headers, then body)
held the second until the client acknowledged the first, which a client does only
after its delayed-ACK timer (40 ms on Linux): every small API answer took ~45 ms.
"""

from __future__ import annotations

import asyncio
import socket

from controlplane.manager.config import ListenAddress
from controlplane.manager.server import bind


async def test_accepted_connections_have_nagle_off() -> None:
    listener = bind(ListenAddress("127.0.0.1", 0))
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=listener)
    try:
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(seen, 5) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
