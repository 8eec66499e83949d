"""One manager process: the store, the mirror, registration, the leader loop, the API.

    open store ─> bind socket ─> mirror ─┬─> registration (managers/<id>, own lease)
                                         ├─> leader loop ──(while leading)──> reconciler,
                                         │                                    routing tables
                                         ├─> leader-change counter
                                         ├─> heap keeper (gc.freeze, see `heap`)
                                         └─> API server (every manager serves)

Every manager serves the whole API, leader or not: reads come from its mirror, writes of
desired state go straight to the store. Only the leader reconciles. All state is in the
store, so a manager killed at any moment loses nothing; a clean stop (SIGTERM) resigns
the leadership first (another manager leads at once instead of after the lease TTL),
then removes its registration, then lets in-flight requests finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Coroutine
from typing import Any

from controlplane import keys
from controlplane.api.context import ApiContext
from controlplane.api.control.ids import new_id
from controlplane.api.main import create_app
from controlplane.api.metrics import ManagerMetrics
from controlplane.dockerapi.app import create_docker_app
from controlplane.manager.config import ManagerConfig
from controlplane.manager.heap import HeapKeeper
from controlplane.manager.leading import LeaderDuty, LeaderLoop
from controlplane.manager.registration import Registration
from controlplane.manager.routes import RouteWriter
from controlplane.manager.server import ApiServer, bind, make_server
from controlplane.models import LeaderRecord, ManagerRecord
from controlplane.reconciler import Reconciler, ReconcilerConfig
from controlplane.state import ClusterMirror
from controlplane.version import __version__
from discovery import DiscoveryError, Store, StoreUnavailable, open_store
from discovery.election import Election, Leadership

log = logging.getLogger(__name__)

STORE_RETRY_SECONDS = 1.0


class ManagerFailed(Exception):
    """A part of the manager stopped on its own; the manager shut down. Restart it."""


class Manager:
    """`await run()` until `stop()`; `ready` is set once the API serves."""

    def __init__(
        self,
        config: ManagerConfig,
        *,
        reconciler_config: ReconcilerConfig | None = None,
        store: Store | None = None,
    ) -> None:
        self.config = config
        self.id = config.manager_id or new_id()
        self.reconciler_config = reconciler_config or ReconcilerConfig()
        self.metrics = ManagerMetrics()
        self.ready = asyncio.Event()
        self.api_url = ""
        self._store = store
        self._owns_store = store is None
        self._stopping = asyncio.Event()
        self.leader_loop: LeaderLoop | None = None
        self.mirror: ClusterMirror | None = None
        self._docker_sock: socket.socket | None = None  # --docker-api, bound by run()
        self._tls: ssl.SSLContext | None = None  # both listeners', when given

    @property
    def is_leader(self) -> bool:
        return self.leader_loop is not None and self.leader_loop.is_leader

    async def wait_for_revision(self, revision: int, *, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait until this manager's API reads a write made at `revision` (False: timed out)."""
        if self.mirror is None:
            return False
        return await self.mirror.wait_for_revision(revision, timeout=timeout)

    def stop(self) -> None:
        """Ask `run()` to shut down cleanly (safe from a signal handler)."""
        self._stopping.set()

    async def run(self) -> None:
        """Serve until `stop()`; raises `ManagerFailed` if a part of it fails first."""
        self._tls = self.config.tls_context()  # bad TLS files: an error before listening
        store = self._store or await open_store(self.config.discovery)
        sock = bind(self.config.listen)
        try:
            docker_api = self.config.docker_api_address()
            self._docker_sock = bind(docker_api) if docker_api is not None else None
            await self._run(store, sock)
        finally:
            sock.close()
            if self._docker_sock is not None:
                self._docker_sock.close()
            if self._owns_store:
                await store.close()

    async def _run(self, store: Store, sock: socket.socket) -> None:
        self.api_url = self.config.api_url(sock.getsockname()[1])
        mirror = self.mirror = ClusterMirror(store)
        if not await self._until_stopped(self._start_mirror(mirror)):
            return
        registration = Registration(
            store,
            record=ManagerRecord(
                id=self.id, api_url=self.api_url, started=time.time(), shoal_version=__version__
            ),
            ttl=self.config.lease_ttl,
        )
        self.leader_loop = LeaderLoop(
            make_election=lambda: self._election(store),
            duties=lambda leadership: self._duties(store, mirror, leadership),
        )
        context = ApiContext(
            store=store,
            view=mirror,
            manager_id=self.id,
            discovery_url=self.config.discovery,
            is_leader=lambda: self.is_leader,
            metrics=self.metrics,
        )
        server = make_server(create_app(context), tls=self._tls)
        loops = {
            asyncio.create_task(registration.run(), name="registration"),
            asyncio.create_task(self.leader_loop.run(), name="leader loop"),
            asyncio.create_task(self._count_leader_changes(mirror), name="leader changes"),
            asyncio.create_task(HeapKeeper().run(), name="heap keeper"),
        }
        serving = asyncio.create_task(server.serve(sockets=[sock]), name="api server")
        if self._docker_sock is not None:  # the Docker Engine API, on its own listener
            docker_server = make_server(create_docker_app(context), tls=self._tls)
            loops.add(
                asyncio.create_task(
                    docker_server.serve(sockets=[self._docker_sock]), name="Docker API server"
                )
            )
            host, port = self._docker_sock.getsockname()[:2]
            log.info(
                "manager %s serves the Docker API at tcp://%s:%d%s",
                self.id,
                host,
                port,
                " (TLS)" if self._tls else "",
            )
        stopping = asyncio.create_task(self._stopping.wait(), name="stop requested")
        try:
            await self._announce(server, registration, parts={*loops, serving})
            done, _ = await asyncio.wait(
                {*loops, serving, stopping}, return_when=asyncio.FIRST_COMPLETED
            )
            failed = [task for task in done - {stopping} if task.cancelled() or task.exception()]
            if failed or not stopping.done():
                name = (failed or list(done))[0].get_name()
                error = None if not failed or failed[0].cancelled() else failed[0].exception()
                log.error("the manager's %s stopped unexpectedly", name, exc_info=error)
                raise ManagerFailed(f"the manager's {name} stopped unexpectedly") from error
        finally:
            await self._shut_down(
                loops=loops,
                serving=serving,
                server=server,
                registration=registration,
                context=context,
            )
            stopping.cancel()
            await mirror.stop()
            self.ready.clear()

    async def _start_mirror(self, mirror: ClusterMirror) -> None:
        while True:
            try:
                await mirror.start()
                return
            except StoreUnavailable as exc:
                log.warning("waiting for the store at %s: %s", self.config.discovery, exc)
                await asyncio.sleep(STORE_RETRY_SECONDS)

    async def _until_stopped(self, work: Coroutine[Any, Any, None]) -> bool:
        """Await `work` unless a stop comes first; True when it finished."""
        task = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return False
        task.result()
        return True

    async def _announce(
        self,
        server: ApiServer,
        registration: Registration,
        *,
        parts: set[asyncio.Task[None]],
    ) -> None:
        """Set `ready` once the API serves and the manager is registered."""
        while not (server.started and registration.registered.is_set()):
            if self._stopping.is_set() or any(task.done() for task in parts):
                return  # the main wait below reports why
            await asyncio.sleep(0.02)
        self.ready.set()
        log.info(
            "manager %s serves the API at %s (discovery %s)",
            self.id,
            self.api_url,
            self.config.discovery,
        )

    def _election(self, store: Store) -> Election:
        record = LeaderRecord(manager_id=self.id, api_url=self.api_url, term_started=time.time())
        return Election(store, key=keys.LEADER, value=record.dump(), ttl=self.config.lease_ttl)

    def _duties(
        self, store: Store, mirror: ClusterMirror, leadership: Leadership
    ) -> list[LeaderDuty]:
        self.metrics.terms_won.inc()
        return [
            Reconciler(
                store,
                mirror,
                fencing_token=leadership.token,
                config=self.reconciler_config,
                on_pass=self.metrics.reconcile_pass,
            ),
            RouteWriter(store, mirror, fencing_token=leadership.token),
        ]

    async def _count_leader_changes(self, mirror: ClusterMirror) -> None:
        """Count each new leader term the mirror sees (the leader key's new revision)."""
        seen = mirror.leader_revision
        revision = mirror.revision
        while True:
            revision = await mirror.wait_changed(revision)
            term = mirror.leader_revision
            if term != seen and term != 0:
                self.metrics.leader_changes.inc()
            seen = term

    async def _shut_down(
        self,
        *,
        loops: set[asyncio.Task[None]],
        serving: asyncio.Task[None],
        server: ApiServer,
        registration: Registration,
        context: ApiContext,
    ) -> None:
        """Resign, deregister, then stop serving; each step survives the store being down."""
        for task in loops:  # the leader loop resigns as it is cancelled
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        with contextlib.suppress(DiscoveryError):
            await registration.stop()
        context.closing.set()  # event streams end, so in-flight requests can finish
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        log.info("manager %s stopped", self.id)
