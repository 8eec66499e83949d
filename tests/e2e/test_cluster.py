"""The manager issue's end-to-end checks: two managers and three agents as real processes,
a real store (etcd, Consul, the file store) and the harness's Docker Engine.

Every check counts what Docker runs (by the labels the agent writes), not only what the
API says. One cluster per store is shared by this module's tests (each test removes its
services and re-activates nodes), so the order below matters only for cost: the tests
that kill processes come last.

Consul's minimum lease is 10 s (and it may end a session up to one TTL late), so its
variants are the ones where the store matters most: the spread (join, heartbeats,
watches), scaling, draining, restarts, a rolling update, a failing update rolled back,
a global service, a request to a task (the leader's task writes and the agents' batched
status reports under Consul's 64-operation transactions; together about half a minute)
and an agent's loss (node leases). The leader's loss on every store is
`test_leader_mid_plan.py` (killed between the transactions of one plan, the harder
case). What stays on etcd and the file store only: the new leader's rolling update, whose
timing (a leader's lease running out) Consul's 10 s minimum lease would stretch. What
runs on the file store only, the store adding nothing to what it checks: a manual
rollback (paced by the rollback config, no lease; its logic is in
`tests/reconciler/test_rollback.py`) and the leader killed once containers run, after
the plan was written (the store's part, failover, is the mid-plan test's). The bounds
add Consul's slack (`Cluster.slack`).
"""

from __future__ import annotations

import itertools
import time
import urllib.request
from collections import Counter
from typing import Any

import pytest

from controlplane.agent.runtime.base import LABEL_NODE
from tests.e2e.conftest import NODE_GRACE, Cluster, Container, made_in_batches, poll, slots_once
from tests.harness.images import http_hostname_server, shell_until_sigterm
from tests.harness.process import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ALL_STORES = ["etcd", "consul", "file"]
FAST_STORES = ["etcd", "file"]

every_store = pytest.mark.parametrize("cluster", ALL_STORES, indirect=True)
fast_stores = pytest.mark.parametrize("cluster", FAST_STORES, indirect=True)
file_store = pytest.mark.parametrize("cluster", ["file"], indirect=True)

MISSING_IMAGE = "127.0.0.1:1/shoal-e2e/missing:none"  # a registry that refuses at once


@every_store
def test_three_agents_run_ten_replicas_spread(cluster: Cluster) -> None:
    nodes = {node["id"]: node for node in cluster.call("GET", "/nodes")}
    assert sorted(n["addr"] for n in nodes.values()) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert {n["status"] for n in nodes.values()} == {"ready"}

    cluster.create("web", replicas=10, command=shell_until_sigterm())
    running = cluster.running("web", 10, within=60)
    spread = cluster.per_node("web")
    assert set(spread) == set(nodes)
    assert sorted(spread.values()) == [3, 3, 4], spread
    assert slots_once(running, 10)
    poll(
        lambda: cluster.service("web")["replicas"]["running"] == 10,
        within=10,
        what="the API counts 10 running",
    )


@every_store
def test_scale_ten_to_three_to_twelve(cluster: Cluster) -> None:
    cluster.create("scaled", replicas=10, command=shell_until_sigterm())
    cluster.running("scaled", 10, within=60)

    cluster.call("POST", "/services/scaled/scale", {"replicas": 3})
    three = cluster.running("scaled", 3, within=30)
    assert slots_once(three, 3)

    cluster.call("POST", "/services/scaled/scale", {"replicas": 12})
    twelve = cluster.running("scaled", 12, within=60)
    assert slots_once(twelve, 12)
    assert sorted(cluster.per_node("scaled").values()) == [4, 4, 4]
    poll(
        lambda: cluster.service("scaled")["replicas"] == {"desired": 12, "running": 12},
        within=10,
        what="the API counts 12 of 12",
    )


@every_store
def test_drained_node_tasks_move_off(cluster: Cluster) -> None:
    cluster.create("drained", replicas=6, command=shell_until_sigterm())
    cluster.running("drained", 6, within=60)
    victim = cluster.node_id_of(cluster.agents[0])
    placed = Counter(t["node_id"] for t in cluster.meant_to_run("drained"))
    assert placed[victim] == 2, placed

    cluster.call("POST", f"/nodes/{victim}/update", {"availability": "drain"})

    def moved() -> list[dict[str, Any]] | None:
        tasks = cluster.meant_to_run("drained")
        off = len(tasks) == 6 and all(t["node_id"] != victim for t in tasks)
        return tasks if off and all(t["state"] == "running" for t in tasks) else None

    poll(moved, within=30, what="the drained node's tasks running elsewhere")

    def elsewhere() -> Counter[str] | None:  # what Docker runs, polled as a whole
        spread = cluster.per_node("drained")
        return spread if spread[victim] == 0 and sum(spread.values()) == 6 else None

    spread = poll(elsewhere, within=30, what="six containers, none on the drained node")
    assert sorted(spread.values()) == [3, 3], spread
    assert slots_once(cluster.containers("drained"), 6)


@every_store
def test_restart_on_failure_gives_up_after_two_attempts(cluster: Cluster) -> None:
    cluster.create(
        "crashing",
        replicas=1,
        command=["/bin/sh", "-c", "exit 1"],
        restart_policy={"condition": "on-failure", "max_attempts": 2, "delay": 0.2},
    )

    def three_failed() -> list[dict[str, Any]] | None:
        tasks = cluster.tasks("crashing")
        done = len(tasks) == 3 and all(t["state"] == "failed" for t in tasks)
        return tasks if done else None

    tasks = poll(three_failed, within=30, what="three failed tasks")
    assert {t["slot"] for t in tasks} == {1}
    assert {t["exit_code"] for t in tasks} == {1}
    time.sleep(2.0)  # well past the restart delay: no fourth attempt
    assert len(cluster.tasks("crashing")) == 3
    exited = cluster.containers("crashing", all=True)
    assert len(exited) == 3
    assert not cluster.containers("crashing")  # none runs
    assert cluster.service("crashing")["replicas"]["running"] == 0


@every_store
def test_http_request_reaches_the_task_on_its_node_address(cluster: Cluster) -> None:
    port = free_port("127.0.0.2")
    cluster.create(
        "http",
        replicas=1,
        command=http_hostname_server(8080),
        ports=[{"target": 8080, "published": port, "mode": "host"}],
    )
    [container] = cluster.running("http", 1, within=30)
    node = cluster.call("GET", f"/nodes/{container.labels[LABEL_NODE]}")

    def running_task() -> dict[str, Any] | None:
        tasks = [t for t in cluster.tasks("http") if t["state"] == "running"]
        return tasks[0] if tasks and tasks[0]["endpoints"] else None

    task = poll(running_task, within=10, what="the task's endpoint reported")
    endpoint = task["endpoints"][0]
    assert (endpoint["published_port"], endpoint["host_ip"]) == (port, node["addr"])

    def answer() -> str | None:
        try:
            with urllib.request.urlopen(f"http://{node['addr']}:{port}/", timeout=2) as response:
                return str(response.read().decode()) if response.status == 200 else None
        except OSError:
            return None

    body = poll(answer, within=15, what="an HTTP answer from the task")
    assert body.strip() == cluster.inspect(container)["Config"]["Hostname"]


def updated_in_batches(
    cluster: Cluster, name: str, *, replicas: int = 6, parallelism: int = 2
) -> dict[str, Any]:
    """A spec (env V=1) whose updates go `parallelism` at a time, 1 s apart, each
    watched 0.5 s."""
    return {
        "name": name,
        "image": cluster.image,
        "init": True,
        "stop_grace_period": 2,
        "replicas": replicas,
        "command": shell_until_sigterm(),
        "env": {"V": "1"},
        "update_config": {"parallelism": parallelism, "delay": 1.0, "monitor": 0.5},
    }


@every_store
def test_rolling_update_of_six_replicas_goes_in_three_batches(cluster: Cluster) -> None:
    spec = updated_in_batches(cluster, "rolling")
    cluster.call("POST", "/services", spec)
    cluster.running("rolling", 6, within=60)

    updated = cluster.call("POST", "/services/rolling/update", {**spec, "env": {"V": "2"}})
    version = updated["spec_version"]
    fewest_running = 6
    new: dict[str, dict[str, Any]] = {}  # the replacements, by task id
    ran_at: dict[str, float] = {}  # a replacement -> when its agent reported it running

    def done() -> bool:
        nonlocal fewest_running
        tasks = cluster.tasks("rolling")
        running = [t for t in tasks if t["state"] == "running" and t["desired_state"] == "running"]
        fewest_running = min(fewest_running, len(running))
        for task in tasks:
            if task["spec_version"] == version:
                new[task["id"]] = task
        for task in running:
            if task["spec_version"] == version:
                ran_at.setdefault(task["id"], float(task["updated"]))
        return len(ran_at) == 6 and cluster.service("rolling")["update_state"] == "completed"

    poll(done, within=60, what="the update completed", every=0.05)
    # Group the replacements by when the leader made them: three batches of two, each
    # made once the one before runs (and the 1 s delay has passed).
    batches = made_in_batches(new.values())
    assert [len(batch) for batch in batches] == [2, 2, 2], [
        [t["created"] for t in batch] for batch in batches
    ]
    for before, after in itertools.pairwise(batches):
        made = min(t["created"] for t in after)
        ran = max(ran_at[t["id"]] for t in before)
        assert made >= ran + 1.0 - 0.1, "a batch began before the last one ran for the delay"
    assert fewest_running >= 4  # stop-first, two at a time: never more than two down
    containers = cluster.running("rolling", 6, within=10)
    assert all("V=2" in cluster.inspect(c)["Config"]["Env"] for c in containers)
    assert slots_once(containers, 6)


@every_store
@pytest.mark.parametrize("failure", ["missing image", "exits at once"])
def test_failing_update_rolls_back_to_the_old_spec(cluster: Cluster, failure: str) -> None:
    spec: dict[str, Any] = {
        "name": "doomed",
        "image": cluster.image,
        "init": True,
        "stop_grace_period": 2,
        "replicas": 3,
        "command": shell_until_sigterm(),
        "update_config": {"parallelism": 1, "monitor": 1.0, "failure_action": "rollback"},
    }
    cluster.call("POST", "/services", spec)
    before = {c.id for c in cluster.running("doomed", 3, within=60)}

    if failure == "missing image":
        change: dict[str, Any] = {"image": MISSING_IMAGE}
    else:
        change = {"command": ["/bin/sh", "-c", "exit 1"]}
    cluster.call("POST", "/services/doomed/update", {**spec, **change})

    def rolled_back() -> dict[str, Any] | None:
        service = cluster.service("doomed")
        return service if service["update_state"] == "rolled back" else None

    service = poll(rolled_back, within=60, what="the update rolled back")
    assert service["spec"]["image"] == cluster.image
    assert service["spec"]["command"] == spec["command"]
    containers = cluster.running("doomed", 3, within=30)
    for container in containers:
        config = cluster.inspect(container)["Config"]
        assert config["Image"] == cluster.image
        assert config["Entrypoint"] == spec["command"]  # swarm mode: command replaces it
    assert slots_once(containers, 3)
    if failure == "missing image":  # never runs: the update stops at its first slot
        assert len(before - {c.id for c in containers}) <= 1
    # (a task that runs, then exits, lets the next slot begin before its failure shows,
    # as in swarm mode: the monitor period catches it, not the batch gate)
    failed = [t for t in cluster.tasks("doomed") if t["spec_version"] == 2]
    assert failed
    assert all(t["state"] in ("rejected", "failed") for t in failed), failed


@file_store
def test_manual_rollback_goes_by_rollback_config_and_reports_rolled_back(
    cluster: Cluster,
) -> None:
    spec = updated_in_batches(cluster, "undo", replicas=4, parallelism=1)
    spec["rollback_config"] = {"parallelism": 2, "delay": 1.0, "monitor": 0.5}
    cluster.call("POST", "/services", spec)
    cluster.running("undo", 4, within=60)
    cluster.call("POST", "/services/undo/update", {**spec, "env": {"V": "2"}})
    poll(
        lambda: cluster.service("undo")["update_state"] == "completed",
        within=60,
        what="the update completed",
    )

    rolled = cluster.call("POST", "/services/undo/rollback")
    assert (rolled["update_state"], rolled["update_message"]) == (
        "rolling back",
        "manually requested rollback",
    )
    assert rolled["spec"]["env"] == {"V": "1"}

    def rolled_back() -> dict[str, Any] | None:
        service = cluster.service("undo")
        return service if service["update_state"] == "rolled back" else None

    service = poll(rolled_back, within=60, what="the rollback completed")
    assert service["update_message"] == "rollback completed"
    containers = cluster.running("undo", 4, within=30)
    assert all("V=1" in cluster.inspect(c)["Config"]["Env"] for c in containers)
    assert slots_once(containers, 4)
    # by rollback_config: two at a time (update_config would have gone one by one)
    replacements = [t for t in cluster.tasks("undo") if t["spec_version"] == rolled["spec_version"]]
    assert [len(batch) for batch in made_in_batches(replacements)] == [2, 2], replacements


@every_store
def test_global_service_follows_a_node_joining(cluster: Cluster) -> None:
    cluster.create("everywhere", mode="global", command=shell_until_sigterm())
    cluster.running("everywhere", 3, within=60)
    assert set(cluster.per_node("everywhere").values()) == {1}

    newcomer = cluster.start_agent()
    try:
        everyone = {cluster.node_id_of(agent) for agent in cluster.agents}

        def one_each() -> Counter[str] | None:
            found = cluster.per_node("everywhere")
            return found if found == dict.fromkeys(everyone, 1) else None

        # One running container per node, the newcomer's included, polled as a whole:
        # a task replaced meanwhile (restart policy) briefly shows two on its node.
        spread = poll(one_each, within=30, what="one container on each of the four nodes")
        assert spread[cluster.node_id_of(newcomer)] == 1
    finally:
        newcomer.stop()  # the node leaves; forget it so that later tests see three
        node_id = cluster.node_id_of(newcomer)
        cluster.call("DELETE", f"/nodes/{node_id}?force=true")
        cluster.agents.remove(newcomer)
        for container in cluster.containers(all=True):
            if container.labels.get(LABEL_NODE) == node_id:
                cluster.engine.api.remove_container(container.id, force=True)


@every_store
def test_killed_agent_tasks_run_elsewhere_and_its_containers_go_when_it_returns(
    cluster: Cluster,
) -> None:
    cluster.create("sturdy", replicas=6, command=shell_until_sigterm())
    cluster.running("sturdy", 6, within=60)
    victim = cluster.agents[0]
    victim_node = cluster.node_id_of(victim)
    stranded = {c.id for c in cluster.containers("sturdy") if c.labels[LABEL_NODE] == victim_node}
    assert len(stranded) == 2

    victim.kill()
    killed_at = time.monotonic()

    def elsewhere() -> list[Container] | None:
        live = [c for c in cluster.containers("sturdy") if c.labels[LABEL_NODE] != victim_node]
        return live if len(live) == 6 else None

    bound = cluster.node_ttl + cluster.slack + NODE_GRACE + 5.0

    def rescheduled() -> bool:
        return all(t["node_id"] != victim_node for t in cluster.meant_to_run("sturdy"))

    poll(rescheduled, within=bound + 30, what="the tasks rescheduled elsewhere")
    print(f"[{cluster.store}] rescheduled after {time.monotonic() - killed_at:.1f} s")
    live = poll(elsewhere, within=bound + 30, what="the tasks replaced elsewhere")
    took = time.monotonic() - killed_at
    print(f"[{cluster.store}] replaced elsewhere after {took:.1f} s (bound {bound:.1f} s)")
    assert took <= bound, f"replaced after {took:.1f} s (bound {bound:.1f} s)"
    assert slots_once(live, 6)
    assert {c.id for c in cluster.containers("sturdy")} >= stranded  # SIGKILL left them

    cluster.restart_agent(victim)
    cluster.wait_agent(victim)

    def stranded_gone() -> bool:
        return not stranded & {c.id for c in cluster.containers("sturdy", all=True)}

    poll(stranded_gone, within=30, what="the returning node's old containers removed")
    assert not [t for t in cluster.tasks("sturdy") if t["node_id"] == victim_node]
    time.sleep(1.0)
    final = cluster.containers("sturdy")
    assert len(final) == 6
    assert slots_once(final, 6)


@fast_stores
def test_new_leader_carries_on_a_rolling_update(cluster: Cluster) -> None:
    spec = updated_in_batches(cluster, "handover")
    cluster.call("POST", "/services", spec)
    cluster.running("handover", 6, within=60)
    leader = poll(cluster.leader, within=10, what="one leader")
    updated = cluster.call("POST", "/services/handover/update", {**spec, "env": {"V": "2"}})
    version = updated["spec_version"]

    def first_batch_made() -> bool:
        return any(t["spec_version"] == version for t in cluster.tasks("handover"))

    poll(first_batch_made, within=30, what="the first batch", every=0.05)
    leader.kill()
    most = 0

    def completed() -> bool:
        nonlocal most
        most = max(most, len(cluster.containers("handover")))
        tasks = [t for t in cluster.tasks("handover") if t["desired_state"] == "running"]
        return (
            len(tasks) == 6
            and all(t["spec_version"] == version and t["state"] == "running" for t in tasks)
            and cluster.service("handover")["update_state"] == "completed"
        )

    try:
        poll(completed, within=60, what="the update completed under the new leader")
        assert most <= 6
        containers = cluster.running("handover", 6, within=10)
        assert all("V=2" in cluster.inspect(c)["Config"]["Env"] for c in containers)
        assert slots_once(containers, 6)
    finally:
        cluster.start_manager()  # a standby again, for the next test


@file_store
def test_leader_killed_while_thirty_replicas_are_created(cluster: Cluster) -> None:
    leader = poll(cluster.leader, within=10, what="one leader")
    standby = next(m for m in cluster.managers if m.running and m is not leader)

    cluster.create("thirty", replicas=30, command=shell_until_sigterm())
    poll(lambda: cluster.containers("thirty"), within=60, what="the first containers")
    partial = len(cluster.containers("thirty"))
    leader.kill()  # SIGKILL: no resignation; its lease must run out
    killed_at = time.monotonic()

    bound = cluster.lease_ttl + cluster.slack + 2.0
    poll(standby.leads, within=bound + 30, what="the standby leads", every=0.05)
    took = time.monotonic() - killed_at
    print(f"[{cluster.store}] failover after {took:.1f} s (bound {bound:.1f} s)")
    assert took <= bound, f"failover took {took:.1f} s (bound {bound:.1f} s)"

    cluster.each_slot_runs_once("thirty", 30, within=90)
    tasks = [t for t in cluster.tasks("thirty") if t["desired_state"] == "running"]
    assert sorted(t["slot"] for t in tasks) == list(range(1, 31))
    assert partial < 30  # the kill landed while the service was being created
