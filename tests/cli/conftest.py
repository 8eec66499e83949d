"""The CLI against a manager's real API, served on loopback from a thread of this process.

`served` is a fresh, uninitialised cluster (memory store, a real `ClusterMirror`, the
real FastAPI app under uvicorn); `cluster` is one after `shoal swarm init`, run through
the CLI itself, so the config file holds its host and token as a user's would. There is
no leader: tests that need tasks seed them, as the leader and agents would write them
(`seed_node`, `seed_service`, `seed_task`), and tests of waiting live in
`test_processes.py`, with a real manager and hollow agents.

Every test gets its own config file, state directory and environment (`SHOAL_*` unset),
so nothing leaks from the machine or from another test.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import typer.rich_utils
import uvicorn
from typer.testing import CliRunner, Result

from controlplane import keys
from controlplane.api.context import ApiContext
from controlplane.api.main import create_app
from controlplane.cli.app import app
from controlplane.models import (
    NodeInfo,
    NodeRole,
    NodeSpec,
    ServiceSpec,
    Task,
    TaskSpec,
    TaskState,
    TaskStatus,
)
from controlplane.models.node import Availability
from controlplane.models.service import ServiceRecord
from controlplane.models.task import DesiredState
from controlplane.state import ClusterMirror
from discovery import Store, open_store
from discovery.backends.memory import MemoryStore
from tests.harness.process import free_port

T = TypeVar("T")


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process keeps its own
        pass


@dataclass
class ServedManager:
    """An API on a thread's event loop; `run(coro)` executes there (the store lives there)."""

    url: str
    loop: asyncio.AbstractEventLoop
    store: Store
    mirror: ClusterMirror

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def put(self, key: str, value: bytes, *, lease_ttl: float | None = None) -> None:
        async def put() -> None:
            lease = (await self.store.grant(lease_ttl)).id if lease_ttl else None
            await self.store.put(key, value, lease=lease)
            revision = (await self.store.list(keys.CLUSTER)).revision
            await self.mirror.wait_for_revision(revision, timeout=5)

        self.run(put())

    # --- what agents and the leader would write -------------------------------------
    def seed_node(
        self,
        node_id: str,
        *,
        hostname: str,
        up: bool = True,
        role: NodeRole = NodeRole.WORKER,
        availability: Availability = Availability.ACTIVE,
        labels: dict[str, str] | None = None,
        engine_version: str = "27.3.1",
    ) -> None:
        spec = NodeSpec(
            id=node_id, role=role, availability=availability, labels=labels or {}, joined=1.0e9
        )
        self.put(keys.node_spec(node_id), spec.dump())
        if up:
            info = NodeInfo(
                id=node_id,
                hostname=hostname,
                addr="10.0.0.1",
                engine_version=engine_version,
                nano_cpus=4_000_000_000,
                memory_bytes=8 * 1024**3,
            )
            self.put(keys.node(node_id), info.dump(), lease_ttl=300)

    def seed_service(self, record: ServiceRecord) -> None:
        self.put(keys.service(record.spec.name), record.dump())

    def seed_task(
        self,
        task_id: str,
        *,
        service: str,
        node_id: str,
        slot: int | None,
        state: TaskState,
        since: float,
        desired: DesiredState = DesiredState.RUNNING,
        image: str = "nginx:1.27",
        error: str = "",
        message: str = "",
        spec_version: int = 1,
    ) -> None:
        task = Task(
            id=task_id,
            service=service,
            slot=slot,
            node_id=node_id,
            spec_version=spec_version,
            spec=TaskSpec(image=image),
            desired_state=desired,
            created=since - 1,
        )
        key = keys.task(node_id, task_id) if node_id else keys.pending(task_id)
        self.put(key, task.dump())
        status = TaskStatus(
            task_id=task_id, state=state, error=error, message=message, timestamp=since
        )
        self.put(keys.status(task_id), status.dump())


def service_record(
    name: str, *, service_id: str, stack: str | None = None, **spec: Any
) -> ServiceRecord:
    labels = {"com.docker.stack.namespace": stack} if stack else {}
    return ServiceRecord(
        id=service_id,
        spec=ServiceSpec(name=name, stack=stack, labels=labels, **spec),
        created=1.0e9,
        updated=1.0e9,
    )


@pytest.fixture
def served(memory_url: str) -> Iterator[ServedManager]:
    port = free_port()
    started = threading.Event()
    holder: dict[str, Any] = {}
    failed: list[BaseException] = []

    async def main() -> None:
        store = await open_store(memory_url)
        mirror = ClusterMirror(store)
        await mirror.start()
        context = ApiContext(
            store=store, view=mirror, manager_id="m-test", discovery_url=memory_url
        )
        server = _Server(
            uvicorn.Config(create_app(context), host="127.0.0.1", port=port, log_level="warning")
        )
        holder.update(server=server, loop=asyncio.get_running_loop(), store=store, mirror=mirror)
        try:
            await server.serve()
        finally:
            await mirror.stop()
            await store.close()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            failed.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=run, name="served manager", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not (holder.get("server") and holder["server"].started):
        if failed or time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start: {failed}")
        time.sleep(0.01)
    try:
        yield ServedManager(
            url=f"http://127.0.0.1:{port}",
            loop=holder["loop"],
            store=holder["store"],
            mirror=holder["mirror"],
        )
    finally:
        holder["server"].should_exit = True
        thread.join(timeout=10)
        MemoryStore.reset(memory_url.split("://", 1)[1])


@pytest.fixture(autouse=True)
def user_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment: own config file and agent state dir, no SHOAL_* from outside."""
    for name in ("SHOAL_HOST", "SHOAL_TOKEN", "SHOAL_DEBUG", "SHOAL_JOIN_TOKEN", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "home" / ".config" / "shoal" / "config.json"
    monkeypatch.setenv("SHOAL_CONFIG", str(config))
    monkeypatch.setenv("SHOAL_STATE_DIR", str(tmp_path / "agent"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", 400)  # usage errors on one line
    return config


def shoal(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    """Run the CLI in-process, as a user would type it."""
    return CliRunner().invoke(app, list(args), env=env, input=stdin, catch_exceptions=True)


@pytest.fixture
def cluster(served: ServedManager, monkeypatch: pytest.MonkeyPatch) -> ServedManager:
    """`served` after `shoal swarm init --host URL`: the config file holds host and token."""
    result = shoal("swarm", "init", "--host", served.url)
    assert result.exit_code == 0, result.output
    return served
