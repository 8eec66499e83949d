"""The leader SIGKILLed partway through writing a 30-replica service's tasks, on a real
store (etcd, Consul, the file store) with real agents and the harness's Docker Engine.

`test_cluster.py` kills the leader once the first container runs, when every task record
was long written (one or two transactions); a leader that dies between the transactions
of one plan was checked on the memory store only (`tests/reconciler/test_applier.py`).
Here the managers run with `--reconcile-txn-items 2` (SHOAL_RECONCILE_TXN_ITEMS): a new
task is 4 compares and operations, never split, so the leader writes one task per
transaction, 30 transactions for the plan. The test reads the store's `tasks/` prefix in
a tight loop from its own thread and SIGKILLs the leader as soon as one of the service's
tasks is there; it then counts what the dead leader wrote (its leader key still in the
store, its lease not yet run out, so nobody else has written tasks). That count must be
at least 1 and fewer than 30: an attempt whose kill landed after the whole plan proves
nothing and is repeated (at most `ATTEMPTS` times in all), and the test fails if none
landed mid-plan, rather than passing without having checked anything.

Why no pacing lever: one task per transaction, each a round trip to the store (and on
etcd a commit), gives the reader about 30 round trips to act in, and that is plenty: in
7 runs on each store the first attempt always landed, the killed leader having written
1 or 2 of the 30 tasks (printed as `the killed leader wrote N of 30`). The lever is
honest but not a guarantee, hence the bounded repeats and the failure above; with the
default transaction size (the whole plan in one) every attempt writes 30 and the test
fails, as it should.

Then: the standby leads within the lease TTL + 2 s (on Consul, + one more TTL: Consul
ends a session between TTL and 2 x TTL, `Cluster.slack`), finishes the plan, and at the
end exactly 30 containers run, counted in Docker by the cluster and service labels, each
slot once; no task was written without its status (a half-written op), and every slot
1..30 has exactly one task meant to run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from controlplane import keys
from controlplane.models import LeaderRecord
from discovery import open_store
from tests.e2e.conftest import Cluster, Manager, module_cluster, poll
from tests.harness.images import shell_until_sigterm

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TXN_ITEMS = 2  # below one task's 4 + the fence: one task per transaction
REPLICAS = 30
ATTEMPTS = 3
SERVICE = "midplan"


@pytest.fixture(scope="module")
def cluster(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    dockerd: str,
    docker_client: Any,
    e2e_image: str,
) -> Iterator[Cluster]:
    """conftest's cluster (two managers, three agents), its managers writing one task per
    transaction."""
    yield from module_cluster(
        request,
        tmp_path_factory,
        engine=docker_client,
        image=e2e_image,
        docker_host=dockerd,
        name="midplan",
        manager_env={"SHOAL_RECONCILE_TXN_ITEMS": str(TXN_ITEMS)},
    )


@dataclass
class StoredTasks:
    """The service's task records and the status records in the store at one moment."""

    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # task id -> record
    statuses: set[str] = field(default_factory=set)  # task ids with a status record
    leader: str = ""  # the manager id in the leader key

    @property
    def without_status(self) -> list[str]:
        return sorted(set(self.tasks) - self.statuses)


async def read_store(discovery: str) -> StoredTasks:
    async with await open_store(discovery) as store:
        found = StoredTasks()
        for item in (await store.list(keys.TASKS)).items:
            record = json.loads(item.value)
            if record["service"] == SERVICE:
                found.tasks[record["id"]] = record
        found.statuses = {keys.last_segment(i.key) for i in (await store.list(keys.STATUS)).items}
        leader = await store.get(keys.LEADER)
        if leader is not None:
            found.leader = LeaderRecord.load(leader.value).manager_id
        return found


class KillOnFirstTask(threading.Thread):
    """Reads the store's `tasks/` in a tight loop (its own event loop and store client)
    and SIGKILLs `victim` the moment one of the service's tasks is there."""

    def __init__(self, discovery: str, victim: Manager) -> None:
        super().__init__(name="kill-on-first-task", daemon=True)
        assert victim.proc is not None
        self.discovery = discovery
        self.pid = victim.proc.pid
        self.watching = threading.Event()
        self.killed_at: float | None = None
        self.seen = 0  # the service's tasks in the read that fired the kill
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._watch())
        except BaseException as exc:  # reported by the test
            self.error = exc

    async def _watch(self) -> None:
        async with await open_store(self.discovery) as store, asyncio.timeout(60):
            while True:
                listing = await store.list(keys.TASKS)
                self.watching.set()
                mine = [i for i in listing.items if json.loads(i.value)["service"] == SERVICE]
                if mine:
                    os.kill(self.pid, signal.SIGKILL)
                    self.killed_at = time.monotonic()
                    self.seen = len(mine)
                    return


@pytest.mark.parametrize("cluster", ["etcd", "consul", "file"], indirect=True)
def test_leader_killed_partway_through_writing_thirty_tasks(cluster: Cluster) -> None:
    written: list[int] = []  # per attempt: the tasks the killed leader had written
    for attempt in range(1, ATTEMPTS + 1):
        leader = poll(cluster.leader, within=30, what="one leader")
        standby = next(m for m in cluster.managers if m.running and m is not leader)
        killer = KillOnFirstTask(cluster.discovery, leader)
        killer.start()
        assert killer.watching.wait(30), "the store reader did not start"

        cluster.create(SERVICE, replicas=REPLICAS, command=shell_until_sigterm())
        killer.join(60)
        assert killer.error is None, killer.error
        assert killer.killed_at is not None, "no task of the service was ever written"
        leader.kill()  # reaps the process SIGKILLed above
        killed_at = killer.killed_at

        # What the dead leader wrote: read while its leader key (its lease) still stands,
        # so no other manager has written a task yet; a transaction the store had already
        # received when the process died has landed by now.
        time.sleep(0.3)
        at_kill = asyncio.run(read_store(cluster.discovery))
        assert at_kill.leader == leader.name, "the lease ran out before the count"
        assert not at_kill.without_status, f"a task without its status: {at_kill.without_status}"
        written.append(len(at_kill.tasks))
        print(
            f"[{cluster.store}] attempt {attempt}: saw {killer.seen}, the killed leader wrote "
            f"{len(at_kill.tasks)} of {REPLICAS} tasks"
        )

        bound = cluster.lease_ttl + cluster.slack + 2.0
        poll(standby.leads, within=bound + 30, what="the standby leads", every=0.05)
        took = time.monotonic() - killed_at
        print(f"[{cluster.store}] failover after {took:.1f} s (bound {bound:.1f} s)")
        assert took <= bound, f"failover took {took:.1f} s (bound {bound:.1f} s)"
        cluster.start_manager()  # a standby again (the dead one stays listed, not running)
        if 1 <= len(at_kill.tasks) < REPLICAS:
            break
        cluster.remove_services()  # the kill landed after the plan: again
    assert 1 <= written[-1] < REPLICAS, (
        f"the kill never landed partway through the plan in {ATTEMPTS} attempts "
        f"(tasks written when killed: {written})"
    )

    cluster.each_slot_runs_once(SERVICE, REPLICAS, within=90)
    tasks = cluster.meant_to_run(SERVICE)
    assert sorted(t["slot"] for t in tasks) == list(range(1, REPLICAS + 1))
    after = asyncio.run(read_store(cluster.discovery))
    assert not after.without_status, f"a task without its status: {after.without_status}"
    # the dead leader's tasks were kept: the new leader wrote only the other slots
    assert set(at_kill.tasks) <= set(after.tasks)
