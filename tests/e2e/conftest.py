"""A small real cluster: `shoal manager` and `shoal agent` processes, a real store (etcd,
Consul or the file store) and the harness's Docker Engine.

`start_cluster()` starts two managers on one fresh store prefix, initialises the cluster
through the first, and joins three agents with the worker token (`--join`), each on its
own loopback address (127.0.0.2, 127.0.0.3, 127.0.0.4; a later one gets .5) with its own
state directory and the Docker runtime on the harness's engine (`--docker-host`). The
`cluster` fixture (module scope, parametrized indirectly by store name) shares one such
cluster between a module's tests on that store; `tidy` removes each test's services and
re-activates drained nodes, and this folder's tests run store by store, in the order
written, so the tests that kill processes come last.

Timings are short: heartbeat 1 s (node TTL 3 s), manager lease TTL 2 s, node grace 3 s.
On Consul the store's minimum lease (10 s) raises the node TTL and the lease TTL to 10 s,
and Consul ends a session between TTL and 2 x TTL: `Cluster.node_ttl`, `lease_ttl` and
`slack` say what is in force, and the tests' bounds use them.

At the end every process is stopped and every container labelled with the cluster's id is
removed. Containers are counted in Docker by the labels the agent writes
(`com.shoal.cluster`, `com.shoal.service`, `com.shoal.node`, `com.shoal.slot`).
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from controlplane.agent.runtime.base import LABEL_CLUSTER, LABEL_NODE, LABEL_SERVICE, LABEL_SLOT
from controlplane.models.task import TERMINAL_STATES
from tests.harness.images import ensure_busybox_image
from tests.harness.manager import REPO, SHOAL, ManagerProcess, http
from tests.harness.polling import poll
from tests.harness.process import ServerProcess

HEARTBEAT = 1.0  # node TTL: 3 s
LEASE_TTL = 2.0
NODE_GRACE = 3.0
CONSUL_MIN_TTL = 10.0


class Manager(ManagerProcess):
    """A manager of the e2e cluster: a down node's tasks are replaced after `NODE_GRACE`."""

    def __init__(self, *, name: str, discovery: str, log_dir: Path, lease_ttl: float) -> None:
        super().__init__(
            name=name,
            discovery=discovery,
            log_dir=log_dir,
            lease_ttl=lease_ttl,
            node_grace=NODE_GRACE,
        )


class AgentProc(ServerProcess):
    def __init__(
        self, *, name: str, addr: str, state_dir: Path, log_dir: Path, argv_tail: list[str]
    ) -> None:
        self.addr = addr
        self.state_dir = state_dir
        self.node_id: str | None = None
        super().__init__(
            name=name,
            argv=[
                *SHOAL,
                "agent",
                *argv_tail,
                "--advertise-addr",
                addr,
                "--state-dir",
                str(state_dir),
                "--heartbeat",
                f"{HEARTBEAT}s",
            ],
            log_dir=log_dir,
            ready=lambda: True,
            env={"PYTHONPATH": str(REPO)},
            start_timeout=60,
        )


#: A task's observed states once it has ended.
ENDED = frozenset(state.value for state in TERMINAL_STATES)


@dataclass(frozen=True)
class Container:
    id: str
    labels: dict[str, str]
    state: str


def slots_once(containers: list[Container], count: int) -> bool:
    """The containers are slots 1..count, each once."""
    return sorted(int(c.labels[LABEL_SLOT]) for c in containers) == list(range(1, count + 1))


def made_in_batches(tasks: Iterable[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """`tasks` grouped by when the leader made them: a gap of over 0.5 s between two
    creations starts a new batch."""
    ordered = sorted(tasks, key=lambda t: float(t["created"]))
    batches: list[list[dict[str, Any]]] = [ordered[:1]]
    for before, after in itertools.pairwise(ordered):
        if after["created"] - before["created"] > 0.5:
            batches.append([])
        batches[-1].append(after)
    return batches


@dataclass
class Cluster:
    store: str
    discovery: str
    tmp: Path
    engine: Any  # docker.DockerClient
    image: str
    docker_host: str
    lease_ttl: float
    node_ttl: float
    slack: float  # how late the store may end a lease: Consul up to one TTL, others 0
    managers: list[Manager] = field(default_factory=list)
    agents: list[AgentProc] = field(default_factory=list)
    #: Extra environment for every manager started (e.g. SHOAL_RECONCILE_TXN_ITEMS).
    manager_env: dict[str, str] = field(default_factory=dict)
    token: str = ""
    worker_token: str = ""
    cluster_id: str = ""

    # --- processes -------------------------------------------------------------------------
    def start_manager(self, *, wait: bool = True) -> Manager:
        manager = Manager(
            name=f"manager-{len(self.managers) + 1}",
            discovery=self.discovery,
            log_dir=self.tmp / "logs",
            lease_ttl=self.lease_ttl,
        )
        manager.env = {**(manager.env or {}), **self.manager_env}
        self.managers.append(manager)
        manager.start(wait=wait)
        return manager

    @property
    def api(self) -> Manager:
        """A running manager (the first that runs)."""
        return next(m for m in self.managers if m.running)

    def leader(self) -> Manager | None:
        leading = [m for m in self.managers if m.running and m.leads()]
        return leading[0] if len(leading) == 1 else None

    def call(self, method: str, path: str, body: object | None = None) -> Any:
        status, answer = http(method, f"{self.api.url}{path}", token=self.token, body=body)
        assert 200 <= status < 300, f"{method} {path}: {status} {answer}"
        return answer

    def init(self) -> None:
        status, body = http("POST", f"{self.api.url}/swarm/init")
        assert status == 201, body
        self.token = body["api_token"]
        self.worker_token = body["join_tokens"]["worker"]
        self.cluster_id = body["cluster_id"]

    def start_agent(self, *, wait: bool = True) -> AgentProc:
        index = len(self.agents) + 1
        addr = f"127.0.0.{index + 1}"
        agent = AgentProc(
            name=f"agent-{index}",
            addr=addr,
            state_dir=self.tmp / f"agent-{index}",
            log_dir=self.tmp / "logs",
            argv_tail=[
                "--join",
                self.api.url,
                "--token",
                self.worker_token,
                "--runtime",
                "docker",
                "--docker-host",
                self.docker_host,
            ],
        )
        self.agents.append(agent)
        agent.start()
        if wait:
            self.wait_agent(agent)
        return agent

    def wait_agent(self, agent: AgentProc) -> str:
        """The agent's node id, once the managers list its node as ready."""

        def ready() -> str | None:
            if not agent.running:
                raise AssertionError(f"{agent.name} exited:\n{agent.tail()}")
            for node in self.call("GET", "/nodes"):
                if node["addr"] == agent.addr and node["status"] == "ready":
                    return str(node["id"])
            return None

        agent.node_id = poll(ready, within=30, what=f"{agent.name} ready")
        return agent.node_id

    def restart_agent(self, agent: AgentProc) -> None:
        """Start `agent` again, with the same command line (as systemd would): its state
        directory holds its identity, so it does not join again."""
        agent.start()

    def stop_all(self) -> None:
        processes: list[ServerProcess] = [*self.agents, *self.managers]
        for process in processes:  # all at once, then wait for each
            if process.proc is not None and process.proc.poll() is None:
                process.proc.send_signal(signal.SIGTERM)
        for process in processes:
            process.stop(timeout=20)

    def shut_down(self) -> None:
        """Stop every process, then remove every container the cluster left on the engine."""
        try:
            self.stop_all()
        finally:
            self.remove_containers()

    # --- services and tasks -----------------------------------------------------------------
    def create(self, name: str, **spec: Any) -> dict[str, Any]:
        body = {"name": name, "image": self.image, "init": True, "stop_grace_period": 2, **spec}
        body.setdefault("restart_policy", {"condition": "any", "delay": 0.5})
        answer: dict[str, Any] = self.call("POST", "/services", body)
        return answer

    def tasks(self, service: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.call("GET", f"/tasks?service={service}")
        return found

    def meant_to_run(self, service: str) -> list[dict[str, Any]]:
        """The service's tasks meant to run now. A task that ended (failed, say, and was
        replaced) stays as its slot's history with its desired state unchanged."""
        return [
            t
            for t in self.tasks(service)
            if t["desired_state"] == "running" and t["state"] not in ENDED
        ]

    def service(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.call("GET", f"/services/{name}")
        return found

    def remove_services(self) -> list[str]:
        """Remove every service, and wait until their tasks have left the store (what the
        next test's placements see); the agents remove the containers meanwhile."""
        removed = [service["name"] for service in self.call("GET", "/services")]
        for name in removed:
            self.call("DELETE", f"/services/{name}")
        poll(
            lambda: not [t for t in self.call("GET", "/tasks") if t["service"] in removed],
            within=30,
            what=f"the tasks of {removed} removed",
            every=0.2,
        )
        return removed

    def node_id_of(self, agent: AgentProc) -> str:
        assert agent.node_id is not None
        return agent.node_id

    # --- what Docker runs -------------------------------------------------------------------
    def containers(self, service: str | None = None, *, all: bool = False) -> list[Container]:
        """The cluster's containers (of `service`), running ones unless `all`.

        The engine's list call, not the SDK's `containers.list()`: that inspects each
        container afterwards and fails when one is removed in between.
        """
        labels = [f"{LABEL_CLUSTER}={self.cluster_id}"]
        if service is not None:
            labels.append(f"{LABEL_SERVICE}={service}")
        found = self.engine.api.containers(all=all, filters={"label": labels})
        return [Container(id=c["Id"], labels=c["Labels"] or {}, state=c["State"]) for c in found]

    def inspect(self, container: Container) -> dict[str, Any]:
        info: dict[str, Any] = self.engine.api.inspect_container(container.id)
        return info

    def per_node(self, service: str) -> Counter[str]:
        return Counter(c.labels[LABEL_NODE] for c in self.containers(service))

    def running(self, service: str, count: int, *, within: float) -> list[Container]:
        """The service's running containers once there are exactly `count` of them."""

        def exactly() -> list[Container] | None:
            found = self.containers(service)
            return found if len(found) == count else None

        return poll(exactly, within=within, what=f"{count} containers of {service} running")

    def each_slot_runs_once(self, service: str, count: int, *, within: float) -> None:
        """`count` containers of `service` come to run, slots 1..count each once, never
        more than `count` at once on the way, and none more arrive in the next 2 s."""
        most = 0

        def all_there() -> list[Container] | None:
            nonlocal most
            found = self.containers(service)
            most = max(most, len(found))
            return found if len(found) == count else None

        found = poll(all_there, within=within, what=f"{count} containers of {service} running")
        assert slots_once(found, count), Counter(c.labels[LABEL_SLOT] for c in found)
        time.sleep(2.0)  # nothing more arrives: no slot twice
        final = self.containers(service)
        assert most == count
        assert len(final) == count
        assert slots_once(final, count)

    def remove_containers(self) -> None:
        if not self.cluster_id:
            return

        def remove(container: Container) -> None:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.engine.api.remove_container(container.id, force=True)

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(remove, self.containers(all=True)))

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail(40)}" for p in [*self.managers, *self.agents])


STORE_ORDER = ("etcd", "consul", "file")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run this folder's tests store by store, each store's module by module in the order
    written, so that one cluster per store and module serves them (a module's cluster is
    stopped when the next module's test runs) and the tests that kill processes come
    last."""
    here = Path(__file__).parent
    mine = [i for i, item in enumerate(items) if here in Path(str(item.path)).parents]
    if not mine:
        return

    def key(index: int) -> tuple[int, str, int]:
        item = items[index]
        callspec = getattr(item, "callspec", None)
        store = callspec.params.get("cluster") if callspec is not None else None
        rank = STORE_ORDER.index(store) if store in STORE_ORDER else -1
        return rank, str(item.path), item.location[1] or 0

    ordered = [items[i] for i in sorted(mine, key=key)]
    for slot, item in zip(mine, ordered, strict=True):
        items[slot] = item


@pytest.fixture(scope="session")
def e2e_image(docker_client: Any) -> str:
    return ensure_busybox_image(docker_client)


def start_cluster(
    store: str, url: str, tmp: Path, *, engine: Any, image: str, docker_host: str,
    managers: int = 2, agents: int = 3, manager_env: dict[str, str] | None = None,
) -> Cluster:  # fmt: skip
    """Managers started (one leads), the cluster initialised, the agents joined and ready."""
    consul = store == "consul"
    node_ttl = max(3 * HEARTBEAT, CONSUL_MIN_TTL if consul else 0.0)
    cluster = Cluster(
        store=store,
        discovery=url,
        tmp=tmp,
        engine=engine,
        image=image,
        docker_host=docker_host,
        lease_ttl=CONSUL_MIN_TTL if consul else LEASE_TTL,
        node_ttl=node_ttl,
        slack=node_ttl if consul else 0.0,
        manager_env=dict(manager_env or {}),
    )
    try:
        for _ in range(managers):
            cluster.start_manager(wait=False)
        for manager in cluster.managers:
            manager.wait_ready()
        poll(cluster.leader, within=30, what="a leader")
        cluster.init()
        for _ in range(agents):
            cluster.start_agent(wait=False)
        for agent in cluster.agents:
            cluster.wait_agent(agent)
    except BaseException:
        cluster.stop_all()
        cluster.remove_containers()
        raise
    return cluster


@pytest.fixture(scope="module")
def cluster(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    dockerd: str,
    docker_client: Any,
    e2e_image: str,
) -> Iterator[Cluster]:
    """Two managers and three agents on `request.param`'s store (parametrize indirectly:
    `etcd`, `consul` or `file`), shared by a module's tests on that store; each test
    leaves it as it found it (`tidy` removes services and re-activates nodes)."""
    yield from module_cluster(
        request, tmp_path_factory, engine=docker_client, image=e2e_image, docker_host=dockerd
    )


def module_cluster(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    engine: Any,
    image: str,
    docker_host: str,
    name: str = "cluster",
    manager_env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """The body of a module's `cluster` fixture: a cluster on `request.param`'s store,
    shut down at the end; `manager_env` goes to its managers."""
    store: str = request.param
    url = "file://{}/store".format(tmp_path_factory.mktemp(f"{name}-{store}-store"))
    if store != "file":
        url = request.getfixturevalue(f"{store}_server").url()
    made = start_cluster(
        store,
        url,
        tmp_path_factory.mktemp(f"{name}-{store}"),
        engine=engine,
        image=image,
        docker_host=docker_host,
        manager_env=manager_env,
    )
    try:
        yield made
    finally:
        made.shut_down()


@pytest.fixture(autouse=True)
def tidy(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test on a shared cluster: its services removed, every node active."""
    yield
    if "cluster" not in request.fixturenames:
        return
    made: Cluster = request.getfixturevalue("cluster")
    if not any(m.running for m in made.managers):
        return
    made.remove_services()  # the cluster's end removes whatever containers are left
    for node in made.call("GET", "/nodes"):
        if node["availability"] != "active":
            made.call("POST", f"/nodes/{node['id']}/update", {"availability": "active"})
