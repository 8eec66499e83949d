"""Published-port claims: the store keys that make a port decision atomic.

The check in `ports` reads the services in the store, but two managers (or two quick
requests on one) can read the same free port at once. So every ingress port is also a
key, `ports/<protocol>/<number>` (a `PortClaim` naming the service's id and name),
written in the same transaction as the service record: created only if absent, deleted
with the record or by the update that drops the port, handed over (compared at the
revision read) when one deploy moves it between services. Of two writers of one port
exactly one commits; the other reads again, and then either sees the winner (an
explicit port: 409 naming it) or picks another free port (automatic: a random one of
the lowest free ones, so that many racing creates spread out). A new host-mode port is
written only if the claim key is as read (absent), so it cannot slip in under a claim
made meanwhile.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from controlplane import keys
from controlplane.api.control.errors import Invalid
from controlplane.api.control.ports import Claim, host_ports, ingress_claims
from controlplane.models import ServiceSpec
from controlplane.models.base import Document
from controlplane.models.service import ServiceRecord
from discovery import Compare, Delete, Op, Put, Store


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
                ports |= ingress_claims(spec) | host_ports(spec)
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
        old_host = host_ports(item.previous) if item.previous is not None else set()
        new_host |= host_ports(item.spec) - old_host
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
