"""The routing mesh's tables: a leader-only duty that writes `routes/<service>`.

Every agent forwards the ingress-published ports of every service to the tasks that run
them, wherever they run; it learns where they run from one table per service, written
here. The leader already mirrors services, tasks, statuses and nodes, so it is the one
place that can join them without making every agent watch every status (which would
fan each status change out to every node).

    mirror change ─> settle 50 ms ─> route_tables(mirror) ─> diff with what is written
                                                             ─> fenced puts and deletes

A table lists, for each ingress TCP port with a published number, the endpoints of the
service's tasks whose desired and observed states are both running, on nodes that are
up. It is written only when its bytes change, in transactions that also compare the
leader key with this term's fencing token (a deposed leader's write never lands); a
failed fence raises `NotLeader`, which ends the term. Tables of removed services, or of
services without ingress ports, are deleted. When no manager leads, nothing rewrites
the tables and agents keep forwarding with the last ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from controlplane import keys
from controlplane.models import NodeInfo, TaskState, TaskStatus
from controlplane.models.route import Backend, PortRoute, RouteTable
from controlplane.models.service import PortConfig, PublishMode
from controlplane.models.task import DesiredState
from controlplane.state.records import StoredService, StoredTask
from discovery import Compare, Delete, Op, Put, Store, StoreUnavailable
from discovery.election import NotLeader

log = logging.getLogger(__name__)

#: Ops per transaction (Consul accepts 64 per transaction; one is the fence).
MAX_OPS = 32
#: Addresses a runtime may report for "every address": the node's own address is meant.
_ANY_ADDRESS = frozenset({"", "0.0.0.0", "::"})


class RouteSource(Protocol):
    """What the tables are computed from: the manager's mirror."""

    @property
    def revision(self) -> int: ...

    @property
    def nodes(self) -> Mapping[str, NodeInfo]: ...

    @property
    def service_entries(self) -> Mapping[str, StoredService]: ...

    @property
    def task_entries(self) -> Mapping[str, StoredTask]: ...

    @property
    def statuses(self) -> Mapping[str, TaskStatus]: ...

    async def wait_changed(self, after: int | None = None) -> int: ...


def mesh_ports(ports: Sequence[PortConfig]) -> list[PortConfig]:
    """The ports the mesh forwards: ingress, TCP, with a published number."""
    return [
        port
        for port in ports
        if port.mode is PublishMode.INGRESS and port.protocol == "tcp" and port.published
    ]


def route_tables(source: RouteSource) -> dict[str, RouteTable]:
    """One table per service that publishes an ingress TCP port (pure: reads `source`)."""
    wanted = {
        name: ports
        for name, stored in source.service_entries.items()
        if (ports := mesh_ports(stored.record.spec.ports))
    }
    if not wanted:
        return {}
    running: dict[str, list[tuple[str, TaskStatus]]] = {name: [] for name in wanted}
    nodes, statuses = source.nodes, source.statuses
    for entry in source.task_entries.values():
        task = entry.task
        if task.service not in running or task.desired_state is not DesiredState.RUNNING:
            continue
        if task.node_id not in nodes:  # pending, or its node is down
            continue
        status = statuses.get(task.id)
        if status is not None and status.state is TaskState.RUNNING:
            running[task.service].append((task.node_id, status))
    tables: dict[str, RouteTable] = {}
    for name, ports in wanted.items():
        routes = []
        for port in ports:
            backends = {
                Backend(
                    host=nodes[node_id].addr if ep.host_ip in _ANY_ADDRESS else ep.host_ip,
                    port=ep.published_port,
                    task_id=status.task_id,
                    node_id=node_id,
                )
                for node_id, status in running[name]
                for ep in status.endpoints
                if ep.target_port == port.target and ep.protocol == port.protocol
            }
            assert port.published is not None
            routes.append(
                PortRoute(
                    published_port=port.published,
                    target_port=port.target,
                    protocol=port.protocol,
                    backends=tuple(sorted(backends, key=lambda b: (b.host, b.port, b.task_id))),
                )
            )
        tables[name] = RouteTable(service=name, ports=tuple(routes))
    return tables


class RouteWriter:
    """Keeps `routes/` equal to `route_tables(mirror)` for one leader term."""

    def __init__(
        self,
        store: Store,
        mirror: RouteSource,
        *,
        fencing_token: int,
        settle: float = 0.05,
        retry_delay: float = 1.0,
    ) -> None:
        self._store = store
        self._mirror = mirror
        self._token = fencing_token
        self._settle = settle
        self._retry_delay = retry_delay
        self._written: dict[str, bytes] = {}
        #: Transactions that succeeded this term (for tests and logs).
        self.writes = 0

    async def run(self) -> None:
        await self._load()
        while True:
            seen = self._mirror.revision
            try:
                await self._sync()
            except StoreUnavailable as exc:
                log.warning("routing tables not written (store unavailable: %s); retrying", exc)
                await asyncio.sleep(self._retry_delay)
                continue
            except NotLeader:
                raise
            except Exception:  # a bug here must not cost the cluster its leader
                log.exception("routing tables not written; retrying")
                await asyncio.sleep(self._retry_delay)
                continue
            await self._mirror.wait_changed(seen)
            await asyncio.sleep(self._settle)  # a burst of changes costs one pass

    def stop(self) -> None:
        """Nothing to release: cancelling `run()` is enough."""

    async def _load(self) -> None:
        while True:
            try:
                listing = await self._store.list(keys.ROUTES)
            except StoreUnavailable as exc:
                log.warning("cannot list the routing tables yet: %s", exc)
                await asyncio.sleep(self._retry_delay)
                continue
            self._written = {kv.key: kv.value for kv in listing.items}
            return

    async def _sync(self) -> None:
        tables = route_tables(self._mirror)
        desired = {keys.route(name): table.dump() for name, table in tables.items()}
        ops: list[Op] = [
            Put(key, value) for key, value in desired.items() if self._written.get(key) != value
        ]
        ops += [Delete(key) for key in self._written if key not in desired]
        for start in range(0, len(ops), MAX_OPS):
            batch = ops[start : start + MAX_OPS]
            result = await self._store.txn([Compare(keys.LEADER, self._token)], batch)
            if not result.succeeded:
                raise NotLeader(
                    f"the leader key changed (fencing token {self._token} is stale): "
                    "routing tables not written"
                )
            self.writes += 1
            for op in batch:
                if isinstance(op, Put):
                    self._written[op.key] = op.value
                else:
                    self._written.pop(op.key, None)
        if ops:
            log.debug("routing tables: %d written or removed", len(ops))
