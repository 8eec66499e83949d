"""Published ports: auto-assigned for the routing mesh, and claimed in the store.

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

**Claims make the decision atomic.** The check reads the services in the store, but two
managers (or two quick requests on one) can read the same free port at once. So every
ingress port is also a key, `ports/<protocol>/<number>` (a `PortClaim` naming the
service's id and name), written in the same transaction as the service record: created
only if absent, deleted with the record or by the update that drops the port, handed
over (compared at the revision read) when one deploy moves it between services. Of two
writers of one port exactly one commits; the other reads again, and then either sees the
winner (an explicit port: 409 naming it) or picks another free port (automatic: a random
one of the lowest free ones, so that many racing creates spread out). A new host-mode
port is written only if the claim key is as read (absent), so it cannot slip in under a
claim made meanwhile.

A write lists the services, decides, then reads only the claim keys it touches (one
get each). A claim of another service is confirmed by a second listing, made after that
read: if it shows the service publishing the port, the claim was made meanwhile and the
write starts again; if not, the claim is stale (its service gone or no longer
publishing the port in ingress mode, as a manager older than claims leaves behind) and
is replaced under a compare on its revision. Services created before claims existed
hold none: the check against the listed services still keeps their ports, and their
next update or rollback claims them (a scale leaves ports alone).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from controlplane import keys
from controlplane.api.control.errors import Conflict, Invalid
from controlplane.models import PortConfig, ServiceSpec
from controlplane.models.base import Document
from controlplane.models.service import PublishMode, ServiceRecord
from discovery import Compare, Delete, Op, Put, Store

#: Where auto-assigned published ports come from (swarm mode's range).
AUTO_PORTS = range(30000, 32768)
#: After a lost race, an automatic port is picked at random among this many lowest free
#: ones per attempt so far (so that racing creates stop picking the same one).
RETRY_SPREAD = 32

Claim = tuple[str, int]  # (protocol, published port)


class PortTaken(Conflict):
    """A published port another service holds (or the mesh range is full)."""


class PortClaim(Document):
    """`ports/<protocol>/<number>`: the service whose ingress port this is."""

    service_id: str
    service: str


@dataclass(frozen=True, slots=True)
class ClaimKey:
    """A claim key as read: its document (None if unreadable) and mod_revision."""

    claim: PortClaim | None
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Written:
    """One service in a write: its id, the spec written, the spec it replaces (None for
    a new service, or the spec as stored for an update or a removal)."""

    service_id: str
    spec: ServiceSpec | None  # None: the service is removed
    previous: ServiceSpec | None


def claim_key(claim: Claim) -> str:
    protocol, number = claim
    return keys.port(protocol, number)


def ingress_claims(spec: ServiceSpec) -> set[Claim]:
    return {
        (p.protocol, p.published)
        for p in spec.ports
        if p.published is not None and p.mode is PublishMode.INGRESS
    }


def _host_ports(spec: ServiceSpec) -> set[Claim]:
    return {
        (p.protocol, p.published)
        for p in spec.ports
        if p.published is not None and p.mode is PublishMode.HOST
    }


# --- reading ----------------------------------------------------------------------------

#: Every service by name, with its key's mod_revision, as one listing read them.
Services = dict[str, tuple[ServiceRecord, int]]


async def read_services(store: Store) -> Services:
    listing = await store.list(keys.SERVICES)
    services: Services = {}
    for kv in listing.items:
        try:
            record = ServiceRecord.load(kv.value)
        except (ValidationError, ValueError):
            continue
        services[record.spec.name] = (record, kv.mod_revision)
    return services


def specs_of(services: Services) -> dict[str, ServiceSpec]:
    return {name: record.spec for name, (record, _) in services.items()}


async def read_claims(store: Store, ports: Iterable[Claim]) -> dict[Claim, ClaimKey]:
    """The claim keys of `ports` that exist, read concurrently."""
    wanted = sorted(set(ports))
    found = await asyncio.gather(*(store.get(claim_key(port)) for port in wanted))
    claims: dict[Claim, ClaimKey] = {}
    for port, kv in zip(wanted, found, strict=True):
        if kv is None:
            continue
        try:
            document: PortClaim | None = PortClaim.load(kv.value)
        except (ValidationError, ValueError):
            document = None
        claims[port] = ClaimKey(document, kv.mod_revision)
    return claims


def touched(written: Iterable[Written]) -> set[Claim]:
    """The claim keys a write reads: every ingress port of the new and the old specs,
    and the host-mode ports (guarded by their claim key)."""
    ports: set[Claim] = set()
    for item in written:
        for spec in (item.spec, item.previous):
            if spec is not None:
                ports |= ingress_claims(spec) | _host_ports(spec)
    return ports


async def claims_for(store: Store, written: Sequence[Written]) -> dict[Claim, ClaimKey] | None:
    """The claim keys `written` touches, read after the services it was decided from.

    A claim of a service outside the write is confirmed by listing the services again:
    if that later listing shows the service publishing the port, the claim was made
    after the first listing (a lost race: None, read everything again); if not, the
    claim is stale and `claim_ops` replaces it at the revision read here.
    """
    claims = await read_claims(store, touched(written))
    ids = {item.service_id for item in written}
    foreign = {
        port: found.claim
        for port, found in claims.items()
        if found.claim is not None and found.claim.service_id not in ids
    }
    if foreign:
        later = await read_services(store)
        for port, claim in foreign.items():
            holder = later.get(claim.service)
            if (
                holder is not None
                and holder[0].id == claim.service_id
                and port in ingress_claims(holder[0].spec)
            ):
                return None
    return claims


# --- deciding (pure) --------------------------------------------------------------------


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


def claim_ops(
    claims: Mapping[Claim, ClaimKey], written: Iterable[Written]
) -> tuple[list[Compare], list[Op]]:
    """The compares and operations that move the claims as `written` says, for the same
    transaction as the service records.

    Every ingress port a written spec publishes is claimed unless its service already
    holds it; a claim is created only if absent, or replaced only at the revision read
    (a stale claim, or one handed over by another service in the same write). A port a
    service stops publishing, or every port of a removed service, is released when the
    claim names that service and no other written service takes it. A new host-mode
    port is guarded by its claim key as read, so a claim made meanwhile refuses it.
    """
    wanted: dict[Claim, tuple[Written, ServiceSpec]] = {}
    held: dict[Claim, Written] = {}  # claims the written services hold now
    new_host: set[Claim] = set()
    items = list(written)
    for item in items:
        before = ingress_claims(item.previous) if item.previous is not None else set()
        for port in before:
            found = claims.get(port)
            if found is not None and found.claim and found.claim.service_id == item.service_id:
                held[port] = item
        if item.spec is None:
            continue
        for port in ingress_claims(item.spec):
            wanted[port] = (item, item.spec)
        old_host = _host_ports(item.previous) if item.previous is not None else set()
        new_host |= _host_ports(item.spec) - old_host
    compares: list[Compare] = []
    ops: list[Op] = []
    for port, (item, spec) in sorted(wanted.items()):
        found = claims.get(port)
        if found is not None and held.get(port) is item:
            continue  # already this service's
        key = claim_key(port)
        compares.append(Compare(key, found.mod_revision if found is not None else 0))
        document = PortClaim(service_id=item.service_id, service=spec.name)
        ops.append(Put(key, document.dump()))
    for port in sorted(held.keys() - wanted.keys()):
        ops.append(Delete(claim_key(port)))
    for port in sorted(new_host - wanted.keys() - held.keys()):
        found = claims.get(port)
        compares.append(Compare(claim_key(port), found.mod_revision if found else 0))
    return compares, ops


def check_fits(store: Store, compares: Sequence[Compare], ops: Sequence[Op], name: str) -> None:
    """`Invalid` (422) when one service's write with its claims is larger than the
    store's transaction: every ingress port costs two items, a service two more."""
    size = len(compares) + len(ops)
    if size > store.max_txn_ops:
        raise Invalid(
            ("body", "ports"),
            f"service {name!r} publishes too many ingress ports for one write: each is "
            f"claimed in the service's transaction, which takes {size} items here and the "
            f"store ({store.scheme}) takes at most {store.max_txn_ops} (about "
            f"{(store.max_txn_ops - 2) // 2} ports). Publish a long range in host mode, "
            "which is not claimed",
        )
