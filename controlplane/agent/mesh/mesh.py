"""`RoutingMesh`: this node's listeners for every ingress port, following `routes/`.

The leader keeps one table per service under `routes/` (see
`controlplane.manager.routes`). The mesh lists that prefix, then watches it from the
listing's revision + 1 (after `RevisionCompacted`, it lists again), and after each change
makes its listeners match the tables: a `PortForwarder` on `<advertise address>:<port>`
for every published port, with that port's running endpoints; listeners of ports that
left every table are closed (their relayed connections finish). While the store is
unreachable, or no manager leads, the mesh keeps forwarding with the last tables it saw.

A port this node cannot bind (another process holds it) is logged, and binding is tried
again on every later change and every `rebind_interval` seconds.

The bytes move on the mesh's own relay thread (`relay`), started with `run()`; when
`run()` ends (the agent stops) the relay closes every connection it still relays.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from pydantic import ValidationError

from controlplane import keys
from controlplane.agent.mesh.forwarder import PortForwarder
from controlplane.agent.mesh.relay import Relay
from controlplane.models.route import Backend, RouteTable
from discovery import EventType, RevisionCompacted, Store, StoreUnavailable

log = logging.getLogger(__name__)


def merge_tables(tables: Mapping[str, RouteTable]) -> dict[int, tuple[Backend, ...]]:
    """Published TCP port -> its backends, over every service (first service by name wins
    a port two tables claim, which the manager's port allocator refuses anyway)."""
    ports: dict[int, tuple[Backend, ...]] = {}
    for name in sorted(tables):
        for route in tables[name].ports:
            if route.protocol != "tcp":
                continue
            if route.published_port in ports:
                log.warning(
                    "mesh: port %d is claimed twice; %s's claim ignored", route.published_port, name
                )
                continue
            ports[route.published_port] = route.backends
    return ports


class RoutingMesh:
    """Forward every ingress port on `address`; `await run()` until cancelled."""

    def __init__(
        self,
        store: Store,
        *,
        address: str,
        proxy_protocol: bool = False,
        connect_timeout: float = 2.0,
        retry_delay: float = 1.0,
        rebind_interval: float = 5.0,
    ) -> None:
        self._store = store
        self.address = address
        self.proxy_protocol = proxy_protocol
        self._connect_timeout = connect_timeout
        self._retry_delay = retry_delay
        self._rebind_interval = rebind_interval
        self._tables: dict[str, RouteTable] = {}
        self.forwarders: dict[int, PortForwarder] = {}
        self._unbound: set[int] = set()  # ports that could not be bound (warned once)
        self.relay = Relay(name=f"mesh relay {address}")
        #: Set after every change has been applied to the listeners (tests wait on it).
        self.applied = asyncio.Event()

    @property
    def ports(self) -> dict[int, tuple[tuple[str, int], ...]]:
        """Listening ports and their backends, as this node forwards them now."""
        return {p: f.backends for p, f in self.forwarders.items() if f.listening}

    async def run(self) -> None:
        self.relay.start()
        rebinder = asyncio.create_task(self._rebind_loop(), name="mesh rebind")
        try:
            await self._follow()
        finally:
            rebinder.cancel()
            for forwarder in self.forwarders.values():
                forwarder.close()
            self.forwarders.clear()
            self.relay.stop()

    async def _follow(self) -> None:
        revision = 0
        while True:
            try:
                if revision == 0:
                    listing = await self._store.list(keys.ROUTES)
                    self._tables = {}
                    for kv in listing.items:
                        self._put(kv.key, kv.value)
                    revision = listing.revision
                    await self._apply()
                async for event in self._store.watch(keys.ROUTES, start_revision=revision + 1):
                    if event.type is EventType.PUT and event.value is not None:
                        self._put(event.key, event.value)
                    else:
                        self._tables.pop(keys.last_segment(event.key), None)
                    revision = event.revision
                    await self._apply()
            except RevisionCompacted as exc:
                log.warning("mesh: the store compacted past the routes watch (%s): relisting", exc)
                revision = 0
            except StoreUnavailable as exc:
                log.warning("mesh: store unavailable (%s); forwarding with the last tables", exc)
                await asyncio.sleep(self._retry_delay)
            except Exception:  # a bug here must not stop the agent: list again
                log.exception("mesh: unexpected error; relisting the routing tables")
                revision = 0
                await asyncio.sleep(self._retry_delay)

    def _put(self, key: str, value: bytes) -> None:
        try:
            table = RouteTable.load(value)
        except (ValidationError, ValueError) as exc:
            log.warning("mesh: skipping %s, not a routing table: %s", key, exc)
            return
        self._tables[keys.last_segment(key)] = table

    async def _apply(self) -> None:
        wanted = merge_tables(self._tables)
        for port in [p for p in self.forwarders if p not in wanted]:
            self.forwarders.pop(port).close()
            log.info("mesh: stopped forwarding %s:%d", self.address, port)
        for port, backends in wanted.items():
            forwarder = self.forwarders.get(port)
            if forwarder is None:
                forwarder = self.forwarders[port] = PortForwarder(
                    address=self.address,
                    port=port,
                    proxy_protocol=self.proxy_protocol,
                    connect_timeout=self._connect_timeout,
                    relay=self.relay,
                )
            forwarder.update(backends)
        await self._bind()
        self.applied.set()
        self.applied = asyncio.Event()

    async def _bind(self) -> None:
        for port, forwarder in self.forwarders.items():
            if forwarder.listening:
                continue
            try:
                await forwarder.start()
            except OSError as exc:
                level = logging.DEBUG if port in self._unbound else logging.WARNING
                self._unbound.add(port)
                log.log(level, "mesh: cannot listen on %s:%d: %s", self.address, port, exc)
            else:
                self._unbound.discard(port)
                log.info(
                    "mesh: forwarding %s:%d to %d endpoint(s)",
                    self.address,
                    port,
                    len(forwarder.backends),
                )

    async def _rebind_loop(self) -> None:
        while True:
            await asyncio.sleep(self._rebind_interval)
            await self._bind()
