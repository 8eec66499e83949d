"""Endpoints of runtimes that cannot translate ports: what a task declares is what it gets.

Docker publishes a container's port on a host port it chooses and tells us which. A local
process (or a hollow task) has no such layer: it listens where it listens. So these
runtimes report, for each declared port, the port the task itself must bind on the
node's advertise address: the published port for host-mode ports that name one, and the
target port otherwise (an ingress port's published number belongs to the routing mesh,
which forwards it to the task's endpoint).
"""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.models.service import PortConfig, PublishMode
from controlplane.models.task import Endpoint


def declared_endpoints(ports: Iterable[PortConfig], *, host_ip: str) -> tuple[Endpoint, ...]:
    """The endpoints a task that binds its own ports answers on."""
    return tuple(
        Endpoint(
            protocol=port.protocol,
            target_port=port.target,
            published_port=(
                port.published if port.mode is PublishMode.HOST and port.published else port.target
            ),
            host_ip=host_ip,
        )
        for port in ports
    )
