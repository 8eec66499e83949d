"""The routing mesh: every node answers on every ingress-published port.

    routes/<service> (leader) ──watch──> RoutingMesh ──> PortForwarder per published port
                                                           │ accept on <advertise addr>:<port>
                                                           ▼ round robin, skip refusals
                                                   a running task's endpoint, on any node

Swarm mode does this with IPVS in the kernel and an overlay network, which needs
privileges, hides the client's address, and does not work in many sandboxes. shoal's
mesh is a user-space TCP relay in the agent: it works anywhere a TCP socket works, can
send the PROXY protocol header so backends see the client (`--mesh-proxy-protocol`), and
needs no network setup. UDP ports are not forwarded (host-mode ports serve UDP).
Where the agent runs as root, `--mesh-forwarding kernel` has the kernel forward instead
(nftables DNAT, round robin): no relay, the client's address kept, no PROXY header.

- `mesh`: follows the tables and keeps one listener per published port;
- `forwarder`: one listener, round robin over running endpoints;
- `relay`: the thread with its own epoll loop where every connection's bytes move;
- `link`: one connection: connect without blocking, hand-over, a receive and a send per
  small answer, `os.splice` for bulk transfers;
- `proxy_protocol`: the PROXY v1 header;
- `kernel`, `nftables`: the kernel mode: this node's nftables table, rendered and applied.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.agent.mesh.forwarder import PortForwarder
from controlplane.agent.mesh.mesh import RoutingMesh, merge_tables


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """The agent's mesh settings (`shoal agent --mesh-proxy-protocol`,
    `--mesh-forwarding relay|kernel`, `--no-mesh`)."""

    proxy_protocol: bool = False
    connect_timeout: float = 2.0
    forwarding: str = "relay"  # "kernel": nftables DNAT (root), no PROXY header


__all__ = ["MeshConfig", "PortForwarder", "RoutingMesh", "merge_tables"]
