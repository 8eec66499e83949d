"""The cluster as this manager sees it: a typed copy of the store, kept current by a watch.

`ClusterMirror(store)` lists the whole cluster prefix once, then watches it from the
listing's revision + 1, applying each event to typed maps (`controlplane.state.contents`):
the cluster record, the leader, managers, nodes (present = up), node specs, services,
tasks (placed and pending, each with its key and mod_revision), statuses, and the time
each node went down. Every manager runs one; the API reads from it, and the leader's
reconciler plans from its snapshots, so neither lists the store to answer a question.

Contract:
- `await start()` returns once the first listing is in; the mirror then follows the
  store in a background task until `await stop()`.
- `revision` is the store revision of the last event applied: everything up to it is in
  the maps. `wait_for_revision(r)` returns once a write the caller made at revision `r`
  is visible here; `wait_changed(after)` once anything after `after` is.
- `snapshot()` freezes the maps for one reconcile pass (`ClusterSnapshot`);
  `changed_services(after)` names the services whose record, tasks or statuses changed
  after revision `after` (None when something that concerns every service did: a node,
  a node spec, a relist), and `tasks_of(service)` answers from an index, without a walk
  over every task. `task_counts(service)` is how many of its tasks are meant to run and
  how many of them run, kept as events come in; `tasks_version(service)` changes
  whenever a task or status of that service (of any service, for None) may have: a
  reader keeping something built from them builds it again when it does.
- When the store has compacted the history the watch needs (`RevisionCompacted`), the
  mirror lists again and rebuilds its maps, carrying the nodes' down-since times over.
  If the store is unreachable it retries the watch every `retry_delay` seconds; the
  watch itself already resumes without gaps across a store restart.
- Unparseable values are logged and skipped (see `contents`); they never stop the mirror.

Events of one transaction share a revision; they arrive together, and the follower
applies them without yielding to other tasks in between, so a reader never sees half of
a transaction. `clock` (wall time, seconds) is only read to stamp when a node goes down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Generic, Self, TypeVar

from pydantic import BaseModel

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
from controlplane.state.contents import ClusterContents
from controlplane.state.records import StoredService, StoredStatus, StoredTask
from controlplane.state.snapshot import ClusterSnapshot
from discovery import Event, EventType, RevisionCompacted, Store, StoreUnavailable

log = logging.getLogger(__name__)

S = TypeVar("S")
V = TypeVar("V")


class _Projection(Mapping[str, V], Generic[S, V]):
    """A read-only view of a live map that hands out one part of each value."""

    __slots__ = ("_get", "_source")

    def __init__(self, source: Mapping[str, S], get: Callable[[S], V]) -> None:
        self._source = source
        self._get = get

    def __getitem__(self, key: str) -> V:
        return self._get(self._source[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._source)

    def __len__(self) -> int:
        return len(self._source)


def _task_of(entry: StoredTask) -> Task:
    return entry.task


def _record_of(entry: StoredService) -> ServiceRecord:
    return entry.record


def _status_of(entry: StoredStatus) -> TaskStatus:
    return entry.status


class ClusterMirror:
    """A typed, watched copy of one cluster's keys. See the module docstring."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        retry_delay: float = 1.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._retry_delay = retry_delay
        self._contents = ClusterContents()
        self._revision = 0
        self._watching_since = 0.0
        self._changed = asyncio.Event()
        self._synced = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None
        #: How many times the mirror listed the store (1 + one per compaction or error).
        self.listings = 0

    # --- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        """List the cluster, then follow it in the background. Idempotent."""
        if self._follower is not None:
            return
        self._watching_since = self._clock()
        await self._relist()
        self._synced.set()
        self._follower = asyncio.create_task(self._follow(), name="cluster mirror")

    async def stop(self) -> None:
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def synced(self) -> bool:
        """True once the first listing is in."""
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    # --- reading ----------------------------------------------------------------------
    @property
    def revision(self) -> int:
        return self._revision

    @property
    def watching_since(self) -> float:
        return self._watching_since

    @property
    def cluster(self) -> ClusterRecord | None:
        return self._contents.cluster

    @property
    def leader(self) -> LeaderRecord | None:
        return self._contents.leader

    @property
    def leader_revision(self) -> int:
        """The leader key's mod_revision: the current term's fencing token (0: none)."""
        return self._contents.leader_revision

    @property
    def managers(self) -> Mapping[str, ManagerRecord]:
        return self._contents.managers

    @property
    def nodes(self) -> Mapping[str, NodeInfo]:
        """Nodes whose heartbeat key exists: the nodes that are up."""
        return self._contents.nodes

    @property
    def node_specs(self) -> Mapping[str, NodeSpec]:
        return self._contents.node_specs

    @property
    def services(self) -> Mapping[str, ServiceRecord]:
        return _Projection(self._contents.services, _record_of)

    @property
    def service_entries(self) -> Mapping[str, StoredService]:
        return self._contents.services

    @property
    def tasks(self) -> Mapping[str, Task]:
        """Every task by id, placed or pending (a pending task has no node id)."""
        return _Projection(self._contents.tasks, _task_of)

    @property
    def task_entries(self) -> Mapping[str, StoredTask]:
        return self._contents.tasks

    @property
    def pending(self) -> Mapping[str, Task]:
        """The tasks waiting under `pending/` for a node that fits them."""
        return _Projection(self._contents.pending, _task_of)

    @property
    def statuses(self) -> Mapping[str, TaskStatus]:
        return _Projection(self._contents.statuses, _status_of)

    @property
    def status_entries(self) -> Mapping[str, StoredStatus]:
        return self._contents.statuses

    def down_since(self, node_id: str) -> float | None:
        """None while the node is up; else since when this mirror counts it down."""
        if node_id in self._contents.nodes:
            return None
        return self._contents.down_since.get(node_id, self._watching_since)

    def changed_services(self, after: int) -> frozenset[str] | None:
        return self._contents.changed_services(after)

    def expect(self, written: Iterable[tuple[str, bytes, BaseModel]]) -> None:
        """Documents this process is writing: their events take them as they are
        instead of parsing the value back (the leader writes ten thousand tasks)."""
        self._contents.expected.update((key, (value, doc)) for key, value, doc in written)

    def clear_expected(self) -> None:
        """Forget expectations whose write did not happen (a transaction that failed)."""
        self._contents.expected.clear()

    def pending_services(self) -> frozenset[str]:
        """The services with a task waiting for a node that fits it."""
        return self._contents.pending_services()

    def tasks_of(self, service: str) -> list[Task]:
        """The tasks (placed and pending) of the service named `service`."""
        entries = self._contents.tasks
        return [
            entries[task_id].task
            for task_id in self._contents.task_ids_of(service)
            if task_id in entries
        ]

    def task_counts(self, service: str) -> tuple[int, int]:
        """(tasks meant to run, of them running) of the service named `service`."""
        return self._contents.task_counts(service)

    def tasks_version(self, service: str | None) -> tuple[int, int]:
        """Changes whenever the tasks or statuses of `service` (None: any) may have."""
        contents = self._contents
        stamp = contents.changes if service is None else contents.list_stamp.get(service, 0)
        return (self.listings, stamp)

    def snapshot(self) -> ClusterSnapshot:
        if not self.synced:
            raise RuntimeError("the cluster mirror has not listed the store yet: start() it")
        return self._contents.snapshot(revision=self._revision, watching_since=self._watching_since)

    # --- waiting ----------------------------------------------------------------------
    async def wait_changed(self, after: int | None = None) -> int:
        """Wait until the mirror holds something newer than revision `after` (default:
        the current revision); returns the revision then held."""
        floor = self._revision if after is None else after
        while self._revision <= floor:
            await self._changed.wait()
        return self._revision

    # The API's `ClusterView` protocol asks for the timeout as an argument.
    async def wait_for_revision(
        self,
        revision: int,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> bool:
        """Wait until every change up to `revision` is applied; False after `timeout`."""
        if self._revision >= revision:
            return True
        try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            async with asyncio.timeout(timeout):
                await self.wait_changed(revision - 1)
        except TimeoutError:
            return False
        return True

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # --- following --------------------------------------------------------------------
    async def _relist(self) -> None:
        listing = await self._store.list("")
        previous = self._contents if self.listings else None
        self._contents = ClusterContents.from_listing(listing, now=self._clock(), previous=previous)
        self._revision = listing.revision
        self.listings += 1
        self._notify()

    async def _follow(self) -> None:
        relist = False
        while True:
            try:
                if relist:
                    await self._relist()
                    relist = False
                watch = self._store.watch("", start_revision=self._revision + 1)
                async for event in watch:
                    self._apply(event)
            except RevisionCompacted as exc:
                log.warning("cluster mirror fell behind the store's history (%s): relisting", exc)
                relist = True
            except StoreUnavailable as exc:
                log.warning("cluster mirror: store unavailable (%s); retrying", exc)
                await asyncio.sleep(self._retry_delay)
            except Exception:
                log.exception("cluster mirror: unexpected error; relisting")
                relist = True
                await asyncio.sleep(self._retry_delay)

    def _apply(self, event: Event) -> None:
        if event.type is EventType.PUT and event.value is not None:
            self._contents.put(event.key, event.value, event.revision)
        else:
            self._contents.delete(event.key, now=self._clock(), revision=event.revision)
        self._revision = event.revision
        self._notify()
