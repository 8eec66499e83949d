"""Serving the API: uvicorn on a socket the manager binds itself.

The manager binds the listening socket before anything else, so a taken port is a
one-line error at start (not a log line deep inside uvicorn), `--listen :0` works (the
system picks a port, and the advertised URL names the real one), and the manager knows
its URL before it registers. Signals are the manager's: uvicorn is told not to install
its own handlers, and is stopped by setting `should_exit`.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from controlplane.manager.config import ConfigError, ListenAddress

#: Seconds in-flight requests (and event streams) get to finish at shutdown.
GRACEFUL_SHUTDOWN_SECONDS = 3


class ApiServer(uvicorn.Server):
    """uvicorn without signal handling of its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(listen: ListenAddress) -> socket.socket:
    """A listening TCP socket on `listen`; `ConfigError` saying why when it cannot be."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio turns Nagle's algorithm off only on sockets
    # that say they are TCP, and an accepted socket says what its listener said. With
    # Nagle on, an answer written as headers then a small body waited for the client's
    # delayed ACK: 40 ms on every small answer.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((listen.host, listen.port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {listen.host}:{listen.port}: {exc.strerror or exc}"
        ) from None
    return sock


def make_server(app: FastAPI, *, tls: ssl.SSLContext | None = None) -> ApiServer:
    """An `ApiServer` for `app`, serving HTTPS with `tls` when given (the context is
    built, and its files checked, before anything listens)."""
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    if tls is not None:
        config.load()  # uvicorn builds its own context from files; use the checked one
        config.ssl = tls
    return ApiServer(config)
