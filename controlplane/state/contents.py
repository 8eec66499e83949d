"""The mirror's maps, changed one store event at a time.

Each key prefix of the store layout (`controlplane.keys`) has one map of parsed
documents; a put replaces one entry and a delete removes one, so following a cluster of
ten thousand tasks costs one dict operation per event, never a rebuild. Only a relist
(at start, and after `RevisionCompacted`) builds the maps from scratch.

A value that does not parse (a newer schema, a hand-edited key, a bug elsewhere) is
logged and skipped, and the entry keeps its last good value: dropping it would read as
"this service was removed" or "this node is down", and a leader would act on that. A
key outside the layout is ignored.

Nodes: the time each `nodes/` key disappears is kept in `down_since`, and dropped when
the key comes back. A relist compares the new listing with the old maps, so a node
that went down while the mirror was not watching is down from the relist on.

Two indexes make the common questions cheap at ten thousand tasks:

- `by_service`: the ids of each service's tasks, so that "the tasks of `web`" (the API's
  `GET /tasks?service=`, `service ls` counts, one service's reconcile) does not walk
  every task;
- change marks: the revision at which each service's inputs last changed (its record,
  one of its tasks, or one of its tasks' statuses: `service_changed`), and the revision
  of the last change that concerns every service (a node, a node spec, a status whose
  task is unknown, a relist: `all_changed`). The leader uses them to re-plan only the
  services whose inputs moved since its last pass;
- list stamps: a counter bumped on every change to a task or a status, and the value
  it had at each service's last such change (`list_stamp`), so that a reader keeping a
  ready-made list of a service's tasks (the API's `GET /tasks`) knows when to build it
  again. A counter, not a revision: it moves on every event, also between two events of
  one transaction;
- task counts: each service's tasks meant to run (desired `running`) and, of them, the
  ones whose last status says `running`, kept as tasks and statuses come and go, so that
  `service ls` and a client polling `GET /services/<name>` cost no walk over its tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import MappingProxyType
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from controlplane import keys
from controlplane.models import (
    ClusterRecord,
    LeaderRecord,
    ManagerRecord,
    NodeInfo,
    NodeSpec,
    Task,
    TaskStatus,
)
from controlplane.models.service import ServiceRecord
from controlplane.models.task import DesiredState, TaskState
from controlplane.state.records import StoredService, StoredStatus, StoredTask
from controlplane.state.snapshot import ClusterSnapshot
from discovery import Listing

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], key: str, value: bytes) -> M | None:
    try:
        return model.model_validate_json(value)
    except (ValidationError, ValueError) as exc:
        log.warning("skipping %s: not a valid %s document: %s", key, model.__name__, exc)
        return None


def _mismatch(key: str, what: str, found: str, expected: str) -> None:
    log.warning("skipping %s: its %s is %r, the key says %r", key, what, found, expected)


class ClusterContents:
    """Parsed documents by kind; see the module docstring for the rules."""

    def __init__(self) -> None:
        self.cluster: ClusterRecord | None = None
        self.leader: LeaderRecord | None = None
        self.leader_revision = 0
        self.managers: dict[str, ManagerRecord] = {}
        self.nodes: dict[str, NodeInfo] = {}
        self.node_specs: dict[str, NodeSpec] = {}
        self.services: dict[str, StoredService] = {}
        self.tasks: dict[str, StoredTask] = {}  # placed and pending, by task id
        self.pending: dict[str, StoredTask] = {}  # the `pending/` keys only
        self.statuses: dict[str, StoredStatus] = {}
        self.down_since: dict[str, float] = {}
        #: service name -> its task ids (a dict used as an ordered set)
        self.by_service: dict[str, dict[str, None]] = {}
        #: service name -> revision of the last change to its record, tasks or statuses
        self.service_changed: dict[str, int] = {}
        #: revision of the last change that may concern every service
        self.all_changed = 0
        #: bumped on every change to a task or status; `list_stamp`: its value at each
        #: service's last one (its record's changes count too)
        self.changes = 0
        self.list_stamp: dict[str, int] = {}
        #: service name -> [tasks meant to run, of them running]
        self.counts: dict[str, list[int]] = {}
        #: key -> (value, document) written by this process (`expect`): an event that
        #: carries exactly that value takes the document instead of parsing it again
        self.expected: dict[str, tuple[bytes, BaseModel]] = {}
        self._puts: list[tuple[str, Callable[[str, bytes, int], None]]] = [
            (keys.TASKS, self._put_task),
            (keys.STATUS, self._put_status),
            (keys.PENDING, self._put_task),
            (keys.NODES, self._put_node),
            (keys.NODE_SPECS, self._put_node_spec),
            (keys.SERVICES, self._put_service),
            (keys.MANAGERS, self._put_manager),
        ]

    # --- building ---------------------------------------------------------------------
    @classmethod
    def from_listing(
        cls, listing: Listing, *, now: float, previous: ClusterContents | None = None
    ) -> ClusterContents:
        """Maps built from a listing; `previous` carries the nodes' down-since times."""
        contents = cls()
        if previous is not None:  # list stamps keep rising: none repeats one from before
            contents.changes = previous.changes
        for kv in listing.items:
            contents.put(kv.key, kv.value, kv.mod_revision)
        contents.all_changed = listing.revision
        if previous is not None:
            contents.down_since = {
                node_id: since
                for node_id, since in previous.down_since.items()
                if node_id not in contents.nodes
            }
            for node_id in previous.nodes:
                if node_id not in contents.nodes:
                    contents.down_since[node_id] = now
        return contents

    def snapshot(self, *, revision: int, watching_since: float) -> ClusterSnapshot:
        """Copies of every map, frozen, as of `revision`."""
        return ClusterSnapshot(
            revision=revision,
            watching_since=watching_since,
            cluster=self.cluster,
            leader=self.leader,
            leader_revision=self.leader_revision,
            managers=MappingProxyType(dict(self.managers)),
            nodes=MappingProxyType(dict(self.nodes)),
            node_specs=MappingProxyType(dict(self.node_specs)),
            services=MappingProxyType(dict(self.services)),
            tasks=MappingProxyType(dict(self.tasks)),
            statuses=MappingProxyType(dict(self.statuses)),
            down_since=MappingProxyType(dict(self.down_since)),
            task_ids_by_service=MappingProxyType(
                {name: tuple(ids) for name, ids in self.by_service.items()}
            ),
        )

    def changed_services(self, after: int) -> frozenset[str] | None:
        """The services whose inputs changed after revision `after`; None: all may have."""
        if self.all_changed > after:
            return None
        return frozenset(name for name, rev in self.service_changed.items() if rev > after)

    def pending_services(self) -> frozenset[str]:
        """The services with a task waiting under `pending/` for a node that fits it."""
        return frozenset(entry.task.service for entry in self.pending.values())

    def task_ids_of(self, service: str) -> list[str]:
        return list(self.by_service.get(service, ()))

    def task_counts(self, service: str) -> tuple[int, int]:
        """(tasks meant to run, of them running) of the service named `service`."""
        found = self.counts.get(service)
        return (found[0], found[1]) if found is not None else (0, 0)

    def _count(self, task: Task, status: StoredStatus | None, sign: int) -> None:
        if task.desired_state is not DesiredState.RUNNING:
            return
        counts = self.counts.get(task.service)
        if counts is None:
            counts = self.counts[task.service] = [0, 0]
        counts[0] += sign
        if status is not None and status.status.state is TaskState.RUNNING:
            counts[1] += sign

    # --- events -----------------------------------------------------------------------
    def put(self, key: str, value: bytes, mod_revision: int) -> None:
        if key == keys.CLUSTER:
            self.cluster = _parse(ClusterRecord, key, value) or self.cluster
            return
        if key == keys.LEADER:
            leader = _parse(LeaderRecord, key, value)
            if leader is not None:
                self.leader, self.leader_revision = leader, mod_revision
            return
        for prefix, handler in self._puts:
            if key.startswith(prefix):
                handler(key, value, mod_revision)
                return

    def delete(self, key: str, *, now: float, revision: int = 0) -> None:
        if key == keys.CLUSTER:
            self.cluster = None
        elif key == keys.LEADER:
            self.leader, self.leader_revision = None, 0
        elif key.startswith(keys.TASKS) or key.startswith(keys.PENDING):
            task_id = keys.last_segment(key)
            found = self.tasks.get(task_id)
            if found is not None and found.key == key:
                del self.tasks[task_id]
                self._count(found.task, self.statuses.get(task_id), -1)
                service = found.task.service
                ids = self.by_service.get(service)
                if ids is not None:
                    ids.pop(task_id, None)
                    if not ids:
                        del self.by_service[service]
                self._mark(service, revision)
            found = self.pending.get(task_id)
            if found is not None and found.key == key:
                del self.pending[task_id]
        elif key.startswith(keys.STATUS):
            task_id = key[len(keys.STATUS) :]
            old = self.statuses.pop(task_id, None)
            if old is not None:
                entry = self.tasks.get(task_id)
                if entry is not None:
                    self._count(entry.task, old, -1)
                    self._count(entry.task, None, 1)
                self._mark_task(task_id, revision)
        elif key.startswith(keys.NODES):
            node_id = key[len(keys.NODES) :]
            if self.nodes.pop(node_id, None) is not None:
                self.down_since[node_id] = now
                self.all_changed = max(self.all_changed, revision)
        elif key.startswith(keys.NODE_SPECS):
            self.node_specs.pop(key[len(keys.NODE_SPECS) :], None)
            self.all_changed = max(self.all_changed, revision)
        elif key.startswith(keys.SERVICES):
            name = key[len(keys.SERVICES) :]
            self.services.pop(name, None)
            self._mark(name, revision)
        elif key.startswith(keys.MANAGERS):
            self.managers.pop(key[len(keys.MANAGERS) :], None)

    def _decode(self, model: type[M], key: str, value: bytes) -> M | None:
        hit = self.expected.pop(key, None) if self.expected else None
        if hit is not None and hit[0] == value and isinstance(hit[1], model):
            return hit[1]
        return _parse(model, key, value)

    def _mark(self, service: str, revision: int) -> None:
        self.changes += 1
        self.list_stamp[service] = self.changes
        if revision > self.service_changed.get(service, 0):
            self.service_changed[service] = revision

    def _mark_task(self, task_id: str, revision: int) -> None:
        entry = self.tasks.get(task_id)
        if entry is not None:
            self._mark(entry.task.service, revision)
        else:  # a status without its task: only a full pass deletes it
            self.all_changed = max(self.all_changed, revision)
            self.changes += 1

    # --- one handler per prefix --------------------------------------------------------
    def _put_task(self, key: str, value: bytes, mod_revision: int) -> None:
        if key.startswith(keys.TASKS):
            try:
                node_id, task_id = keys.split_task_key(key)
            except ValueError:
                log.warning("skipping %s: not a task key", key)
                return
        else:
            node_id, task_id = "", key[len(keys.PENDING) :]
        task = self._decode(Task, key, value)
        if task is None:
            return
        if task.id != task_id:
            _mismatch(key, "id", task.id, task_id)
        elif task.node_id != node_id:
            _mismatch(key, "node id", task.node_id, node_id)
        else:
            entry = StoredTask(task=task, key=key, mod_revision=mod_revision)
            status = self.statuses.get(task_id)
            old = self.tasks.get(task_id)
            if old is not None:
                self._count(old.task, status, -1)
            self._count(task, status, 1)
            self.tasks[task_id] = entry
            if entry.pending:
                self.pending[task_id] = entry
            self.by_service.setdefault(task.service, {})[task_id] = None
            self._mark(task.service, mod_revision)

    def _put_status(self, key: str, value: bytes, mod_revision: int) -> None:
        status = self._decode(TaskStatus, key, value)
        task_id = key[len(keys.STATUS) :]
        if status is None:
            return
        if status.task_id != task_id:
            _mismatch(key, "task id", status.task_id, task_id)
            return
        stored = StoredStatus(status=status, mod_revision=mod_revision)
        entry = self.tasks.get(task_id)
        if entry is not None:
            self._count(entry.task, self.statuses.get(task_id), -1)
            self._count(entry.task, stored, 1)
        self.statuses[task_id] = stored
        self._mark_task(task_id, mod_revision)

    def _put_node(self, key: str, value: bytes, mod_revision: int) -> None:
        node = _parse(NodeInfo, key, value)
        node_id = key[len(keys.NODES) :]
        if node is not None and node.id != node_id:
            _mismatch(key, "id", node.id, node_id)
        elif node is not None:
            self.nodes[node_id] = node
            self.down_since.pop(node_id, None)
            self.all_changed = max(self.all_changed, mod_revision)

    def _put_node_spec(self, key: str, value: bytes, mod_revision: int) -> None:
        spec = _parse(NodeSpec, key, value)
        node_id = key[len(keys.NODE_SPECS) :]
        if spec is not None and spec.id != node_id:
            _mismatch(key, "id", spec.id, node_id)
        elif spec is not None:
            self.node_specs[node_id] = spec
            self.all_changed = max(self.all_changed, mod_revision)

    def _put_service(self, key: str, value: bytes, mod_revision: int) -> None:
        record = self._decode(ServiceRecord, key, value)
        name = key[len(keys.SERVICES) :]
        if record is not None and record.spec.name != name:
            _mismatch(key, "name", record.spec.name, name)
        elif record is not None:
            self.services[name] = StoredService(record=record, mod_revision=mod_revision)
            self._mark(name, mod_revision)

    def _put_manager(self, key: str, value: bytes, mod_revision: int) -> None:
        manager = _parse(ManagerRecord, key, value)
        if manager is not None:
            self.managers[key[len(keys.MANAGERS) :]] = manager
