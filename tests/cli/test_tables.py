"""What `node ls`, `service ls` and `service ps` print: docker's columns, exactly.

The seeded cluster: three nodes (one leading manager, one drained worker, one down and
paused), three services (replicated with a port, global with a host port, replicated
with a per-node maximum) and the tasks a leader and agents would have written, with
times chosen so that the ages read the same whenever the test runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from controlplane import keys
from controlplane.agent.identity import Identity, save_identity
from controlplane.cli import output
from controlplane.models import LeaderRecord, NodeRole, PortConfig, TaskState
from controlplane.models.node import Availability
from controlplane.models.service import Placement, PublishMode, ServiceMode
from controlplane.models.task import DesiredState
from tests.cli.conftest import ServedManager, service_record, shoal

GOLDEN = Path(__file__).parent / "golden"
ALPHA = "alpha0000000000000000000a"
BETA = "beta00000000000000000000b"
GAMMA = "gamma000000000000000000gc"


def golden(name: str) -> str:
    """The expected output, kept in a file: table lines are wider than code lines."""
    return (GOLDEN / name).read_text()


@pytest.fixture
def seeded(
    cluster: ServedManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ServedManager:
    now = time.time()
    monkeypatch.setattr(output, "clock", lambda: now)  # ages as of seeding, however slow the run
    cluster.seed_node(ALPHA, hostname="alpha", role=NodeRole.MANAGER)
    cluster.seed_node(BETA, hostname="beta", availability=Availability.DRAIN, labels={"zone": "b"})
    cluster.seed_node(GAMMA, hostname="gamma", up=False, availability=Availability.PAUSE)
    leader = LeaderRecord(manager_id=ALPHA, api_url=cluster.url, term_started=now)
    cluster.put(keys.LEADER, leader.dump())
    save_identity(
        tmp_path / "agent", Identity(node_id=ALPHA, cluster_id="c", discovery="memory://x")
    )
    cluster.seed_service(
        service_record(
            "web",
            service_id="websvc000000000000000000w",
            image="nginx:1.27",
            replicas=3,
            ports=[PortConfig(target=80, published=8080)],
        )
    )
    cluster.seed_service(
        service_record(
            "agent",
            service_id="agentsvc0000000000000000a",
            image="prom/node-exporter:v1.8.1",
            mode=ServiceMode.GLOBAL,
            ports=[PortConfig(target=9100, published=9100, mode=PublishMode.HOST)],
        )
    )
    cluster.seed_service(
        service_record(
            "shop_db",
            service_id="dbsvc0000000000000000000d",
            stack="shop",
            image="postgres:16",
            replicas=2,
            placement=Placement(max_replicas_per_node=1),
        )
    )
    minutes = 60.0
    cluster.seed_task(
        "webtask1new0000000000000a",
        service="web",
        node_id=ALPHA,
        slot=1,
        state=TaskState.RUNNING,
        since=now - 5 * minutes - 20,
    )
    cluster.seed_task(
        "webtask1old0000000000000b",
        service="web",
        node_id=BETA,
        slot=1,
        state=TaskState.SHUTDOWN,
        since=now - 6 * minutes - 20,
        desired=DesiredState.SHUTDOWN,
        image="nginx:1.26",
    )
    cluster.seed_task(
        "webtask2000000000000000c",
        service="web",
        node_id=ALPHA,
        slot=2,
        state=TaskState.RUNNING,
        since=now - 3 * 3600 - 20,
    )
    cluster.seed_task(
        "webtask3000000000000000d",
        service="web",
        node_id="",
        slot=3,
        state=TaskState.PENDING,
        since=now - 30,
        message="no suitable node (1 node is drained; 1 node is down)",
    )
    cluster.seed_task(
        "agenttaskalpha0000000000e",
        service="agent",
        node_id=ALPHA,
        slot=None,
        state=TaskState.FAILED,
        since=now - 90,
        image="prom/node-exporter:v1.8.1",
        error="starting container failed: port 9100 is already allocated",
    )
    return cluster


def test_node_ls(seeded: ServedManager) -> None:
    result = shoal("node", "ls")
    assert result.exit_code == 0, result.output
    assert result.stdout == golden("node_ls.txt")


def test_service_ls(seeded: ServedManager) -> None:
    result = shoal("service", "ls")
    assert result.exit_code == 0, result.output
    assert result.stdout == golden("service_ls.txt")


def test_service_ps(seeded: ServedManager) -> None:
    result = shoal("service", "ps", "web", "agent")
    assert result.exit_code == 0, result.output
    assert result.stdout == golden("service_ps.txt")


def test_service_ps_no_trunc_and_filter(seeded: ServedManager) -> None:
    result = shoal("service", "ps", "--no-trunc", "--filter", "desired-state=running", "web")
    assert result.exit_code == 0, result.output
    assert result.stdout == golden("service_ps_no_trunc.txt")


# --- JSON and ids ---------------------------------------------------------------------


def test_json_reads_back_as_the_api_objects(seeded: ServedManager) -> None:
    nodes = json.loads(shoal("node", "ls", "--format", "json").stdout)
    assert {(n["hostname"], n["status"], n["availability"]) for n in nodes} == {
        ("alpha", "ready", "active"),
        ("beta", "ready", "drain"),
        ("", "down", "pause"),
    }
    services = json.loads(shoal("service", "ls", "--format", "json").stdout)
    web = next(s for s in services if s["name"] == "web")
    assert web["replicas"] == {"desired": 3, "running": 2}
    assert web["spec"]["ports"][0]["published"] == 8080
    tasks = json.loads(shoal("service", "ps", "web", "--format", "json").stdout)
    assert sorted(t["id"] for t in tasks) == sorted(
        [
            "webtask1new0000000000000a",
            "webtask1old0000000000000b",
            "webtask2000000000000000c",
            "webtask3000000000000000d",
        ]
    )
    inspected = json.loads(shoal("service", "inspect", "web", "shop_db").stdout)
    assert [s["name"] for s in inspected] == ["web", "shop_db"]
    (node,) = json.loads(shoal("node", "inspect", "beta").stdout)
    assert node["labels"] == {"zone": "b"}


def test_quiet_prints_ids_only(seeded: ServedManager) -> None:
    assert shoal("node", "ls", "-q").stdout.split() == [GAMMA, ALPHA, BETA]
    assert shoal("service", "ls", "-q").stdout.split() == [
        "agentsvc0000",
        "dbsvc0000000",
        "websvc000000",
    ]
    assert (
        shoal("service", "ls", "-q", "--no-trunc").stdout.split()[0] == "agentsvc0000000000000000a"
    )
    assert shoal("service", "ps", "-q", "agent").stdout.split() == ["agenttaskalp"]


def test_pretty_inspect_reads_like_docker(seeded: ServedManager) -> None:
    node = shoal("node", "inspect", "--pretty", "alpha").stdout
    assert "Hostname:               alpha" in node
    assert "Manager Status:         Leader" in node
    assert " Memory:                8 GiB" in node
    service = shoal("service", "inspect", "--pretty", "web").stdout
    assert "Service Mode:   Replicated" in service
    assert " Replicas:      3" in service
    assert " PublishedPort = 8080" in service
