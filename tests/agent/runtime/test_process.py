"""What only the process runtime promises: it behaves like a container where it can.

Exit codes follow Docker's convention (128 + signal), a task's leftover children die with
it, the agent's own secrets do not leak into tasks, a task can run as another user, its
declared ports are where it answers, and a record whose process ended while no agent
was watching is reported failed, saying that its exit status is unknown.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from controlplane.agent.runtime.process import UNKNOWN_EXIT, ProcessRecord, ProcessRuntime
from controlplane.models.service import PortConfig, PublishMode
from controlplane.models.task import TaskState
from tests.agent.runtime.conftest import Kit, kinds, units_of, wait_for_state
from tests.harness.images import http_hostname_server, shell_until_sigterm
from tests.harness.process import free_port

pytestmark = pytest.mark.parametrize("kit", kinds("process"), indirect=True)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


async def test_a_process_killed_by_its_stop_signal_exits_128_plus_the_signal(kit: Kit) -> None:
    task = kit.task(["sleep", "3600"])
    await kit.runtime.ensure(task)

    stopped = await kit.runtime.stop(task.id, grace=5)

    assert stopped is not None
    assert stopped.state is TaskState.FAILED
    assert stopped.exit_code == 143
    assert "killed by SIGTERM" in stopped.message


async def test_what_a_task_leaves_running_dies_with_it(kit: Kit) -> None:
    task = kit.task(["/bin/sh", "-c", "sleep 3600 & echo $! > child.pid; exit 0"])

    unit = await kit.runtime.ensure(task)
    await wait_for_state(kit.runtime, task.id, lambda u: u is not None and u.state.terminal)

    assert isinstance(kit.runtime, ProcessRuntime)
    workdir = kit.runtime.records_dir / f"{task.id}.work"
    child = int((workdir / "child.pid").read_text())
    for _ in range(100):
        if gone(child):
            break
        await asyncio.sleep(0.05)
    assert gone(child), f"pid {child}, started by task {unit.container_id}, outlived it"


async def test_the_agents_own_environment_stays_out(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOAL_TOKEN", "secret-token")
    task = kit.task(shell_until_sigterm("env"), env={"VISIBLE": "yes"})

    unit = await kit.runtime.ensure(task)

    printed = await kit.output(unit, contains="VISIBLE=yes")
    assert "secret-token" not in printed
    assert f"SHOAL_TASK_ID={task.id}" in printed
    assert "PATH=" in printed


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
async def test_a_task_runs_as_its_user(kit: Kit) -> None:
    task = kit.task(shell_until_sigterm("id -u; id -g; echo ready"), user="nobody", workdir="/tmp")

    unit = await kit.runtime.ensure(task)

    printed = await kit.output(unit, contains="ready")
    assert printed.split()[:2] == ["65534", "65534"]


async def test_declared_ports_are_where_the_task_answers(
    kit: Kit, loopback_http: Callable[[str, int], str]
) -> None:
    if shutil.which("busybox") is None:
        pytest.skip("busybox is not installed (apt-get install busybox-static)")
    port = free_port("127.0.0.1")
    task = kit.task(
        http_hostname_server(port, bind="127.0.0.1"),
        ports=[PortConfig(target=port, published=port, mode=PublishMode.HOST)],
    )

    unit = await kit.runtime.ensure(task)

    [endpoint] = unit.endpoints
    assert (endpoint.host_ip, endpoint.published_port) == ("127.0.0.1", port)
    body = await asyncio.to_thread(loopback_http, endpoint.host_ip, endpoint.published_port)
    assert body.strip() == os.uname().nodename


async def test_a_process_that_ended_unseen_is_failed_with_a_clear_message(kit: Kit) -> None:
    # An agent recorded a running process, then died; the process ended meanwhile and
    # its pid (here: one that has been reaped) is no longer that process.
    dead = await asyncio.create_subprocess_exec("true")
    await dead.wait()
    assert isinstance(kit.runtime, ProcessRuntime)
    record = ProcessRecord(
        cluster_id=kit.cluster_id,
        node_id=kit.node_id,
        task_id="t-orphan",
        service="web",
        argv=["sleep", "3600"],
        pid=dead.pid,
        start_ticks=1,
        started_at=1.0,
    )
    kit.runtime.records_dir.mkdir(parents=True, exist_ok=True)
    (kit.runtime.records_dir / "t-orphan.json").write_bytes(record.dump())

    restarted = kit.restarted()
    [unit] = units_of(await restarted.observe(), "t-orphan")

    assert unit.state is TaskState.FAILED
    assert unit.exit_code is None
    assert unit.message == UNKNOWN_EXIT
    assert unit.finished_at is not None
    # The verdict is written down: the next agent does not have to guess again.
    saved = ProcessRecord.load((kit.runtime.records_dir / "t-orphan.json").read_bytes())
    assert saved.finished_at == unit.finished_at
    await restarted.remove("t-orphan")
    assert not (kit.runtime.records_dir / "t-orphan.json").exists()


async def test_describe_reports_this_host(kit: Kit) -> None:
    node = await kit.runtime.describe()

    assert node.hostname == os.uname().nodename
    assert node.os == "linux"
    assert node.nano_cpus == (os.cpu_count() or 1) * 1_000_000_000
    assert node.memory_bytes > 0
