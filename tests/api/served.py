"""A manager's API served for real on a free loopback port, from a thread with its own loop.

For tools that call over HTTP from synchronous code (schemathesis): the store, the
mirror and uvicorn all live on the thread's event loop, as in a manager process.
(uvicorn installs signal handlers only on the main thread, so the test keeps its own.)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from controlplane.api.context import ApiContext
from controlplane.api.main import create_app
from controlplane.state import ClusterMirror
from discovery import open_store
from tests.harness.process import free_port


@contextmanager
def served_api(discovery_url: str, *, start_timeout: float = 15.0) -> Iterator[str]:
    """Serve an API for `discovery_url`; yields its base URL."""
    port = free_port()
    holder: dict[str, uvicorn.Server] = {}
    failed: list[BaseException] = []

    async def main() -> None:
        store = await open_store(discovery_url)
        mirror = ClusterMirror(store)
        await mirror.start()
        context = ApiContext(
            store=store, view=mirror, manager_id="m-served", discovery_url=discovery_url
        )
        config = uvicorn.Config(
            create_app(context), host="127.0.0.1", port=port, log_level="warning"
        )
        server = uvicorn.Server(config)
        holder["server"] = server
        try:
            await server.serve()
        finally:
            await mirror.stop()
            await store.close()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test below
            failed.append(exc)

    thread = threading.Thread(target=run, name="served api", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not (holder.get("server") and holder["server"].started):
        if failed or time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start: {failed}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        holder["server"].should_exit = True
        thread.join(timeout=10)
