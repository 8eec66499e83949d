"""Published ports: auto-assigned for the routing mesh, and never given twice.

An ingress port is served by the routing mesh on every node, so its published number
belongs to one service in the whole cluster. When a service is created or updated with
an ingress port that names no published port, one is assigned from 30000-32767 (swarm
mode's range): the same one the service had before for that target port if it had one
(a service's address does not move when it is updated), else the lowest one no service
uses. The number is stored in the spec, so it shows in `service inspect` and stays put.

Refused with `PortTaken` (a `Conflict`, 409), naming the port and the service that
holds it:
- an ingress port another service publishes, in either mode (the mesh listens on every
  node, so it would clash with a host-mode port anywhere);
- a host-mode port another service publishes in ingress mode.
Two host-mode services may ask for the same port: the scheduler's host-ports filter
places them on different nodes, so host-mode ports are never claimed.

Deciding is pure (`assign_published_ports`); making the decision hold against other
managers is `port_claims`: each ingress port is a key written with its service.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from controlplane.api.control.errors import Conflict
from controlplane.models import PortConfig, ServiceSpec
from controlplane.models.service import PublishMode

#: Where auto-assigned published ports come from (swarm mode's range).
AUTO_PORTS = range(30000, 32768)
#: After a lost race, an automatic port is picked at random among this many lowest free
#: ones per attempt so far (so that racing creates stop picking the same one).
RETRY_SPREAD = 32

Claim = tuple[str, int]  # (protocol, published port)


class PortTaken(Conflict):
    """A published port another service holds (or the mesh range is full)."""


def ingress_claims(spec: ServiceSpec) -> set[Claim]:
    return {
        (p.protocol, p.published)
        for p in spec.ports
        if p.published is not None and p.mode is PublishMode.INGRESS
    }


def host_ports(spec: ServiceSpec) -> set[Claim]:
    return {
        (p.protocol, p.published)
        for p in spec.ports
        if p.published is not None and p.mode is PublishMode.HOST
    }


def assign_published_ports(
    specs: Sequence[ServiceSpec], stored: Mapping[str, ServiceSpec], *, attempt: int = 0
) -> list[ServiceSpec]:
    """`specs` (about to be written together) with every ingress port published.

    `stored` holds the current spec of every service by name; the ones named in `specs`
    are being replaced, so their ports are free for `specs` to keep. `attempt` counts the
    races already lost: from the first one on, a new port is picked at random among the
    lowest free ones rather than the lowest.
    """
    writing = {spec.name for spec in specs}
    taken: dict[Claim, tuple[str, PublishMode]] = {}
    for name, spec in stored.items():
        if name not in writing:
            for port in spec.ports:
                if port.published is not None:
                    taken.setdefault((port.protocol, port.published), (name, port.mode))
    done: list[ServiceSpec] = []
    for spec in specs:
        for port in spec.ports:
            if port.published is not None:
                _check(spec.name, (port.protocol, port.published), port.mode, taken)
        own = {(p.protocol, p.published) for p in spec.ports if p.published is not None}
        previous = stored.get(spec.name)
        ports: list[PortConfig] = []
        for port in spec.ports:
            if port.published is None and port.mode is PublishMode.INGRESS:
                number = _reuse(port, previous, taken, own) or _free(
                    port.protocol, taken, own, spread=RETRY_SPREAD * attempt
                )
                port = port.model_copy(update={"published": number})
                own.add((port.protocol, number))
            ports.append(port)
        assigned = spec.model_copy(update={"ports": ports}) if ports != spec.ports else spec
        for port in assigned.ports:
            if port.published is not None:
                taken[(port.protocol, port.published)] = (spec.name, port.mode)
        done.append(assigned)
    return done


def _check(
    name: str, claim: Claim, mode: PublishMode, taken: Mapping[Claim, tuple[str, PublishMode]]
) -> None:
    holder = taken.get(claim)
    if holder is None:
        return
    other, other_mode = holder
    if mode is PublishMode.HOST and other_mode is PublishMode.HOST:
        return  # the scheduler keeps them on different nodes
    protocol, number = claim
    raise PortTaken(
        f"published port {number}/{protocol} of service {name!r} is already published by "
        f"service {other!r} ({other_mode} mode); choose another port"
    )


def _reuse(
    port: PortConfig,
    previous: ServiceSpec | None,
    taken: Mapping[Claim, object],
    own: set[Claim],
) -> int | None:
    if previous is None:
        return None
    for old in previous.ports:
        if (
            old.mode is PublishMode.INGRESS
            and (old.target, old.protocol) == (port.target, port.protocol)
            and old.published is not None
            and (old.protocol, old.published) not in taken
            and (old.protocol, old.published) not in own
        ):
            return old.published
    return None


def _free(protocol: str, taken: Mapping[Claim, object], own: set[Claim], *, spread: int) -> int:
    """The lowest free port; with `spread`, a random one of the `spread` lowest free."""
    free = (n for n in AUTO_PORTS if (protocol, n) not in taken and (protocol, n) not in own)
    if spread <= 1:
        number = next(free, None)
    else:
        candidates = [n for _, n in zip(range(spread), free, strict=False)]
        number = random.choice(candidates) if candidates else None
    if number is None:
        raise PortTaken(
            f"no free {protocol} port left in {AUTO_PORTS.start}-{AUTO_PORTS.stop - 1} to "
            "publish; give a published port"
        )
    return number
