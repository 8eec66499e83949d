"""Task health on the real engine: a healthcheck decides when a task runs, and fails it.

What users care about, as swarm mode behaves: a task whose container has a healthcheck
is `starting` until the check passes, then `running`; one whose check keeps failing is
`failed` with "unhealthy container" and marked to be stopped (the executor stops it and
the restart policy replaces it); the transitions are announced by `changes()`, not only
found by the next resync; `["NONE"]` turns the check off.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from controlplane.agent.runtime.docker import UNHEALTHY
from controlplane.models import HealthCheck
from controlplane.models.task import TaskState
from tests.agent.runtime.conftest import Kit, kinds, next_change, wait_for_state
from tests.harness.images import shell_until_sigterm

pytestmark = pytest.mark.parametrize("kit", kinds("docker"), indirect=True)

READY_LATER = shell_until_sigterm("(sleep 1.5; touch /ready) & :")
FAST = {"interval_seconds": 0.5, "timeout_seconds": 2.0, "retries": 2}
#: Failures in the start period do not count: the check passes once /ready exists.
PATIENT = {**FAST, "start_period_seconds": 20.0}


async def test_a_task_starts_until_its_healthcheck_passes_then_runs(
    kit: Kit, docker_client: Any
) -> None:
    check = HealthCheck(test=["CMD-SHELL", "test -e /ready"], **PATIENT)
    task = kit.task(READY_LATER, healthcheck=check)

    unit = await kit.runtime.ensure(task)

    assert unit.state is TaskState.STARTING
    assert unit.endpoints == ()  # nothing is announced as serving before it is healthy
    config = docker_client.api.inspect_container(unit.container_id)["Config"]["Healthcheck"]
    assert config == {
        "Test": ["CMD-SHELL", "test -e /ready"],
        "Interval": 500_000_000,
        "Timeout": 2_000_000_000,
        "Retries": 2,
        "StartPeriod": 20_000_000_000,
    }
    running = await wait_for_state(
        kit.runtime, task.id, lambda u: u is not None and u.state is TaskState.RUNNING, within=30
    )
    assert running is not None
    assert running.message == ""
    assert not running.needs_stop


async def test_a_task_whose_healthcheck_fails_is_failed_unhealthy_and_to_be_stopped(
    kit: Kit,
) -> None:
    check = HealthCheck(test=["CMD-SHELL", "test -e /nope"], **FAST)
    task = kit.task(shell_until_sigterm(), healthcheck=check)
    await kit.runtime.ensure(task)

    failed = await wait_for_state(
        kit.runtime, task.id, lambda u: u is not None and u.state is TaskState.FAILED, within=30
    )

    assert failed is not None
    assert failed.message == UNHEALTHY == "unhealthy container"
    assert failed.needs_stop
    stopped = await kit.runtime.stop(task.id, grace=10)
    assert stopped is not None
    assert stopped.state is not TaskState.RUNNING
    assert not stopped.needs_stop


async def test_health_transitions_are_announced_by_changes(kit: Kit) -> None:
    check = HealthCheck(test=["CMD-SHELL", "test -e /ready"], **PATIENT)
    task = kit.task(READY_LATER, healthcheck=check)
    changes = kit.runtime.changes()
    try:
        await kit.runtime.ensure(task)
        deadline = time.monotonic() + 30
        state = TaskState.STARTING
        # Only announced tasks are observed: without health events, nothing follows the
        # container's start and this loop runs out of time.
        while state is not TaskState.RUNNING:
            if await next_change(changes, within=deadline - time.monotonic()) != task.id:
                continue
            (unit,) = [u for u in await kit.runtime.observe() if u.task_id == task.id]
            state = unit.state
    finally:
        await changes.aclose()  # type: ignore[attr-defined]


async def test_none_disables_the_check_and_the_task_runs_at_once(
    kit: Kit, docker_client: Any
) -> None:
    task = kit.task(shell_until_sigterm(), healthcheck=HealthCheck(test=["NONE"]))

    unit = await kit.runtime.ensure(task)

    assert unit.state is TaskState.RUNNING
    config = docker_client.api.inspect_container(unit.container_id)["Config"]["Healthcheck"]
    assert config["Test"] == ["NONE"]
