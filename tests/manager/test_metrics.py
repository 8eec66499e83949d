"""`/metrics` of real managers: the counters move because the parts they count ran.

Two `shoal manager` processes on one store (file and etcd) and a hollow agent joined
through one of them. The leader's reconcile counter and latency histogram move when a
service is created, the standby's stay at zero; every manager's gauges show the node and
the service's tasks; when the leader stops, the new leader's leader-change counter goes
up, and it reconciles from then on.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.manager import REPO, SHOAL
from tests.harness.polling import poll
from tests.harness.process import ServerProcess
from tests.manager.conftest import ManagerProcess

pytestmark = pytest.mark.slow

TTL = 2.0
WITHIN = 20.0  # seconds a real process gets to act (CI machines are small and busy)
REPLICAS = 3

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(manager: ManagerProcess, token: str) -> Samples:
    request = urllib.request.Request(f"{manager.url}/metrics")
    request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(params=["file_url", "etcd_url"])
def discovery(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(*, join: str, token: str, ready: Callable[[], bool]) -> ServerProcess:
        argv = [
            *SHOAL, "agent", "--join", join, "--token", token, "--runtime", "hollow",
            "--state-dir", str(tmp_path / "agent"), "--heartbeat", "1s",
            "--hostname", "hollow-1", "--advertise-addr", "127.0.0.1",
        ]  # fmt: skip
        agent = ServerProcess(
            name="agent",
            argv=argv,
            log_dir=tmp_path / "logs",
            ready=ready,
            env={"PYTHONPATH": str(REPO)},
            start_timeout=WITHIN,
        )
        started.append(agent)
        agent.start()
        return agent

    yield start
    for agent in started:
        agent.stop()


def test_counters_and_gauges_follow_the_cluster(
    start_manager: Callable[..., ManagerProcess],
    start_agent: Callable[..., ServerProcess],
    discovery: str,
) -> None:
    a = start_manager("manager-a", discovery, lease_ttl=TTL, wait=False)
    b = start_manager("manager-b", discovery, lease_ttl=TTL, wait=False)
    a.wait_ready()
    b.wait_ready()
    leader = poll(lambda: next((m for m in (a, b) if m.leads()), None), within=WITHIN, what="lead")
    standby = b if leader is a else a
    status, init = standby.call("POST", "/swarm/init")
    assert status == 201, init
    token = init["api_token"]

    def node_ready() -> bool:
        status, nodes = standby.call("GET", "/nodes", token=token)
        return status == 200 and [n["status"] for n in nodes] == ["ready"]

    agent = start_agent(join=standby.url, token=init["join_tokens"]["worker"], ready=node_ready)
    for manager in (leader, standby):  # the gauges are the cluster's, on every manager
        poll(
            lambda m=manager: value(scrape(m, token), "shoal_nodes", status="ready") == 1,
            within=WITHIN,
            what=f"{manager.name} counts the node ready",
        )
    before = scrape(leader, token)
    assert value(before, "shoal_manager_is_leader") == 1

    body = {"name": "web", "image": "busybox", "replicas": REPLICAS}
    status, created = standby.call("POST", "/services", token=token, body=body)
    assert status == 201, created
    for manager in (leader, standby):
        poll(
            lambda m=manager: value(scrape(m, token), "shoal_tasks", state="running") == REPLICAS,
            within=WITHIN,
            what=f"{manager.name} counts {REPLICAS} running tasks",
        )

    after = scrape(leader, token)
    passes = value(after, "shoal_reconcile_passes_total")
    assert passes > value(before, "shoal_reconcile_passes_total")
    assert value(after, "shoal_reconcile_duration_seconds_count") == passes
    assert value(after, "shoal_reconcile_duration_seconds_sum") > 0
    assert value(after, "shoal_reconcile_duration_seconds_bucket", le="+Inf") == passes
    assert value(after, "shoal_leader_terms_won_total") == 1
    assert value(after, "shoal_services") == 1

    idle = scrape(standby, token)
    assert value(idle, "shoal_manager_is_leader") == 0
    assert value(idle, "shoal_reconcile_passes_total") == 0
    assert value(idle, "shoal_reconcile_duration_seconds_count") == 0
    assert value(idle, "shoal_leader_terms_won_total") == 0
    changes = value(idle, "shoal_leader_changes_total")

    leader.stop()  # SIGTERM: it resigns, the standby leads at once
    poll(standby.leads, within=WITHIN, what=f"{standby.name} leads")
    took_over = poll(
        lambda: (
            (s := scrape(standby, token))
            and value(s, "shoal_leader_changes_total") > changes
            and value(s, "shoal_reconcile_passes_total") > 0
            and s
        ),
        within=WITHIN,
        what=f"{standby.name} counts the new term and reconciles",
    )
    assert value(took_over, "shoal_manager_is_leader") == 1
    assert value(took_over, "shoal_leader_terms_won_total") == 1
    assert value(took_over, "shoal_reconcile_duration_seconds_count") > 0

    agent.stop()  # a clean stop revokes its heartbeat: the node is down
    poll(
        lambda: (
            (s := scrape(standby, token))
            and value(s, "shoal_nodes", status="down") == 1
            and value(s, "shoal_nodes", status="ready") == 0
        ),
        within=WITHIN,
        what="the node counted down",
    )
