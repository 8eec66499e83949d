"""`KernelForwarding`: the routing mesh's ports as one nftables table (`nftables`).

The mesh hands it every published port with its backends after each change of `routes/`;
it renders the node's table and replaces it in one `nft -f -` transaction (only when the
text changed). Two checks come first, as the relay mode does them with its listeners:

- a port that a socket on this node already listens on (a host-mode task, another
  process) is skipped with a warning: a DNAT would shadow that socket. `recheck()` (every
  few seconds) takes it once it is free;
- an endpoint on another host needs this node to forward packets: when
  /proc/sys/net/ipv4/ip_forward is 0, a warning says what to set.

`close()` deletes the table (the agent's clean stop); a killed agent's table is replaced
by its successor's first `apply`.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from collections.abc import Mapping
from pathlib import Path

from controlplane.agent.mesh.nftables import Endpoint, Nft, render, render_delete, table_name
from controlplane.models.route import Backend

log = logging.getLogger(__name__)

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def listening(address: str, port: int) -> bool:
    """Whether a socket on this node already serves `address:port` (binding it fails)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
        return False


def is_local(host: str) -> bool:
    """Whether `host` is an address of this machine."""
    with socket.socket() as probe:
        try:
            probe.bind((host, 0))
        except OSError:
            return False
        return True


def _ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


class KernelForwarding:
    """This node's nftables table for the mesh. See the module docstring."""

    def __init__(self, address: str, *, table: str | None = None, nft: Nft | None = None) -> None:
        if not _ipv4(address):
            raise ValueError(f"kernel mesh forwarding needs an IPv4 advertise address: {address}")
        self.address = address
        self.table = table or table_name(address)
        self._nft = nft or Nft()
        self._wanted: dict[int, tuple[Backend, ...]] = {}
        self._applied: str | None = None
        self._shadowed: set[int] = set()
        self._forward_warned = False
        self._lock = asyncio.Lock()  # one render-and-apply at a time: the last one wins
        #: The ports the table forwards now, with their endpoints (empty: refused).
        self.ports: dict[int, tuple[Endpoint, ...]] = {}

    async def apply(self, wanted: Mapping[int, tuple[Backend, ...]]) -> None:
        """Make the table forward `wanted` (published port -> backends)."""
        self._wanted = dict(wanted)
        await self.recheck()

    async def recheck(self) -> None:
        """Apply the last ports again if a shadowed port was freed (or one got taken)."""
        async with self._lock:
            await self._render_and_apply()

    async def _render_and_apply(self) -> None:
        ports: dict[int, tuple[Endpoint, ...]] = {}
        for port, backends in sorted(self._wanted.items()):
            if listening(self.address, port):
                if port not in self._shadowed:
                    log.warning(
                        "mesh: cannot forward %s:%d: a socket on this node listens there",
                        self.address,
                        port,
                    )
                self._shadowed.add(port)
                continue
            self._shadowed.discard(port)
            ports[port] = tuple((b.host, b.port) for b in backends if _ipv4(b.host))
        script = render(self.table, self.address, ports)
        if script == self._applied:
            return
        await self._nft.run(script)
        self._applied, self.ports = script, ports
        log.info(
            "mesh: kernel forwarding %s: %s",
            self.address,
            ", ".join(f"{p} to {len(e)} endpoint(s)" for p, e in ports.items()) or "no ports",
        )
        self._check_ip_forward(ports)

    def _check_ip_forward(self, ports: Mapping[int, tuple[Endpoint, ...]]) -> None:
        remote = {host for endpoints in ports.values() for host, _ in endpoints}
        remote = {host for host in remote if not is_local(host)}
        if not remote or self._forward_warned:
            return
        try:
            enabled = IP_FORWARD.read_text().strip() != "0"
        except OSError:
            return
        if not enabled:
            self._forward_warned = True
            log.warning(
                "mesh: endpoints on other hosts (%s) are not reachable through %s while "
                "/proc/sys/net/ipv4/ip_forward is 0: set net.ipv4.ip_forward=1 "
                "(sysctl -w net.ipv4.ip_forward=1)",
                ", ".join(sorted(remote)),
                self.address,
            )

    async def close(self) -> None:
        """Delete the table (clean stop)."""
        async with self._lock:
            await self._nft.run(render_delete(self.table))
            self._applied, self.ports = None, {}
