"""What the control layer reads: the cluster as the manager's mirror sees it.

Reads go through the mirror (`controlplane.state.mirror.ClusterMirror`), never to the
store, so that a list of ten thousand tasks costs the store nothing. This protocol names
the part of the mirror the API uses, so that the control functions say exactly what they
depend on; the mirror satisfies it as it is.

After a write, a manager waits until its mirror has seen the write's revision before it
answers (`wait_for_revision`), so a client that creates a service and then lists
services through the same manager always sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

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


class ClusterView(Protocol):
    @property
    def revision(self) -> int: ...

    @property
    def cluster(self) -> ClusterRecord | None: ...

    @property
    def leader(self) -> LeaderRecord | None: ...

    @property
    def leader_revision(self) -> int:
        """The leader key's mod_revision: the current term's fencing token (0: none)."""
        ...

    @property
    def managers(self) -> Mapping[str, ManagerRecord]: ...

    @property
    def nodes(self) -> Mapping[str, NodeInfo]: ...

    @property
    def node_specs(self) -> Mapping[str, NodeSpec]: ...

    @property
    def services(self) -> Mapping[str, ServiceRecord]: ...

    @property
    def tasks(self) -> Mapping[str, Task]: ...

    @property
    def statuses(self) -> Mapping[str, TaskStatus]: ...

    def tasks_of(self, service: str) -> list[Task]:
        """The tasks of the service named `service`, from an index (no walk over all)."""
        ...

    def task_counts(self, service: str) -> tuple[int, int]:
        """(tasks meant to run, of them running) of the service named `service`."""
        ...

    def tasks_version(self, service: str | None) -> tuple[int, int]:
        """A value that changes whenever the tasks or statuses of `service` (None: of any
        service) may have changed: what a list kept between calls is checked against."""
        ...

    # The timeout is the caller's bound on read-your-writes, not a cancellation scope.
    async def wait_for_revision(self, revision: int, *, timeout: float) -> bool: ...  # noqa: ASYNC109

    async def wait_changed(self, after: int | None = None) -> int:
        """Wait until something newer than revision `after` is in; returns the revision."""
        ...
