"""`shoal agent` as a real process, on a file:// store, with the hollow and process runtimes.

What operators rely on: SIGTERM takes the node out at once and SIGKILL within its TTL;
containers (here: processes) outlive the agent and are adopted by the next one; a copied
state directory is refused with a message saying what to do; a bad join token or a bad
option is a one-line error; one process can stand in for hundreds of hollow nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from controlplane import keys
from controlplane.agent.identity import load_identity
from controlplane.cli.app import app
from controlplane.models import NodeSpec, Task, TaskSpec
from controlplane.models.task import DesiredState, TaskState
from discovery import Store, open_store
from tests.agent.conftest import (
    Spawner,
    eventually,
    put_task,
    registered,
    set_desired,
    state_is,
    status_of,
)
from tests.harness.process import free_port

HEARTBEAT = 1.0  # seconds: TTL 3 s
SLACK = 15.0  # seconds a real agent process gets to act (CI machines are small and busy)


@pytest.fixture
async def store(file_url: str) -> AsyncIterator[Store]:
    opened = await open_store(file_url)
    try:
        yield opened
    finally:
        await opened.close()


def agent_args(
    file_url: str, state_dir: Path, *extra: str, runtime: str = "hollow", addr: str = "127.0.0.2"
) -> list[str]:
    return [
        "--discovery",
        file_url,
        "--runtime",
        runtime,
        "--state-dir",
        str(state_dir),
        "--heartbeat",
        f"{HEARTBEAT}s",
        "--advertise-addr",
        addr,
        *extra,
    ]


async def test_sigterm_removes_the_node_at_once_and_sigkill_within_the_ttl(
    store: Store, file_url: str, spawn: Spawner, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    agent = spawn(*agent_args(file_url, state_dir, "--label", "zone=a"))
    info = await registered(store, state_dir, agent)
    assert (info.addr, info.runtime) == ("127.0.0.2", "hollow")
    agent.proc.send_signal(signal.SIGTERM)
    assert await agent.exited() == 0
    assert await store.get(keys.node(info.id)) is None  # revoked before it exited

    again = spawn(*agent_args(file_url, state_dir), name="again")
    assert (await registered(store, state_dir, again)).id == info.id  # same node
    again.proc.kill()
    killed_at = time.monotonic()

    async def gone() -> bool:
        return await store.get(keys.node(info.id)) is None

    await eventually(gone, within=3 * HEARTBEAT + 2.0, what="node key expired after SIGKILL")
    assert time.monotonic() - killed_at <= 3 * HEARTBEAT + 1.0


async def test_copied_state_dir_exits_non_zero_naming_the_conflict(
    store: Store, file_url: str, spawn: Spawner, tmp_path: Path
) -> None:
    original = tmp_path / "original"
    first = spawn(*agent_args(file_url, original))
    info = await registered(store, original, first)
    copy = tmp_path / "copied"
    shutil.copytree(original, copy)
    second = spawn(*agent_args(file_url, copy, addr="127.0.0.3"), name="second")
    assert await second.exited(within=3 * HEARTBEAT + 2.0 + SLACK) == 1
    message = second.output()
    assert f"node id {info.id} is already in use" in message
    assert "127.0.0.2" in message
    assert "copied from another host" in message
    assert f"Remove {copy / 'node.json'} to join as a new node" in message
    assert "Traceback" not in message
    assert first.proc.poll() is None  # the rightful owner carries on


async def test_sigterm_ends_an_agent_still_waiting_for_its_node_id(
    store: Store, file_url: str, spawn: Spawner, tmp_path: Path
) -> None:
    original = tmp_path / "original"
    await registered(store, original, spawn(*agent_args(file_url, original)))
    copy = tmp_path / "copied"
    shutil.copytree(original, copy)
    waiting = spawn(*agent_args(file_url, copy, addr="127.0.0.3"), name="waiting")

    async def says_waiting() -> bool:
        return "waiting up to" in waiting.output()

    await eventually(says_waiting, within=SLACK, what="the second agent waiting")
    waiting.proc.send_signal(signal.SIGTERM)
    assert await waiting.exited(within=5.0) == 0


async def test_hollow_mode_registers_200_nodes_from_one_process(
    store: Store, file_url: str, spawn: Spawner, tmp_path: Path
) -> None:
    state_dir = tmp_path / "hollow"
    fleet = spawn(*agent_args(file_url, state_dir, "--hollow-nodes", "200"))

    async def all_registered() -> int | None:
        if fleet.proc.poll() is not None:
            pytest.fail(f"hollow fleet exited:\n{fleet.output()}")
        count = len((await store.list(keys.NODES)).items)
        return count if count == 200 else None

    await eventually(all_registered, within=40.0, what="200 hollow nodes registered")
    ids = {load_identity(state_dir / f"hollow-{i}").node_id for i in range(200)}  # type: ignore[union-attr]
    assert len(ids) == 200
    fleet.proc.send_signal(signal.SIGTERM)
    assert await fleet.exited(within=15.0) == 0
    assert (await store.list(keys.NODES)).items == []


def process_task(node_id: str, command: list[str], *, task_id: str) -> Task:
    return Task(
        id=task_id,
        service="sleepers",
        slot=1,
        node_id=node_id,
        spec_version=1,
        spec=TaskSpec(image="", command=command, stop_grace_seconds=2.0),
        created=time.time(),
    )


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_process_tasks_run_exit_stop_and_survive_an_agent_restart(
    store: Store, file_url: str, spawn: Spawner, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    agent = spawn(*agent_args(file_url, state_dir, runtime="process"))
    node_id = (await registered(store, state_dir, agent)).id
    sleepers = [process_task(node_id, ["sleep", "300"], task_id=f"sleep-{i}") for i in range(5)]
    failing = process_task(node_id, ["sh", "-c", "exit 3"], task_id="exit-3")
    pids: list[int] = []
    try:
        for task in [*sleepers, failing]:
            await put_task(store, task)
        failed = await eventually(
            lambda: state_is(store, failing.id, TaskState.FAILED), within=SLACK
        )
        assert failed.exit_code == 3
        for task in sleepers:
            status = await eventually(
                lambda t=task: state_is(store, t.id, TaskState.RUNNING), within=SLACK
            )
            pids.append(int(status.container_id))

        agent.proc.send_signal(signal.SIGTERM)
        assert await agent.exited() == 0
        assert all(alive(pid) for pid in pids)  # the agent's exit leaves its units running

        restarted = spawn(*agent_args(file_url, state_dir, runtime="process"), name="restarted")
        assert (await registered(store, state_dir, restarted)).id == node_id
        await asyncio.sleep(1.0)  # a resync has run: nothing may have been restarted
        for task, pid in zip(sleepers, pids, strict=True):
            status = await status_of(store, task.id)
            assert status is not None
            assert (status.state, status.container_id) == (TaskState.RUNNING, str(pid))
        assert all(alive(pid) for pid in pids)
        assert (await status_of(store, failing.id)).exit_code == 3  # type: ignore[union-attr]

        # statuses resume: the adopted units still answer to the store
        await set_desired(store, sleepers[0], DesiredState.SHUTDOWN)
        await eventually(lambda: state_is(store, sleepers[0].id, TaskState.SHUTDOWN), within=SLACK)
        assert not alive(pids[0])
        await store.delete(keys.task(node_id, sleepers[1].id))

        async def removed() -> bool:
            return not alive(pids[1]) and await status_of(store, sleepers[1].id) is None

        await eventually(removed, within=SLACK, what="deleted task's process gone")
        assert all(alive(pid) for pid in pids[2:])
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


class _JoinHandler(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, dict[str, object]]]] = {}
    requests: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(body)
        code, payload = self.answers[str(body["token"])]
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def manager(file_url: str) -> Iterator[str]:
    """A stand-in for a manager's `POST /swarm/join`: good-token admits, others get 401."""
    _JoinHandler.answers = {
        "good-token": (
            200,
            {
                "node_id": "joined-node-1",
                "cluster_id": "cluster-j",
                "discovery": file_url,
                "role": "worker",
            },
        ),
        "bad-token": (401, {"detail": "invalid join token"}),
    }
    _JoinHandler.requests = []
    port = free_port()
    server = HTTPServer(("127.0.0.1", port), _JoinHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


async def test_join_once_then_talk_to_the_store(
    store: Store, manager: str, spawn: Spawner, tmp_path: Path
) -> None:
    state_dir = tmp_path / "joined"
    args = ["--join", manager, "--token", "good-token", "--runtime", "hollow"]
    args += ["--state-dir", str(state_dir), "--heartbeat", "1s", "--advertise-addr", "127.0.0.4"]
    agent = spawn(*args)
    info = await registered(store, state_dir, agent)
    assert info.id == "joined-node-1"
    assert _JoinHandler.requests == [
        {
            "token": "good-token",
            "node_id": None,
            "hostname": os.uname().nodename,
            "addr": "127.0.0.4",
        }
    ]
    agent.proc.send_signal(signal.SIGTERM)
    assert await agent.exited() == 0
    # restarted without any flag but the state dir: no second join
    again = spawn("--runtime", "hollow", "--state-dir", str(state_dir), name="again")
    assert (await registered(store, state_dir, again)).id == "joined-node-1"
    assert len(_JoinHandler.requests) == 1


async def test_bad_join_token_is_a_one_line_error(
    manager: str, spawn: Spawner, tmp_path: Path
) -> None:
    state_dir = tmp_path / "refused"
    agent = spawn("--join", manager, "--token", "bad-token", "--state-dir", str(state_dir))
    assert await agent.exited() == 1
    output = agent.output().strip().splitlines()
    assert output[-1].startswith("shoal agent: the manager at http://")
    assert output[-1].endswith("refused the join token: invalid join token")
    assert "Traceback" not in agent.output()
    assert not (state_dir / "node.json").exists()


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--discovery", "file:///x", "--join", "m:1", "--token", "t"], 2, "not both"),
        (["--join", "m:1"], 2, "--join needs --token"),
        (["--runtime", "kvm"], 2, "unknown runtime 'kvm'"),
        (["--discovery", "file:///x", "--heartbeat", "soon"], 2, "not a positive duration"),
        (["--discovery", "file:///x", "--label", "nolabel"], 2, "not KEY=VALUE"),
        (["--discovery", "nowhere", "--runtime", "hollow"], 1, "has no scheme"),
        ([], 1, "holds no cluster to rejoin"),
    ],
)
def test_bad_options_are_one_line_errors(
    args: list[str], code: int, says: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app, ["agent", *args, "--state-dir", str(tmp_path / "s"), "--advertise-addr", "127.0.0.5"]
    )
    assert result.exit_code == code, result.output
    assert says in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


async def test_join_through_a_real_manager_with_labels(
    store: Store, file_url: str, spawn: Spawner, tmp_path: Path
) -> None:
    from tests.manager.conftest import ManagerProcess

    manager = ManagerProcess(
        name="m1", discovery=file_url, log_dir=tmp_path / "logs", lease_ttl=2.0
    )
    await asyncio.to_thread(manager.start)
    try:
        status, init = await asyncio.to_thread(manager.call, "POST", "/swarm/init")
        assert status in (200, 201), init
        state_dir = tmp_path / "joined"
        args = ["--join", manager.url, "--token", init["join_tokens"]["worker"]]
        args += ["--runtime", "hollow", "--state-dir", str(state_dir), "--heartbeat", "1s"]
        args += ["--advertise-addr", "127.0.0.10", "--label", "zone=b", "--label", "disk=ssd"]
        agent = spawn(*args)
        info = await registered(store, state_dir, agent)
        identity = load_identity(state_dir)
        assert identity is not None
        assert identity.cluster_id == init["cluster_id"]
        kv = await store.get(keys.node_spec(info.id))
        assert kv is not None
        assert NodeSpec.load(kv.value).labels == {"zone": "b", "disk": "ssd"}
        status, nodes = await asyncio.to_thread(
            manager.call, "GET", "/nodes", token=init["api_token"]
        )
        assert status == 200, nodes
        assert info.id in json.dumps(nodes)
    finally:
        await asyncio.to_thread(manager.stop)
