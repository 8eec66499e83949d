"""Starting tasks on a real Docker Engine never reports a healthy one failed.

The regression check of the executor's listing race (see `test_executor_races`): an
agent that lists its containers every 0.1 s (the default is 10 s, so the listings meet
the starts a hundred times as often), on a store whose transactions take 0.1 s (status
reports as slow as on a loaded Consul: the race's window is a worker awaiting its
reports), starts six tasks at once, holds them while listings come and go, and removes
them; a few rounds. No task may ever report failed,
and each runs in exactly one container. `SHOAL_START_ROUNDS` sets the rounds (default
3), to run it many times cheaply:

    SHOAL_START_ROUNDS=20 .venv/bin/pytest tests/agent/test_executor_docker.py -s
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from controlplane import keys
from controlplane.agent.runtime import LABEL_CLUSTER, LABEL_TASK
from controlplane.models import Task, TaskSpec, TaskStatus
from controlplane.models.task import TaskState
from discovery import Compare, Op, Store, TxnResult, open_store
from tests.agent.conftest import (
    AgentRunner,
    FlakyStore,
    docker_runtime,
    eventually,
    put_task,
    write_cluster,
)
from tests.harness.images import ensure_busybox_image, shell_until_sigterm

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPLICAS = 6
ROUNDS = int(os.environ.get("SHOAL_START_ROUNDS", "3"))
RESYNC = 0.1  # seconds between the agent's full listings
HOLD = 1.0  # seconds the tasks run while listings come, before they are removed
TXN_DELAY = 0.1  # seconds each store transaction (so each status report) takes


class SlowStore(FlakyStore):
    """A store whose transactions take `TXN_DELAY` longer, as on a loaded machine."""

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        await asyncio.sleep(TXN_DELAY)
        return await super().txn(compares, ops)


@pytest.fixture
async def store(memory_url: str, cluster_id: str) -> AsyncIterator[FlakyStore]:
    opened = SlowStore(await open_store(memory_url))
    await write_cluster(opened, cluster_id)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def runner(store: FlakyStore, tmp_path: Path) -> AsyncIterator[AgentRunner]:
    running = AgentRunner(store, tmp_path)
    try:
        yield running
    finally:
        await running.close()


def replica(node_id: str, image: str, service: str, slot: int) -> Task:
    return Task(
        id=f"{service}-{slot}-{uuid.uuid4().hex[:8]}",
        service=service,
        slot=slot,
        node_id=node_id,
        spec_version=1,
        spec=TaskSpec(image=image, command=shell_until_sigterm(), stop_grace_seconds=1.0),
        created=time.time(),
    )


async def statuses(store: Store, tasks: list[Task]) -> dict[str, TaskStatus | None]:
    found: dict[str, TaskStatus | None] = {}
    for task in tasks:
        kv = await store.get(keys.status(task.id))
        found[task.id] = TaskStatus.load(kv.value) if kv is not None else None
    return found


async def test_six_replicas_started_at_once_never_report_failed(
    store: FlakyStore, runner: AgentRunner, dockerd: str, docker_client: Any, cluster_id: str
) -> None:
    image = ensure_busybox_image(docker_client)
    agent = await runner.start(runner.agent(docker_runtime(dockerd), resync=RESYNC))
    failures: list[str] = []
    for round_ in range(1, ROUNDS + 1):
        began = time.monotonic()
        tasks = [replica(agent.node_id, image, f"svc{round_}", s) for s in range(1, REPLICAS + 1)]
        await asyncio.gather(*(put_task(store, task) for task in tasks))

        async def settled(tasks: list[Task] = tasks) -> bool:  # running, or ended for good
            found = (await statuses(store, tasks)).values()
            return all(
                s is not None and (s.state is TaskState.RUNNING or s.state.terminal) for s in found
            )

        await eventually(settled, within=60.0, what=f"round {round_}: six running")
        await asyncio.sleep(HOLD)  # listings keep coming; a failure would be final
        before = len(failures)
        for task_id, status in (await statuses(store, tasks)).items():
            if status is None or status.state is not TaskState.RUNNING:
                said = f"{status.state.value}: {status.message} ({status.error})" if status else ""
                failures.append(f"round {round_}: {task_id} {said}")
        per_task = {
            task.id: await asyncio.to_thread(
                docker_client.api.containers,
                all=True,
                filters={"label": f"{LABEL_TASK}={task.id}"},
            )
            for task in tasks
        }
        assert all(len(found) == 1 for found in per_task.values()), per_task  # never twice

        await asyncio.gather(*(store.delete(keys.task(agent.node_id, task.id)) for task in tasks))

        async def all_removed(tasks: list[Task] = tasks) -> bool:
            left = await asyncio.to_thread(
                docker_client.api.containers,
                all=True,
                filters={"label": f"{LABEL_CLUSTER}={cluster_id}"},
            )
            return not left and not any((await statuses(store, tasks)).values())

        await eventually(all_removed, within=60.0, what=f"round {round_}: removed")
        print(f"round {round_}: {REPLICAS} started, {len(failures) - before} not running "
              f"after {HOLD:g} s; removed, {time.monotonic() - began:.1f} s")  # fmt: skip
    assert not failures, failures
