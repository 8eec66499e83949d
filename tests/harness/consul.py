"""Real Consul servers for the tests: one shared dev agent, durable servers, a cluster.

Every server listens on 127.0.0.1 only, on ports from `free_port()` (other engineers run
servers on this machine too), with DNS and gRPC off. Three shapes:

- `consul_server` (session): one `consul agent -dev`, in memory, shared by every test;
  `consul_url` gives each test a fresh prefix on it.
- `consul_durable_server` (per test): a real single-server agent (`-server
  -bootstrap-expect 1 -data-dir`), so its keys and sessions survive `restart()`.
- `consul_cluster` (session, healed before each test): three servers that find each
  other with `-retry-join`; `stop_member(i)` and `start_member(i)` take one down and back.

Non-dev servers run with `raft_multiplier = 1` (elections in about a second instead of
Consul's production-safe 5 x), and autopilot's dead-server cleanup off, so a stopped
member stays a voter and rejoins as one at once (cleanup would shrink the cluster to two
voters, and then stopping a second member would lose quorum).

Readiness and the cluster's health are read with py-consul, the synchronous client the
tests also use to check what the backend wrote.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import consul
import pytest

from tests.harness.process import ServerProcess, free_port, require_binary

HOST = "127.0.0.1"
_WHY = "the consul:// discovery backend's tests run against a real Consul"


class ConsulServer:
    """One Consul agent; `dev=True` keeps everything in memory (and loses it on restart)."""

    def __init__(
        self,
        *,
        name: str,
        log_dir: Path,
        data_dir: Path | None = None,
        bootstrap_expect: int = 1,
        join: list[str] | None = None,
    ) -> None:
        self.binary = require_binary("consul", why=_WHY)
        self.name = name
        self.data_dir = data_dir
        self.http_port = free_port()
        self.server_port = free_port()
        self.serf_lan_port = free_port()
        self.serf_wan_port = free_port()
        argv = [self.binary, "agent", "-node", name, "-bind", HOST, "-client", HOST]
        argv += ["-http-port", str(self.http_port), "-server-port", str(self.server_port)]
        argv += ["-serf-lan-port", str(self.serf_lan_port)]
        argv += ["-serf-wan-port", str(self.serf_wan_port)]
        argv += ["-dns-port", "-1", "-grpc-port", "-1", "-log-level", "debug"]
        argv += ["-hcl", "disable_update_check = true"]
        if data_dir is None:
            argv.append("-dev")
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            argv += ["-server", "-bootstrap-expect", str(bootstrap_expect)]
            argv += ["-data-dir", str(data_dir)]
            argv += ["-hcl", "performance { raft_multiplier = 1 }"]
            argv += ["-hcl", "autopilot { cleanup_dead_servers = false }"]
            argv += ["-retry-interval", "1s"]
            for address in join or []:
                argv += ["-retry-join", address]
        self.process = ServerProcess(
            name=f"consul-{name}", argv=argv, log_dir=log_dir, ready=self.ready
        )

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.http_port}"

    @property
    def serf_address(self) -> str:
        return f"{HOST}:{self.serf_lan_port}"

    @property
    def raft_address(self) -> str:
        return f"{HOST}:{self.server_port}"

    @property
    def running(self) -> bool:
        return self.process.running

    def client(self) -> Any:
        """A py-consul client for this agent (the tests' independent view of Consul)."""
        return consul.Consul(host=HOST, port=self.http_port)

    def url(self, prefix: str | None = None) -> str:
        return f"consul://{self.endpoint}/{prefix or f't-{uuid.uuid4().hex[:10]}'}"

    def leader(self) -> str:
        """The raft address of the leader this agent knows, or "" (none, or down)."""
        try:
            return str(self.client().status.leader() or "")
        except Exception:  # any failure means "not ready": requests' errors, bad JSON
            return ""

    def ready(self) -> bool:
        """A leader is known and this agent answers KV reads through it."""
        if not self.leader():
            return False
        try:
            self.client().kv.get("shoal-harness-probe")
        except Exception:  # "No cluster leader" (500) while leadership settles
            return False
        return True

    def start(self, *, wait: bool = True) -> None:
        self.process.start(wait=wait)

    def stop(self) -> None:
        """SIGTERM: a server does not leave the cluster on it, so it rejoins as a voter."""
        self.process.stop()

    def restart(self) -> None:
        self.process.restart()


class ConsulCluster:
    """Three Consul servers on loopback that elect a leader among themselves."""

    def __init__(self, *, base_dir: Path, size: int = 3) -> None:
        self.members: list[ConsulServer] = []
        for i in range(size):
            self.members.append(
                ConsulServer(
                    name=f"member{i}",
                    log_dir=base_dir / "logs",
                    data_dir=base_dir / f"data{i}",
                    bootstrap_expect=size,
                )
            )
        for member in self.members:
            others = [m.serf_address for m in self.members if m is not member]
            for address in others:
                member.process.argv += ["-retry-join", address]

    def start(self) -> None:
        for member in self.members:
            member.start(wait=False)
        for member in self.members:
            member.process.wait_ready()
        self.wait_healthy()

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def url(self, prefix: str | None = None, *, order: list[int] | None = None) -> str:
        """A URL listing every member's HTTP endpoint, in `order` if given."""
        indexes = order if order is not None else list(range(len(self.members)))
        hosts = ",".join(self.members[i].endpoint for i in indexes)
        return f"consul://{hosts}/{prefix or f't-{uuid.uuid4().hex[:10]}'}"

    def leader_index(self, *, timeout: float = 30.0) -> int:
        """Which member leads now (waiting for an election if one is under way)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for member in self.members:
                if member.running:
                    leader = member.leader()
                    for i, candidate in enumerate(self.members):
                        if leader == candidate.raft_address and candidate.running:
                            return i
            time.sleep(0.1)
        raise RuntimeError(f"no Consul leader after {timeout} s")

    def stop_member(self, index: int) -> None:
        self.members[index].stop()

    def start_member(self, index: int) -> None:
        self.members[index].start()
        self.wait_healthy()

    def wait_healthy(self, *, timeout: float = 60.0) -> None:
        """Every member runs, and autopilot counts all of them as healthy voters."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if all(m.running for m in self.members):
                try:
                    health = self.members[0].client().operator.autopilot_health()
                except Exception as exc:  # not answering yet
                    last = exc
                else:
                    last = health
                    servers = health.get("Servers") or []
                    if (
                        health.get("Healthy")
                        and len(servers) == len(self.members)
                        and all(s.get("Voter") and s.get("Healthy") for s in servers)
                    ):
                        return
            time.sleep(0.2)
        raise RuntimeError(f"Consul cluster not healthy after {timeout} s: {last}")

    def heal(self) -> None:
        for member in self.members:
            if not member.running:
                member.start(wait=False)
        self.wait_healthy()


S = TypeVar("S", ConsulServer, ConsulCluster)


def started(make: Callable[[], S], *, attempts: int = 3) -> S:
    """`make()` then start it; on failure (most likely a port `free_port()` handed out
    that something else took meanwhile) try again with fresh ports."""
    for attempt in range(1, attempts + 1):
        made = make()
        try:
            made.start()
        except RuntimeError:
            made.stop()
            if attempt == attempts:
                raise
            continue
        return made
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def consul_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsulServer]:
    log_dir = tmp_path_factory.mktemp("consul-dev")
    server = started(lambda: ConsulServer(name="dev", log_dir=log_dir))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def consul_url(consul_server: ConsulServer) -> str:
    """A fresh, empty prefix on the shared dev agent."""
    return consul_server.url()


@pytest.fixture
def consul_durable_server(tmp_path: Path) -> Iterator[ConsulServer]:
    """A single-server Consul of this test's own whose data survives `restart()`."""
    server = started(
        lambda: ConsulServer(
            name="durable",
            log_dir=tmp_path / "logs",
            data_dir=tmp_path / f"data-{uuid.uuid4().hex[:6]}",
        )
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _consul_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsulCluster]:
    cluster = started(lambda: ConsulCluster(base_dir=tmp_path_factory.mktemp("consul-cluster")))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def consul_cluster(_consul_cluster: ConsulCluster) -> ConsulCluster:
    """The three-server cluster, every member running and healthy again."""
    _consul_cluster.heal()
    return _consul_cluster
