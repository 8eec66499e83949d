"""`shoal manager --reconcile-txn-items N` (SHOAL_RECONCILE_TXN_ITEMS): the leader writes a
plan in transactions of at most N compares plus operations.

The command is run in-process with `serve` replaced, so the `Manager` it builds is kept;
its reconciler settings then drive a real `Reconciler` on the memory store, which counts
the transactions it writes for a 30-replica service.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from controlplane import keys
from controlplane.cli import manager as manager_cli
from controlplane.manager.process import Manager
from controlplane.models import LeaderRecord, NodeInfo, NodeSpec, ServiceSpec
from controlplane.models.service import ServiceRecord
from controlplane.reconciler import Reconciler, ReconcilerConfig
from controlplane.reconciler.config import LEADER_TXN_ITEMS
from controlplane.state import ClusterMirror
from discovery import Store, open_store
from tests.cli.conftest import shoal

OPTION = "--reconcile-txn-items"
ENV = "SHOAL_RECONCILE_TXN_ITEMS"


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[Manager]:
    """The managers `shoal manager` builds; none is run."""
    made: list[Manager] = []

    async def keep(target: Manager) -> None:
        made.append(target)

    monkeypatch.setattr(manager_cli, "serve", keep)
    monkeypatch.delenv(ENV, raising=False)
    return made


def run_manager(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
    result = shoal(
        "manager", "--discovery", f"file://{tmp_path}/store", "--listen", "127.0.0.1:0",
        *args, env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_the_option_and_its_variable_set_the_reconcilers_transaction_size(
    tmp_path: Path, built: list[Manager]
) -> None:
    run_manager(tmp_path, OPTION, "2")
    run_manager(tmp_path, env={ENV: "7"})
    run_manager(tmp_path, OPTION, "3", env={ENV: "7"})  # the option wins over the variable
    run_manager(tmp_path)
    assert [m.reconciler_config.max_txn_items for m in built] == [2, 7, 3, None]
    assert [m.reconciler_config.txn_items(128) for m in built] == [2, 7, 3, 128]
    assert built[-1].reconciler_config.txn_items(65_536) == LEADER_TXN_ITEMS  # default kept
    assert built[0].reconciler_config.node_grace == ReconcilerConfig().node_grace


def test_more_than_the_store_takes_is_the_stores_limit() -> None:
    config = ReconcilerConfig(max_txn_items=1000)
    assert config.txn_items(64) == 64  # Consul would refuse a bigger transaction
    assert config.txn_items(65_536) == 1000


@pytest.mark.parametrize(
    ("args", "env"),
    [
        ((OPTION, "0"), None),
        ((OPTION, "-4"), None),
        ((OPTION, "two"), None),
        ((OPTION, "1.5"), None),
        ((), {ENV: "0"}),
        ((), {ENV: "lots"}),
    ],
)
def test_a_bad_value_exits_2_naming_the_option(
    tmp_path: Path, built: list[Manager], args: tuple[str, ...], env: dict[str, str] | None
) -> None:
    result = shoal(
        "manager", "--discovery", f"file://{tmp_path}/store", "--listen", "127.0.0.1:0",
        *args, env=env,
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert OPTION in result.output
    assert not built  # refused before a manager was built


async def transactions_for_thirty_replicas(config: ReconcilerConfig) -> tuple[int, int]:
    """(transactions written, tasks made) by a reconciler with `config` that creates a
    30-replica service on three nodes (memory store)."""
    store: Store = await open_store(f"memory://txn-{uuid.uuid4().hex[:10]}")
    try:
        for node_id in ("n1", "n2", "n3"):
            await store.put(keys.node_spec(node_id), NodeSpec(id=node_id).dump())
            info = NodeInfo(id=node_id, hostname=node_id, addr="10.0.0.1", memory_bytes=1 << 33)
            await store.put(keys.node(node_id), info.dump())
        record = ServiceRecord(id="svc-t", spec=ServiceSpec(name="t", image="busybox", replicas=30))
        await store.put(keys.service("t"), record.dump())
        leader = LeaderRecord(manager_id="m1", api_url="http://m1", term_started=0.0)
        token = await store.put(keys.LEADER, leader.dump())
        async with ClusterMirror(store) as mirror:
            reconciler = Reconciler(store, mirror, fencing_token=token, config=config)
            run = asyncio.create_task(reconciler.run())
            try:
                async with asyncio.timeout(10):
                    while len(mirror.tasks) < 30:
                        await mirror.wait_changed()
            finally:
                await reconciler.stop()
                await asyncio.wait_for(run, 5)
            return reconciler.metrics.transactions, len(mirror.tasks)
    finally:
        await store.close()


def test_the_leader_writes_one_task_per_transaction_below_five_items(
    tmp_path: Path, built: list[Manager]
) -> None:
    run_manager(tmp_path, OPTION, "2")
    run_manager(tmp_path)
    small, default = (m.reconciler_config for m in built)
    assert asyncio.run(transactions_for_thirty_replicas(small)) == (30, 30)
    assert asyncio.run(transactions_for_thirty_replicas(default)) == (1, 30)
