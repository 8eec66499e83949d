"""The Docker runtime's engine calls run `workers` at a time, whatever the host's CPUs.

asyncio's default pool has CPUs + 4 threads (six on a 2-core host); the runtime used it,
so an agent asked to start 50 tasks with concurrency 16 had only six engine calls in
flight. No engine is needed: every call to a fake client waits at a barrier that opens
only when `workers` calls wait there together.
"""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from controlplane.agent.runtime.docker import DockerRuntime
from controlplane.models.task import Task, TaskSpec


class _Opened(Exception):
    """Raised by every call once all of them were in flight together."""


def _task(n: int) -> Task:
    return Task(
        id=f"t{n}", service="s", slot=n, node_id="n1", spec_version=1, spec=TaskSpec(image="x")
    )


@pytest.mark.parametrize("workers", [16])
async def test_engine_calls_run_workers_at_a_time(workers: int) -> None:
    barrier = threading.Barrier(workers, timeout=10)

    class Engine:
        def __getattr__(self, name: str) -> Any:
            return call

    def call(*_: Any, **__: Any) -> Any:
        barrier.wait()  # BrokenBarrierError if fewer than `workers` ever wait together
        raise _Opened

    client = SimpleNamespace(api=Engine(), close=lambda: None)
    runtime = DockerRuntime(
        cluster_id="c1", node_id="n1", advertise_addr="127.0.0.1", client=client, workers=workers
    )
    try:
        results = await asyncio.gather(
            *(runtime.ensure(_task(n)) for n in range(workers)), return_exceptions=True
        )
    finally:
        await runtime.close()
    assert all(isinstance(result, _Opened) for result in results), results
