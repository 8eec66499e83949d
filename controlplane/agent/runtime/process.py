"""The process runtime: each task's command runs as a plain local process.

For hosts without Docker, like Nomad's raw_exec: no image, no isolation, no limits. The
task's `command + args` runs with its environment, in its working directory (or a fresh
scratch directory), as its user, in a session and process group of its own; stopping it
signals the whole group with the task's stop signal (SIGTERM by default) and SIGKILLs the
group after the grace period. Output goes to a log file beside its record.

Exits are noticed without a thread or a poll per process: a pidfd per process is
registered with the event loop, which wakes us when it exits. Exit codes follow the
shell's and Docker's convention, so a process killed by signal N exits 128 + N.

An agent that restarts must adopt what is still running, as the Docker runtime does
through labels. Processes have no labels, so each task has a small JSON record in
`<state_dir>/processes/`: pid, the kernel's start time for that pid (so a recycled pid is
never mistaken for ours), and, once known, how it ended. A restarted agent re-attaches
to live processes; one that ended while no agent watched it is not our child any more,
its exit status is lost, and it is reported failed with a message saying exactly that.

When the main process exits, whatever it left running in its process group is killed,
as a container's processes die with its PID 1.

Ports are the process's own business: it binds them itself, and its endpoints are the
ones it declares (see `endpoints`). Resource limits are recorded by the scheduler but not
enforced here. Limitations, honestly: one agent per state directory, a process that
leaves its process group (or daemonises) escapes `stop`, and a task's healthcheck is
ignored: a process is `running` once started, whatever its check would say.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from pydantic import Field

from controlplane.agent.runtime.base import (
    LogLine,
    NodeDescription,
    Observed,
    Runtime,
    TaskRejected,
    UnknownTask,
)
from controlplane.agent.runtime.endpoints import declared_endpoints
from controlplane.agent.runtime.feed import ChangeFeed
from controlplane.agent.runtime.process_logs import read_log_file
from controlplane.models.base import Document
from controlplane.models.task import Endpoint, Task, TaskState
from controlplane.version import __version__

log = logging.getLogger(__name__)

RECORDS_DIR = "processes"
# The agent's variables a task inherits; everything else (tokens, store URLs) stays out.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME")
# How long to wait for a process group after SIGKILL before giving up on it.
KILL_WAIT = 5.0
UNKNOWN_EXIT = (
    "task: the process ended while no agent was watching it (the agent restarted); "
    "its exit status is unknown"
)

_FILE_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]+")

# Children of this Python process, by pid, until they are reaped. A runtime re-created in
# the same process (tests, an in-process agent restart) finds its predecessor's children
# here and still learns their exit codes.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ProcessRecord(Document):
    """`<state_dir>/processes/<task-id>.json`: what a restarted agent needs to adopt."""

    cluster_id: str
    node_id: str
    task_id: str
    service: str
    argv: list[str]
    stop_signal: str = "SIGTERM"
    pid: int | None = None
    start_ticks: int | None = None  # /proc/<pid>/stat field 22: tells pid reuse apart
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    message: str = ""
    endpoints: list[Endpoint] = Field(default_factory=list)
    scratch_dir: str | None = None  # a working directory we made, removed with the task


class _Unit:
    """One task's process as tracked in memory."""

    def __init__(self, record: ProcessRecord) -> None:
        self.record = record
        self.popen: subprocess.Popen[bytes] | None = None
        self.pidfd: int | None = None
        self.exited = asyncio.Event()
        self.removed = False
        if record.finished_at is not None:
            self.exited.set()

    @property
    def running(self) -> bool:
        return self.record.pid is not None and self.record.finished_at is None

    def observed(self) -> Observed:
        record = self.record
        if self.running:
            state = TaskState.RUNNING
        elif record.pid is None and record.finished_at is None:
            state = TaskState.STARTING  # being spawned right now
        elif record.exit_code == 0:
            state = TaskState.COMPLETE
        else:
            state = TaskState.FAILED
        return Observed(
            task_id=record.task_id,
            state=state,
            container_id=str(record.pid) if record.pid is not None else "",
            cluster_id=record.cluster_id,
            service=record.service,
            exit_code=record.exit_code,
            message=record.message,
            endpoints=tuple(record.endpoints) if self.running else (),
            started_at=record.started_at,
            finished_at=record.finished_at,
        )


class ProcessRuntime(Runtime):
    """Runs each task's command as a local process group, for one node of one cluster."""

    name = "process"

    def __init__(
        self,
        *,
        cluster_id: str,
        node_id: str,
        state_dir: str | Path,
        advertise_addr: str = "127.0.0.1",
        inherit_env: Sequence[str] = INHERITED_ENV,
    ) -> None:
        self.cluster_id = cluster_id
        self.node_id = node_id
        self.advertise_addr = advertise_addr
        self.records_dir = Path(state_dir) / RECORDS_DIR
        self._inherit_env = tuple(inherit_env)
        self._units: dict[str, _Unit] = {}
        self._feed = ChangeFeed()
        self._loaded = False

    # -- the seam -------------------------------------------------------------------

    async def describe(self) -> NodeDescription:
        uname = os.uname()
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return NodeDescription(
            hostname=uname.nodename,
            os=uname.sysname.lower(),
            arch=uname.machine,
            nano_cpus=(os.cpu_count() or 1) * 1_000_000_000,
            memory_bytes=int(pages),
            engine_version=f"shoal-process/{__version__}",
            engine_labels={},
        )

    async def ensure(self, task: Task) -> Observed:
        self._load()
        unit = self._units.get(task.id)
        if unit is not None:
            return unit.observed()
        spec = task.spec
        argv = [*(spec.command or []), *(spec.args or [])]
        if not argv:
            raise TaskRejected(
                "the process runtime runs a task's command, and this task has none "
                "(set command or args)"
            )
        stop_signal = _signal(spec.stop_signal or "SIGTERM")
        user, group = _user(spec.user)
        record = ProcessRecord(
            cluster_id=self.cluster_id,
            node_id=self.node_id,
            task_id=task.id,
            service=task.service,
            argv=argv,
            stop_signal=stop_signal.name,
            endpoints=list(declared_endpoints(spec.ports, host_ip=self.advertise_addr)),
        )
        workdir = spec.workdir
        if workdir is None:
            scratch = self._path(task.id, ".work")
            scratch.mkdir(parents=True, exist_ok=True)
            workdir = record.scratch_dir = str(scratch)
        env = {key: os.environ[key] for key in self._inherit_env if key in os.environ}
        env.update({"SHOAL_TASK_ID": task.id, "SHOAL_SERVICE_NAME": task.service})
        if task.slot is not None:
            env["SHOAL_TASK_SLOT"] = str(task.slot)
        env.update(spec.env)
        unit = _Unit(record)
        self._units[task.id] = unit
        try:
            popen = await asyncio.to_thread(
                _spawn,
                argv,
                cwd=workdir,
                env=env,
                log_path=self.log_path(task.id),
                user=user,
                group=group,
            )
        except OSError as exc:
            # Like a container whose executable is missing: the task fails (126/127).
            record.exit_code = 126 if isinstance(exc, PermissionError) else 127
            record.finished_at = time.time()
            record.message = f"starting process failed: {exc}"
            self._save(record)
            unit.exited.set()
            self._feed.publish(task.id)
            return unit.observed()
        _CHILDREN[popen.pid] = popen
        unit.popen = popen
        record.pid = popen.pid
        record.start_ticks = _start_ticks(popen.pid)
        record.started_at = time.time()
        self._watch(unit)
        if unit.removed:  # removed while it was being spawned
            await self._kill(unit)
            return unit.observed()
        self._save(record)
        self._feed.publish(task.id)
        return unit.observed()

    async def stop(self, task_id: str, *, grace: float) -> Observed | None:
        self._load()
        unit = self._units.get(task_id)
        if unit is None:
            return None
        if unit.running:
            self._signal_group(unit, _signal(unit.record.stop_signal))
            try:
                await asyncio.wait_for(unit.exited.wait(), timeout=max(grace, 0.0))
            except TimeoutError:
                await self._kill(unit)
        return unit.observed()

    async def remove(self, task_id: str) -> None:
        self._load()
        unit = self._units.get(task_id)
        if unit is None:
            return
        if unit.running:
            await self._kill(unit)
        unit.removed = True
        self._unwatch(unit)
        del self._units[task_id]
        for path in (self._path(task_id, ".json"), self.log_path(task_id)):
            path.unlink(missing_ok=True)
        if unit.record.scratch_dir:
            await asyncio.to_thread(shutil.rmtree, unit.record.scratch_dir, True)
        self._feed.publish(task_id)

    async def observe(self) -> list[Observed]:
        self._load()
        return [unit.observed() for unit in self._units.values()]

    def changes(self) -> AsyncIterator[str]:
        return self._feed.subscribe()

    async def close(self) -> None:
        """Stop watching; the processes keep running for the next agent to adopt.

        A closed runtime that is used again reads its records afresh, like a new one.
        """
        for unit in self._units.values():
            self._unwatch(unit)
        self._units.clear()
        self._loaded = False
        self._feed.close()

    async def logs(
        self, task_id: str, *, tail: int | None, timestamps: bool, follow: bool
    ) -> AsyncIterator[LogLine]:
        """The task's log file (stdout and stderr together, so all `stdout`; no times)."""
        path = self.log_path(task_id)
        if not path.exists():
            raise UnknownTask(task_id)
        async for line in read_log_file(path, tail=tail, follow=follow):
            yield line

    def log_path(self, task_id: str) -> Path:
        """Where the task's stdout and stderr go."""
        return self._path(task_id, ".log")

    def _path(self, task_id: str, suffix: str) -> Path:
        """`<records>/<task-id><suffix>`: the record (.json), log (.log), scratch (.work)."""
        return self.records_dir / f"{_FILE_UNSAFE.sub('-', task_id)}{suffix}"

    # -- records and adoption ---------------------------------------------------------

    def _load(self) -> None:
        """Read the records once, on first use (in the loop: adoption needs it)."""
        if self._loaded:
            return
        self._loaded = True
        self.records_dir.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.records_dir.glob("*.json")):
            try:
                record = ProcessRecord.load(path.read_bytes())
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable process record %s: %s", path, exc)
                continue
            if record.cluster_id != self.cluster_id or record.node_id != self.node_id:
                continue
            unit = _Unit(record)
            self._units[record.task_id] = unit
            if unit.running:
                self._adopt(unit)

    def _adopt(self, unit: _Unit) -> None:
        record = unit.record
        assert record.pid is not None
        if _start_ticks(record.pid) != record.start_ticks:
            self._finish(unit, exit_code=None)  # gone, or the pid now belongs to another
            return
        unit.popen = _CHILDREN.get(record.pid)
        self._watch(unit)

    def _watch(self, unit: _Unit) -> None:
        assert unit.record.pid is not None
        try:
            unit.pidfd = os.pidfd_open(unit.record.pid)
        except ProcessLookupError:
            self._on_exit(unit)
            return
        asyncio.get_running_loop().add_reader(unit.pidfd, self._on_exit, unit)

    def _unwatch(self, unit: _Unit) -> None:
        if unit.pidfd is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            asyncio.get_running_loop().remove_reader(unit.pidfd)
        os.close(unit.pidfd)
        unit.pidfd = None

    def _on_exit(self, unit: _Unit) -> None:
        """The pidfd is readable: the process has exited. Reap it if it is ours."""
        self._unwatch(unit)
        pid = unit.record.pid
        assert pid is not None
        status: int | None = None
        if unit.popen is not None:
            # Like a container, the task ends with its main process: whatever it left
            # behind in its group goes too. The unreaped leader still holds the group id,
            # so this cannot reach a stranger that reused the pid.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            status = unit.popen.wait()
            _CHILDREN.pop(pid, None)
        else:
            with contextlib.suppress(ChildProcessError):
                reaped, raw = os.waitpid(pid, os.WNOHANG)
                if reaped == pid:
                    status = os.waitstatus_to_exitcode(raw)
        self._finish(unit, exit_code=status)

    def _finish(self, unit: _Unit, *, exit_code: int | None) -> None:
        """Record how the process ended; `exit_code` None means it cannot be known."""
        record = unit.record
        record.finished_at = time.time()
        if exit_code is None:
            record.exit_code = None
            record.message = UNKNOWN_EXIT
        elif exit_code < 0:
            record.exit_code = 128 - exit_code
            record.message = (
                f"task: non-zero exit ({record.exit_code}): killed by "
                f"{signal.Signals(-exit_code).name}"
            )
        else:
            record.exit_code = exit_code
            record.message = f"task: non-zero exit ({exit_code})" if exit_code else ""
        unit.exited.set()
        if not unit.removed:
            self._save(record)
            self._feed.publish(record.task_id)

    def _signal_group(self, unit: _Unit, sig: signal.Signals) -> None:
        pid = unit.record.pid
        if pid is None or not unit.running:
            return
        if unit.popen is None and _start_ticks(pid) != unit.record.start_ticks:
            return  # not our process any more: never signal a stranger
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)

    async def _kill(self, unit: _Unit) -> None:
        self._signal_group(unit, signal.SIGKILL)
        try:
            await asyncio.wait_for(unit.exited.wait(), timeout=KILL_WAIT)
        except TimeoutError:
            log.warning("task %s: pid %s survived SIGKILL", unit.record.task_id, unit.record.pid)

    def _save(self, record: ProcessRecord) -> None:
        path = self._path(record.task_id, ".json")
        temporary = self._path(record.task_id, ".json.tmp")
        temporary.write_bytes(record.dump())
        os.replace(temporary, path)


def _spawn(
    argv: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    log_path: Path,
    user: int | None,
    group: int | None,
) -> subprocess.Popen[bytes]:
    """Start `argv` as the leader of a new session (so of a new process group)."""
    with log_path.open("ab") as output:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            user=user,
            group=group,
            extra_groups=[] if user is not None else None,
        )


def _start_ticks(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot); None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def _signal(name: str) -> signal.Signals:
    """A stop signal as Docker accepts it: "SIGTERM", "TERM", "term" or "15"."""
    text = name.strip().upper()
    try:
        if text.isdigit():
            return signal.Signals(int(text))
        return signal.Signals[text if text.startswith("SIG") else f"SIG{text}"]
    except (KeyError, ValueError):
        raise TaskRejected(f"unknown stop signal {name!r}") from None


def _user(spec: str | None) -> tuple[int | None, int | None]:
    """`user`, `uid`, `user:group` or `uid:gid` as ids; rejects what this node lacks."""
    if not spec:
        return None, None
    name, _, group_name = spec.partition(":")
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        uid, gid = entry.pw_uid, entry.pw_gid
    except KeyError:
        if not name.isdigit():
            raise TaskRejected(f"no user {name!r} on this node") from None
        uid, gid = int(name), int(name)
    if group_name:
        try:
            gid = int(group_name) if group_name.isdigit() else grp.getgrnam(group_name).gr_gid
        except KeyError:
            raise TaskRejected(f"no group {group_name!r} on this node") from None
    if uid == os.geteuid() and not group_name:
        return None, None  # already that user: nothing to switch
    if os.geteuid() != 0:
        raise TaskRejected(f"the agent does not run as root, so it cannot run tasks as {spec!r}")
    return uid, gid
