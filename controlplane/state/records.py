"""Store values as the mirror keeps them: the parsed document plus its store bookkeeping.

A leader's write that replaces or removes a key is guarded by the key's `mod_revision`
as the leader last saw it, so every record a writer may act on carries it. Tasks also
carry their key, because a task lives under one of two prefixes: `tasks/<node>/<id>`
once placed, `pending/<id>` while no node fits it.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.models import Task, TaskStatus
from controlplane.models.service import ServiceRecord


@dataclass(frozen=True, slots=True)
class StoredTask:
    """A task document, where it is stored, and the revision of its last write."""

    task: Task
    key: str
    mod_revision: int

    @property
    def id(self) -> str:
        return self.task.id

    @property
    def pending(self) -> bool:
        """True while the task waits under `pending/` for a node that fits it."""
        return not self.task.node_id


@dataclass(frozen=True, slots=True)
class StoredService:
    """A service record and the revision of its last write."""

    record: ServiceRecord
    mod_revision: int

    @property
    def name(self) -> str:
        return self.record.spec.name


@dataclass(frozen=True, slots=True)
class StoredStatus:
    """A task's reported status and the revision of its last write."""

    status: TaskStatus
    mod_revision: int
