"""`Agent`: one node of the cluster, composed of its identity, heartbeat and executor.

`shoal agent` runs one (or, in hollow mode, many in one process, see `fleet`); tests and
`shoal up` run it in-process. Starting resolves who the node is (the state directory's
`node.json`, or a new id), learns the cluster id from the store, registers the node
(refusing a node id that another live agent holds), then runs three loops until
stopped: the heartbeat, the executor, and the status flusher; with `mesh` (not on
hollow nodes), also the routing mesh's listeners (`controlplane.agent.mesh`).

Stopping revokes the node's lease at once, so its keys vanish and the managers see the
node leave, and it leaves every container running: an agent is restarted far more often
than its tasks should be, and the next agent adopts them. The one exception is asked for
explicitly (`remove_units_on_stop`, `shoal agent --remove-tasks-on-stop`): a node that is
gone for good with its agent, as a compose project's agent container is at `down`,
removes its own units on a clean stop (never when the store is lost, never on SIGKILL).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from controlplane import keys
from controlplane.agent.api.server import AgentEndpoint, EndpointError
from controlplane.agent.backoff import Backoff
from controlplane.agent.executor import Executor, TaskWatch
from controlplane.agent.heartbeat import Heartbeat
from controlplane.agent.identity import (
    Identity,
    load_identity,
    new_instance,
    new_node_id,
    node_file,
    save_identity,
)
from controlplane.agent.mesh import MeshConfig, RoutingMesh
from controlplane.agent.runtime import NodeDescription, Runtime
from controlplane.agent.status import StatusReporter
from controlplane.models import ClusterRecord, NodeInfo, NodeSpec
from controlplane.version import __version__
from discovery import Store, StoreUnavailable, open_store

log = logging.getLogger(__name__)

#: Builds the runtime once the node's identity (node id, cluster id) is known.
RuntimeFactory = Callable[[Identity], Runtime]


class AgentError(Exception):
    """The agent cannot start; the message says why and what to do."""


class Agent:
    """One node: `await run()` until `await stop()`; `start()` alone registers it."""

    def __init__(
        self,
        *,
        runtime: Runtime | RuntimeFactory,
        state_dir: Path,
        advertise_addr: str,
        store: Store | None = None,
        discovery: str | None = None,
        labels: Mapping[str, str] | None = None,
        heartbeat_period: float = 5.0,
        resync_interval: float = 10.0,
        concurrency: int = 16,
        hostname: str | None = None,
        task_watch: TaskWatch | None = None,  # None: the store's; a fleet shares one
        remove_units_on_stop: bool = False,
        api_port: int | None = None,  # serve the agent endpoint on this port (0: any)
        mesh: MeshConfig | None = None,  # None: no routing mesh (hollow nodes never have one)
    ) -> None:
        if store is None and discovery is None:
            raise ValueError("an Agent needs a store or a discovery URL")
        self._task_watch = task_watch
        self._api_port = api_port
        self.endpoint: AgentEndpoint | None = None
        self._runtime_source = runtime
        self.state_dir = state_dir
        self.advertise_addr = advertise_addr
        self._store = store
        self._owns_store = store is None
        self._discovery = discovery
        self.labels = dict(labels or {})
        self.heartbeat_period = heartbeat_period
        self._resync_interval = resync_interval
        self._concurrency = concurrency
        self._hostname = hostname
        self._remove_units_on_stop = remove_units_on_stop
        self._mesh_config = mesh
        self.mesh: RoutingMesh | None = None
        self.instance = new_instance()
        self.identity: Identity | None = None
        self.runtime: Runtime | None = None
        self.heartbeat: Heartbeat | None = None
        self.executor: Executor | None = None
        self.reporter: StatusReporter | None = None
        self._stopping = asyncio.Event()
        self._running = False
        self._closed = False

    @property
    def node_id(self) -> str:
        if self.identity is None:
            raise RuntimeError("the agent has not started")
        return self.identity.node_id

    @property
    def cluster_id(self) -> str:
        if self.identity is None:
            raise RuntimeError("the agent has not started")
        return self.identity.cluster_id

    async def start(self) -> None:
        """Resolve the identity and register the node; raises `NodeIdConflict`, `AgentError`."""
        if self.heartbeat is not None:
            return
        store = await self._open_store()
        identity = await self._resolve_identity(store)
        runtime = self._runtime_source
        if not isinstance(runtime, Runtime):
            runtime = runtime(identity)
        self.runtime = runtime
        description = await self._describe(runtime)
        if self._api_port is not None and self.endpoint is None:
            try:
                self.endpoint = AgentEndpoint(
                    runtime=runtime, host=self.advertise_addr, port=self._api_port
                )
            except EndpointError as exc:
                raise AgentError(str(exc)) from None
        info = NodeInfo(
            id=identity.node_id,
            hostname=self._hostname or description.hostname,
            addr=self.advertise_addr,
            os=description.os,
            arch=description.arch,
            nano_cpus=description.nano_cpus,
            memory_bytes=description.memory_bytes,
            engine_labels=dict(description.engine_labels),
            engine_version=description.engine_version,
            runtime=runtime.name,
            agent_version=__version__,
            started=time.time(),
            instance=self.instance,
            agent_api=self.endpoint.url if self.endpoint else "",
            agent_secret=self.endpoint.secret if self.endpoint else "",
        )
        spec = NodeSpec(id=identity.node_id, labels=self.labels, joined=time.time())
        reporter = StatusReporter(store)
        heartbeat = Heartbeat(
            store,
            info=info,
            spec=spec,
            period=self.heartbeat_period,
            state_dir=self.state_dir,
            on_reconnect=reporter.kick,
        )
        backoff = Backoff(first=0.2, cap=self.heartbeat_period)
        while True:
            try:
                await heartbeat.register()
                break
            except (StoreUnavailable, TimeoutError) as exc:
                log.warning("node %s cannot register yet: %s", identity.node_id, exc)
                await asyncio.sleep(backoff.next_delay())
        self.reporter, self.heartbeat = reporter, heartbeat
        if self._mesh_config is not None and runtime.name != "hollow":
            self.mesh = RoutingMesh(
                store,
                address=self.advertise_addr,
                proxy_protocol=self._mesh_config.proxy_protocol,
                connect_timeout=self._mesh_config.connect_timeout,
                forwarding=self._mesh_config.forwarding,
            )
        self.executor = Executor(
            store,
            runtime,
            node_id=identity.node_id,
            cluster_id=identity.cluster_id,
            reporter=reporter,
            resync_interval=self._resync_interval,
            concurrency=self._concurrency,
            task_watch=self._task_watch,
        )
        log.info(
            "node %s registered (%s, %s runtime, cluster %s)",
            identity.node_id,
            self.advertise_addr,
            runtime.name,
            identity.cluster_id,
        )

    async def run(self) -> None:
        """Start if needed, then heartbeat, run tasks and report until `stop()`.

        `stop()` also ends a start that is still waiting (for the store, or for a
        previous incarnation's key to expire).
        """
        self._running = True
        try:
            if not await self._until_stopped(self.start()):
                return
            heartbeat, executor, reporter = self._parts()
            loops = [
                asyncio.create_task(heartbeat.run(), name="heartbeat"),
                asyncio.create_task(executor.run(), name="executor"),
                asyncio.create_task(reporter.run(), name="status"),
            ]
            if self.endpoint is not None:
                loops.append(asyncio.create_task(self.endpoint.serve(), name="endpoint"))
            if self.mesh is not None:
                loops.append(asyncio.create_task(self.mesh.run(), name="routing mesh"))
            stopping = asyncio.create_task(self._stopping.wait())
            try:
                done, _ = await asyncio.wait(
                    [*loops, stopping], return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for task in [*loops, stopping]:
                    task.cancel()
                await asyncio.gather(*loops, stopping, return_exceptions=True)
            for task in done:
                error = None if task is stopping or task.cancelled() else task.exception()
                if error is not None:
                    raise AgentError(f"the agent's {task.get_name()} loop failed: {error}") from (
                        error
                    )
        finally:
            await self._close()

    async def _until_stopped(self, step: Coroutine[Any, Any, None]) -> bool:
        """Run `step` unless `stop()` comes first; True when it completed."""
        stepping = asyncio.create_task(step)
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait([stepping, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not stepping.done():
                stepping.cancel()
            await asyncio.gather(stepping, stopping, return_exceptions=True)
        if stepping.cancelled():
            return False
        stepping.result()  # raises what the step raised
        return True

    def _parts(self) -> tuple[Heartbeat, Executor, StatusReporter]:
        if self.heartbeat is None or self.executor is None or self.reporter is None:
            raise RuntimeError("the agent has not started")
        return self.heartbeat, self.executor, self.reporter

    async def stop(self) -> None:
        """Revoke the node's lease (its keys vanish at once) and stop; units keep running."""
        self._stopping.set()
        if self.heartbeat is not None:
            # revoke before anything else: the loops wind down after the keys are gone
            await self.heartbeat.stop()
        if not self._running:  # started (or not) without run(): nothing else will close
            await self._close()

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        if self.endpoint is not None:
            self.endpoint.stop()
            self.endpoint.close()
        if self.runtime is not None:
            try:
                await self.runtime.close()  # waits for engine calls still in flight
                if self._remove_units_on_stop:
                    await self._remove_units(self.runtime)
                    await self.runtime.close()
            except Exception as exc:
                log.warning("closing the runtime failed: %s", exc)
        if self._owns_store and self._store is not None:
            await self._store.close()

    async def _remove_units(self, runtime: Runtime) -> None:
        """Remove every unit of this node (asked for with `remove_units_on_stop`)."""
        units = await runtime.observe()
        log.info("removing this node's %d units (--remove-tasks-on-stop)", len(units))
        results = await asyncio.gather(
            *(runtime.remove(unit.task_id) for unit in units), return_exceptions=True
        )
        for unit, result in zip(units, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("removing task %s failed: %s", unit.task_id, result)

    async def _describe(self, runtime: Runtime) -> NodeDescription:
        """The node's description; waits (and says so) while the runtime does not answer,
        as when the agent starts before the Docker Engine does."""
        backoff = Backoff(first=0.5, cap=10.0)
        while True:
            try:
                return await runtime.describe()
            except Exception as exc:
                log.warning("waiting for the %s runtime: %s", runtime.name, exc)
                await asyncio.sleep(backoff.next_delay())

    async def _open_store(self) -> Store:
        if self._store is None:
            assert self._discovery is not None
            self._store = await open_store(self._discovery)
        return self._store

    async def _resolve_identity(self, store: Store) -> Identity:
        saved = await asyncio.to_thread(load_identity, self.state_dir)
        discovery = self._discovery or (saved.discovery if saved else "")
        cluster_id = await self._cluster_id(store, saved=saved, discovery=discovery)
        identity = Identity(
            node_id=saved.node_id if saved else new_node_id(),
            cluster_id=cluster_id,
            discovery=discovery,
        )
        if identity != saved:
            await asyncio.to_thread(save_identity, self.state_dir, identity)
        if saved is None:
            log.info("new node id %s, kept in %s", identity.node_id, node_file(self.state_dir))
        self.identity = identity
        return identity

    async def _cluster_id(self, store: Store, *, saved: Identity | None, discovery: str) -> str:
        """The store's cluster id; without a `cluster` record (no `swarm init` yet), the
        one saved earlier, or one derived from the discovery URL that every agent on
        this store shares."""
        backoff = Backoff(first=0.2, cap=5.0)
        while True:
            try:
                async with asyncio.timeout(10.0):
                    kv = await store.get(keys.CLUSTER)
                break
            except (StoreUnavailable, TimeoutError) as exc:
                log.warning("waiting for the store: %s", exc)
                await asyncio.sleep(backoff.next_delay())
        if kv is None:
            if saved is not None and saved.cluster_id:
                return saved.cluster_id
            return "store-" + hashlib.sha256(discovery.encode()).hexdigest()[:16]
        try:
            record = ClusterRecord.load(kv.value)
        except ValidationError:
            raise AgentError("the store's cluster record is unreadable") from None
        if (
            saved is not None
            and saved.cluster_id
            and not saved.cluster_id.startswith("store-")
            and saved.cluster_id != record.id
        ):
            raise AgentError(
                f"the state directory {self.state_dir} belongs to cluster {saved.cluster_id}, "
                f"but the store holds cluster {record.id}; remove {node_file(self.state_dir)} "
                "to join this cluster as a new node"
            )
        return record.id
