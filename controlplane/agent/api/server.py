"""Serving the agent endpoint: uvicorn on a socket bound before the node registers.

The socket is bound first so that the URL written into `nodes/<id>` names the port
really bound (`--api-port 0` picks a free one) and a taken port is an error at start.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import Iterator

import uvicorn

from controlplane.agent.api.app import create_agent_app
from controlplane.agent.runtime import Runtime

#: `--api-port` default: any free port; managers read the real one from `nodes/<id>`.
DEFAULT_API_PORT = 0


class EndpointError(Exception):
    """The endpoint cannot listen; the message names the address."""


class _Server(uvicorn.Server):
    """uvicorn without signal handlers of its own: the agent's signals stop it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class AgentEndpoint:
    """Bound at construction; `serve()` until `stop()`."""

    def __init__(self, *, runtime: Runtime, host: str, port: int = DEFAULT_API_PORT) -> None:
        self.secret = secrets.token_urlsafe(32)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP named so that asyncio turns Nagle off on the accepted connections
        # (with protocol 0 it does not, and each small answer waits ~40 ms for an ACK)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise EndpointError(
                f"the agent endpoint cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        self._socket = sock
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            create_agent_app(runtime=runtime, secret=self.secret),
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = _Server(config)

    async def serve(self) -> None:
        try:
            await self._server.serve(sockets=[self._socket])
        finally:
            self._socket.close()

    def stop(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True

    def close(self) -> None:
        """Release the socket when `serve()` never ran."""
        self._socket.close()
