"""What the agent and convergence benchmarks share: the harness's Docker Engine (held the
way a pytest session holds it), shoal processes started as children, and small timing
and /proc helpers.

The engine is the tests' (`unix:///run/shoal-test-docker/docker.sock`). Other sessions
may be using it, so the benchmark takes a shared lock on `users.lock` for as long as it
runs and, like the last pytest session out, stops the daemon afterwards only if a harness
session started it and nobody else holds the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.harness import dockerd as harness
from tests.harness.images import BUSYBOX_IMAGE, ensure_busybox_image, shell_until_sigterm
from tests.harness.process import free_port

DOCKER_HOST = harness.DOCKER_HOST


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine() -> str:
    import platform

    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {load_average()}"
    )


@contextlib.contextmanager
def docker_engine() -> Iterator[Any]:
    """A `docker.DockerClient` on the harness's engine (started if none answers)."""
    import docker

    harness.RUN_DIR.mkdir(parents=True, exist_ok=True)
    harness.DATA_ROOT.mkdir(parents=True, exist_ok=True)
    users = (harness.RUN_DIR / "users.lock").open("a")
    server = None
    with harness._locked(harness.RUN_DIR / "start.lock"):
        fcntl.flock(users, fcntl.LOCK_SH)
        if not harness.engine_answers():
            harness.MARKER.unlink(missing_ok=True)
            log_dir = Path(tempfile.mkdtemp(prefix="shoal-bench-dockerd-"))
            server = harness._start_daemon(log_dir)
            assert server.proc is not None
            harness.MARKER.write_text(str(server.proc.pid))
    client = docker.DockerClient(base_url=DOCKER_HOST, version="auto", timeout=120)
    try:
        ensure_busybox_image(client)
        yield client
    finally:
        client.close()
        with harness._locked(harness.RUN_DIR / "start.lock"):
            fcntl.flock(users, fcntl.LOCK_UN)
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            else:
                harness._stop_if_ours(server)
                fcntl.flock(users, fcntl.LOCK_UN)
        users.close()


def storage_driver(client: Any) -> str:
    return str(client.info().get("Driver", "?"))


def remove_labelled(client: Any, label: str) -> int:
    """Force-remove every container carrying `label` (KEY or KEY=VALUE); how many."""
    found = client.api.containers(all=True, filters={"label": label})
    for info in found:
        with contextlib.suppress(Exception):
            client.api.remove_container(info["Id"], force=True)
    return len(found)


def floor(client: Any, n: int) -> float:
    """N plain containers created and started at once (one thread each, one connection
    each: a client of its own whose pool holds N, so no thread waits for a connection)."""
    import docker

    own = docker.DockerClient(base_url=DOCKER_HOST, version="auto", timeout=120, max_pool_size=n)
    try:
        return _floor(own, n)
    finally:
        own.close()


def _floor(client: Any, n: int) -> float:
    label = f"shoal-bench-floor={uuid.uuid4().hex[:8]}"
    key, _, value = label.partition("=")
    errors: list[BaseException] = []

    def one() -> None:
        try:
            created = client.api.create_container(
                BUSYBOX_IMAGE, command=shell_until_sigterm(), labels={key: value}
            )
            client.api.start(created["Id"])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    t0 = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - t0
    for info in client.api.containers(all=True, filters={"label": label}):
        client.api.remove_container(info["Id"], force=True)
    if errors:
        raise RuntimeError(f"floor: {errors[0]}")
    return elapsed


def start_profiler(pid: int, output: Path) -> subprocess.Popen[bytes]:
    argv = ["py-spy", "record", "--pid", str(pid), "--threads", "--idle", "--rate", "50"]
    return subprocess.Popen(
        [*argv, "--format", "raw", "-o", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# --- processes -------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Child:
    """A `shoal ...` subprocess, its output in a log file; stopped by pid only."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            ["shoal", *argv],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def wait_for(
    check: Callable[[], bool], *, timeout: float, interval: float = 0.05, what: str = ""
) -> float:
    """Poll `check` until true; the monotonic time it first was. TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"not after {timeout:g} s: {what}")
        time.sleep(interval)


class Manager:
    """`shoal manager` on its own port, initialised through the API (or joined to one)."""

    def __init__(
        self,
        discovery: str,
        log_dir: Path,
        *,
        name: str = "manager",
        lease_ttl: float | None = None,
        token: str | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = ["manager", "--discovery", discovery, "--listen", f"127.0.0.1:{self.port}"]
        if lease_ttl is not None:
            argv += ["--lease-ttl", str(lease_ttl)]
        self.child = Child(name, [*argv, "--log-level", "warning"], log_dir, {})
        self.token = token
        self.http = httpx.Client(base_url=self.url, timeout=60)
        wait_for(self._serves, timeout=60, what=f"{name} serving\n{self.child.tail()}")

    def _serves(self) -> bool:
        if not self.child.alive():
            raise RuntimeError(f"{self.child.name} exited:\n{self.child.tail()}")
        try:
            return self.http.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.http.get("/health", timeout=2).json()
        return answer

    def init(self) -> str:
        response = self.http.post("/swarm/init")
        response.raise_for_status()
        self.token = str(response.json()["api_token"])
        self._auth()
        return self.token

    def _auth(self) -> None:
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def use_token(self, token: str) -> None:
        self.token = token
        self._auth()

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def get_bytes(self, path: str, **params: Any) -> bytes:
        """The whole answer, received but not decoded (the API's own latency)."""
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.content

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.http.post(path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
        return response.json()

    def delete(self, path: str) -> None:
        self.http.delete(path)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.http.close()
        self.child.stop(sig)


class RunningWatch:
    """Counts a service's running tasks from the manager's `/events` stream.

    What a user watching for convergence would use, and it costs the manager one pass
    per change instead of one request every poll: polling `GET /services` every 50 ms
    cost the manager about 0.25 CPU-seconds in 5 s (2.5 ms a request), CPU the engine,
    already saturated by container starts, then did not have. Open it before the create
    call (`with`); `wait(n)` returns the monotonic time n tasks were first running.
    """

    def __init__(self, manager: Manager, service: str) -> None:
        self.service = service
        self._http = httpx.Client(
            base_url=manager.url, headers=dict(manager.http.headers), timeout=None
        )
        self._states: dict[str, str] = {}
        self._changed = threading.Condition()
        self._error: BaseException | None = None
        self._open = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> RunningWatch:
        self._reader.start()
        if not self._open.wait(30):
            raise TimeoutError("the event stream did not open")
        time.sleep(0.2)  # the server takes its first snapshot once the stream is open
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def running(self) -> int:
        return sum(1 for state in self._states.values() if state == "running")

    def _read(self) -> None:
        try:
            with self._http.stream("GET", "/events", params={"types": "task"}) as response:
                response.raise_for_status()
                self._open.set()
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        self._take(json.loads(line[5:]))
        except BaseException as exc:  # reported by wait()
            self._error = exc
            with self._changed:
                self._changed.notify_all()

    def _take(self, event: dict[str, Any]) -> None:
        """One task event: a removed task (which carries no attributes) or one of the
        service's tasks meant to run (with its state); other services' are ignored."""
        attributes = event.get("attributes", {})
        mine = attributes.get("service") == self.service
        with self._changed:
            if mine and attributes.get("desired_state") == "running":
                self._states[event["id"]] = attributes.get("state", "")
            elif mine or event["action"] == "remove":
                self._states.pop(event["id"], None)
            self._changed.notify_all()

    def wait(self, n: int, *, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.running() < n:
                if self._error is not None:
                    raise RuntimeError(f"event stream: {self._error!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"not after {timeout:g} s: {self.service} running")
                self._changed.wait(left)
            return time.monotonic()


def agent(
    discovery: str,
    state_dir: Path,
    log_dir: Path,
    *,
    runtime: str = "docker",
    hollow_nodes: int = 1,
    name: str = "agent",
    heartbeat: str = "5s",
) -> Child:
    argv = [
        "agent",
        "--discovery",
        discovery,
        "--state-dir",
        str(state_dir),
        "--advertise-addr",
        "127.0.0.1",
        "--runtime",
        runtime,
        "--heartbeat",
        heartbeat,
        "--log-level",
        "warning",
    ]
    if runtime == "docker":
        argv += ["--docker-host", DOCKER_HOST]
    if hollow_nodes > 1:
        argv += ["--hollow-nodes", str(hollow_nodes)]
    return Child(name, argv, log_dir, {})


def timed(call: Callable[[], object], count: int) -> list[float]:
    """Seconds each of `count` calls of `call` took, in order."""
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return times
