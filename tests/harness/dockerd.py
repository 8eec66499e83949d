"""A real Docker Engine for the tests, on its own socket, shared by every session.

The engine listens on `unix:///run/shoal-test-docker/docker.sock`, never on the system's
`/var/run/docker.sock`, and keeps its images under `/var/lib/shoal-test-docker`, which
outlives the session so that test images are built once per machine, not once per run.

Several engineers (and their pytest sessions) share one machine, so:
- a session first checks whether the socket already answers, and then just uses it;
- starting is serialised by an exclusive lock, so two sessions never race two daemons;
- every session holds a shared lock on `users.lock` while it uses the engine. At its end
  a session that can take that lock exclusively (nobody else uses the engine) stops the
  daemon if a harness session started it (the `started-by-harness` file says so): the
  last session out turns the light off. A daemon started by hand is always left running.

overlay2 is tried first; where the kernel refuses overlay mounts the daemon is started
again with vfs (slow: it copies the image for every container, but it always works).
dockerd needs root; without root or without the binary, tests that need it skip
locally and fail under CI=true, as for every other server the harness runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.process import ServerProcess, in_ci, require_binary

RUN_DIR = Path("/run/shoal-test-docker")
SOCKET = RUN_DIR / "docker.sock"
DOCKER_HOST = f"unix://{SOCKET}"
DATA_ROOT = Path("/var/lib/shoal-test-docker")
STORAGE_DRIVERS = ("overlay2", "vfs")
# Holds the pid of a daemon a harness session started; one started by hand has none.
MARKER = RUN_DIR / "started-by-harness"


def engine_answers(socket_path: Path = SOCKET, *, timeout: float = 2.0) -> bool:
    """True when a Docker Engine answers `GET /_ping` on the unix socket `socket_path`.

    A raw request rather than the SDK: it needs no API version, and a probe of a daemon
    that is not up yet leaves no half-made client behind.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(socket_path))
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = conn.recv(64).split(b"\r\n", 1)[0]
    except OSError:
        return False
    return status_line.startswith(b"HTTP/1.") and b" 200 " in status_line + b" "


def _daemon(driver: str, log_dir: Path) -> ServerProcess:
    dockerd = require_binary("dockerd", why="the Docker runtime tests need a real Docker Engine")
    return ServerProcess(
        name=f"dockerd-{driver}",
        argv=[
            dockerd,
            "--host",
            DOCKER_HOST,
            "--data-root",
            str(DATA_ROOT),
            "--exec-root",
            str(RUN_DIR / "exec"),
            "--pidfile",
            str(RUN_DIR / "dockerd.pid"),
            "--storage-driver",
            driver,
        ],
        log_dir=log_dir,
        ready=lambda: engine_answers(timeout=1.0),
        start_timeout=60.0,
    )


def _start_daemon(log_dir: Path) -> ServerProcess:
    failures: list[str] = []
    for driver in STORAGE_DRIVERS:
        server = _daemon(driver, log_dir)
        try:
            server.start()
            return server
        except RuntimeError as exc:
            server.stop()
            failures.append(f"--storage-driver {driver}: {exc}")
    raise RuntimeError("dockerd would not start:\n" + "\n\n".join(failures))


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Docker host URL answered by a real engine (reused if one already runs there)."""
    if os.geteuid() != 0:
        message = "dockerd needs root; the Docker tests run as root (as CI does)"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    users = (RUN_DIR / "users.lock").open("a")
    server: ServerProcess | None = None
    with _locked(RUN_DIR / "start.lock"):
        fcntl.flock(users, fcntl.LOCK_SH)  # never blocks: EX is taken only under start.lock
        if not engine_answers():
            MARKER.unlink(missing_ok=True)
            server = _start_daemon(tmp_path_factory.mktemp("dockerd"))
            assert server.proc is not None
            MARKER.write_text(str(server.proc.pid))
    try:
        yield DOCKER_HOST
    finally:
        with _locked(RUN_DIR / "start.lock"):
            fcntl.flock(users, fcntl.LOCK_UN)
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # another session still uses it: the last one out stops it
            else:
                _stop_if_ours(server)
                fcntl.flock(users, fcntl.LOCK_UN)
        users.close()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _stop_if_ours(server: ServerProcess | None) -> None:
    """Stop the daemon if a harness session started it (this one or another)."""
    if server is not None:
        server.stop(timeout=30.0)
        MARKER.unlink(missing_ok=True)
        return
    try:
        pid = int(MARKER.read_text())
    except (OSError, ValueError):
        return  # started by hand, or already gone: not ours to stop
    MARKER.unlink(missing_ok=True)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    ours = cmdline[0].endswith(b"dockerd") and str(SOCKET).encode() in b" ".join(cmdline)
    if not ours:
        return  # the pid was recycled: never signal a stranger
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30.0
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture(scope="session")
def dockerd_url(dockerd: str) -> str:
    """The same Docker host URL, under the name the placeholder used."""
    return dockerd


@pytest.fixture(scope="session")
def docker_client(dockerd: str) -> Iterator[Any]:
    """A `docker.DockerClient` for the harness's engine."""
    import docker

    client = docker.DockerClient(base_url=dockerd, version="auto", timeout=60)
    try:
        yield client
    finally:
        client.close()


def wait_until_gone(client: Any, container_id: str, *, timeout: float = 10.0) -> None:
    """Poll until the engine no longer knows `container_id`."""
    import docker.errors

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.api.inspect_container(container_id)
        except docker.errors.NotFound:
            return
        time.sleep(0.05)
    raise AssertionError(f"container {container_id[:12]} still exists after {timeout} s")
