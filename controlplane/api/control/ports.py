"""Published ports: auto-assigned for the routing mesh, and never claimed twice.

An ingress port is served by the routing mesh on every node, so its published number
belongs to one service in the whole cluster. When a service is created or updated with
an ingress port that names no published port, one is assigned from 30000-32767 (swarm
mode's range): the same one the service had before for that target port if it had one
(a service's address does not move when it is updated), else the lowest one no service
uses. The number is stored in the spec, so it shows in `service inspect` and stays put.

Refused with `Conflict` (409), naming the port and the service that holds it:
- an ingress port another service publishes, in either mode (the mesh listens on every
  node, so it would clash with a host-mode port anywhere);
- a host-mode port another service publishes in ingress mode.
Two host-mode services may ask for the same port: the scheduler's host-ports filter
places them on different nodes.

The check reads every service from the store, not the mirror, like the writes do. Two
creates racing through two managers could both pick the same free port; the routing
tables then serve the port for the first service by name and the agents log the clash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import ValidationError

from controlplane import keys
from controlplane.api.control.errors import Conflict
from controlplane.models import PortConfig, ServiceSpec
from controlplane.models.service import PublishMode, ServiceRecord
from discovery import Store

#: Where auto-assigned published ports come from (swarm mode's range).
AUTO_PORTS = range(30000, 32768)

Claim = tuple[str, int]  # (protocol, published port)


def _claims(spec: ServiceSpec) -> dict[Claim, PublishMode]:
    return {(p.protocol, p.published): p.mode for p in spec.ports if p.published is not None}


def assign_published_ports(
    specs: Sequence[ServiceSpec], stored: Mapping[str, ServiceSpec]
) -> list[ServiceSpec]:
    """`specs` (about to be written together) with every ingress port published.

    `stored` holds the current spec of every service by name; the ones named in `specs`
    are being replaced, so their ports are free for `specs` to keep.
    """
    writing = {spec.name for spec in specs}
    taken: dict[Claim, tuple[str, PublishMode]] = {}
    for name, spec in stored.items():
        if name not in writing:
            for claim, mode in _claims(spec).items():
                taken.setdefault(claim, (name, mode))
    done: list[ServiceSpec] = []
    for spec in specs:
        for claim, mode in _claims(spec).items():
            _check(spec.name, claim, mode, taken)
        own = set(_claims(spec))
        previous = stored.get(spec.name)
        ports: list[PortConfig] = []
        for port in spec.ports:
            if port.published is None and port.mode is PublishMode.INGRESS:
                number = _reuse(port, previous, taken, own) or _lowest_free(
                    port.protocol, taken, own
                )
                port = port.model_copy(update={"published": number})
                own.add((port.protocol, number))
            ports.append(port)
        assigned = spec.model_copy(update={"ports": ports}) if ports != spec.ports else spec
        for claim, mode in _claims(assigned).items():
            taken[claim] = (spec.name, mode)
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
    raise Conflict(
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


def _lowest_free(protocol: str, taken: Mapping[Claim, object], own: set[Claim]) -> int:
    for number in AUTO_PORTS:
        if (protocol, number) not in taken and (protocol, number) not in own:
            return number
    raise Conflict(
        f"no free {protocol} port left in {AUTO_PORTS.start}-{AUTO_PORTS.stop - 1} to "
        "publish; give a published port"
    )


async def with_published_ports(store: Store, specs: Sequence[ServiceSpec]) -> list[ServiceSpec]:
    """`assign_published_ports` against the services in the store now."""
    if not any(spec.ports for spec in specs):
        return list(specs)  # nothing to assign, nothing to check
    listing = await store.list(keys.SERVICES)
    stored: dict[str, ServiceSpec] = {}
    for kv in listing.items:
        try:
            record = ServiceRecord.load(kv.value)
        except (ValidationError, ValueError):
            continue
        stored[record.spec.name] = record.spec
    return assign_published_ports(specs, stored)
