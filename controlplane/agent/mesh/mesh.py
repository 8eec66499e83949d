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

With `forwarding="kernel"` the mesh opens no listener and starts no relay: it hands the
ports to `KernelForwarding` (`kernel`), which programs this node's nftables table; a port
that a socket here already listens on is skipped with a warning and checked again every
`rebind_interval` seconds, and `run()` deletes the table when it ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from pydantic import ValidationError

from controlplane import keys
from controlplane.agent.mesh.forwarder import PortForwarder
from controlplane.agent.mesh.kernel import KernelForwarding
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
        forwarding: str = "relay",  # or "kernel": nftables DNAT, no relay
        kernel: KernelForwarding | None = None,  # None: this address's own table
    ) -> None:
        if forwarding not in ("relay", "kernel"):
            raise ValueError(f"mesh forwarding is relay or kernel, not {forwarding!r}")
        if forwarding == "kernel" and proxy_protocol:
            raise ValueError("the PROXY protocol needs the relay (the kernel keeps addresses)")
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
        self.kernel = (kernel or KernelForwarding(address)) if forwarding == "kernel" else None
        #: Set after every change has been applied to the listeners (tests wait on it).
        self.applied = asyncio.Event()

    @property
    def ports(self) -> dict[int, tuple[tuple[str, int], ...]]:
        """Listening ports and their backends, as this node forwards them now."""
        if self.kernel is not None:
            return {p: e for p, e in self.kernel.ports.items() if e}
        return {p: f.backends for p, f in self.forwarders.items() if f.listening}

    async def run(self) -> None:
        if self.kernel is not None:
            await self._run_kernel(self.kernel)
            return
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

    async def _run_kernel(self, kernel: KernelForwarding) -> None:
        rechecker = asyncio.create_task(self._recheck_loop(kernel), name="mesh recheck")
        try:
            await self._follow()
        finally:
            rechecker.cancel()
            try:
                await kernel.close()
            except Exception as exc:  # the agent stops anyway; say what is left behind
                log.warning("mesh: could not delete nftables table %s: %s", kernel.table, exc)

    async def _recheck_loop(self, kernel: KernelForwarding) -> None:
        while True:
            await asyncio.sleep(self._rebind_interval)
            try:
                await kernel.recheck()
            except Exception:
                log.exception("mesh: could not update nftables table %s", kernel.table)
            self.applied.set()
            self.applied = asyncio.Event()

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
        if self.kernel is not None:
            await self.kernel.apply(wanted)
            self.applied.set()
            self.applied = asyncio.Event()
            return
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
