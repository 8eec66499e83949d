"""Everything a request handler may use, built once per manager process.

The app holds one `ApiContext` (`app.state.context`); routes get it, or a part of it,
through the typed dependencies in `deps`. Nothing in the API keeps state of its own:
the store holds the cluster, the mirror a view of it, and this context only points at
them, which is what lets any manager answer any call. What it keeps is derived: sorted
task lists (`task_lists`), each checked against the mirror's version of what it shows on
every use, and the last few seconds' answers of the other managers (`reachability`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from controlplane.api.control.task_lists import TaskLists
from controlplane.api.control.view import ClusterView
from controlplane.api.metrics import ManagerMetrics
from controlplane.api.reachability import ManagerReachability
from discovery import Store

#: How long a write waits for the mirror to show it before answering anyway.
SETTLE_SECONDS = 2.0


def _never_leader() -> bool:
    return False


@dataclass(slots=True)
class ApiContext:
    store: Store
    view: ClusterView
    manager_id: str
    discovery_url: str = field(repr=False)  # handed to joining agents; may hold credentials
    is_leader: Callable[[], bool] = _never_leader
    metrics: ManagerMetrics = field(default_factory=ManagerMetrics)
    clock: Callable[[], float] = time.time
    settle_seconds: float = SETTLE_SECONDS
    #: Set when the manager shuts down: long-lived responses (event streams) end.
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    #: `GET /tasks`'s sorted lists, kept while the mirror says they are current.
    task_lists: TaskLists = field(default_factory=TaskLists, repr=False)
    #: Whether the other managers' APIs answer (`/swarm`), each probe kept a few seconds.
    reachability: ManagerReachability = field(default_factory=ManagerReachability, repr=False)

    async def settle(self, revision: int) -> None:
        """Wait (bounded) until the mirror has seen `revision`: read-your-writes."""
        if revision > 0:
            await self.view.wait_for_revision(revision, timeout=self.settle_seconds)
