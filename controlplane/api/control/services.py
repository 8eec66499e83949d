"""Services: create, update, scale, roll back, remove, and how many tasks run.

A service is one key, `services/<name>`, holding its spec, the spec's version and the
previous spec (for rollback). Any manager may write it; the leader's reconciler turns it
into tasks. Every change is a compare-and-swap on that key (see `writes`), so two
managers updating one service at once both succeed, one after the other, and neither
loses the other's change. Writes read the store, not the mirror: a service created a
moment ago through another manager can be updated here at once.

A stack deploy is "validate every spec, then write them all": `deploy_services` does
exactly that in one transaction, so a stack with one bad service writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError

from controlplane import keys
from controlplane.api.control import writes
from controlplane.api.control.errors import Ambiguous, Conflict, Invalid, NotFound
from controlplane.api.control.ids import new_id
from controlplane.api.control.port_claims import (
    Written,
    check_fits,
    claim_ops,
    claims_for,
    read_claims,
    read_services,
    specs_of,
)
from controlplane.api.control.ports import PortTaken, assign_published_ports, ingress_claims
from controlplane.api.control.validation import validate_spec
from controlplane.api.control.view import ClusterView
from controlplane.models import ServiceMode, ServiceSpec
from controlplane.models.service import (
    ROLLBACK_PAUSED,
    ROLLING_BACK,
    SERVICE_NAME,
    ServiceRecord,
)
from discovery import Compare, Delete, Op, Put, Store

KIND = "service"


@dataclass(frozen=True, slots=True)
class ServiceState:
    """A service with its task counts, as `service ls` shows it."""

    record: ServiceRecord
    desired: int
    running: int


# --- reads ------------------------------------------------------------------------------


def find_service(view: ClusterView, ref: str) -> ServiceRecord:
    """By name, then by id, then by unique id prefix."""
    record = view.services.get(ref)
    if record is not None:
        return record
    by_id = [r for r in view.services.values() if r.id == ref]
    if by_id:
        return by_id[0]
    prefixed = [r for r in view.services.values() if r.id.startswith(ref)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        raise Ambiguous(KIND, ref, [r.id for r in prefixed])
    raise NotFound(KIND, ref)


def service_state(view: ClusterView, record: ServiceRecord) -> ServiceState:
    """Its counts, kept by the mirror as tasks and statuses change (no walk over them)."""
    live, running = view.task_counts(record.spec.name)
    desired = record.spec.replicas if record.spec.mode is ServiceMode.REPLICATED else live
    return ServiceState(record=record, desired=desired, running=running)


def list_services(view: ClusterView, *, stack: str | None = None) -> list[ServiceState]:
    records = sorted(view.services.values(), key=lambda r: r.spec.name)
    return [
        service_state(view, record)
        for record in records
        if stack is None or record.spec.stack == stack
    ]


def _name_of(view: ClusterView, ref: str) -> str:
    """The service name `ref` designates; a name the mirror has not seen yet is kept."""
    try:
        return find_service(view, ref).spec.name
    except NotFound:
        if SERVICE_NAME.match(ref):
            return ref  # perhaps created a moment ago through another manager
        raise


# --- writes -----------------------------------------------------------------------------


async def create_service(
    store: Store, spec: ServiceSpec, *, now: float
) -> tuple[ServiceRecord, int]:
    """Write a new service, claiming its ingress ports in the same transaction.

    `Conflict` when the name is taken; `PortTaken` (a `Conflict`) when a published port
    is another service's, also one that won a race for it a moment ago.
    """
    validate_spec(spec)
    key = keys.service(spec.name)
    if not spec.ports:
        record = ServiceRecord(id=new_id(), spec=spec, created=now, updated=now)
        revision = await writes.create(store, key, record)
        if revision is None:
            raise _exists(spec.name)
        return record, revision
    for attempt in range(writes.ATTEMPTS):
        services = await read_services(store)
        if spec.name in services:
            raise _exists(spec.name)
        (assigned,) = assign_published_ports([spec], specs_of(services), attempt=attempt)
        record = ServiceRecord(id=new_id(), spec=assigned, created=now, updated=now)
        written = [Written(record.id, assigned, None)]
        claims = await claims_for(store, written)
        if claims is None:
            continue  # a port was claimed meanwhile
        compares, ops = claim_ops(claims, written)
        compares, ops = [Compare(key, 0), *compares], [Put(key, record.dump()), *ops]
        check_fits(store, compares, ops, spec.name)
        result = await store.txn(compares, ops)
        if result.succeeded:
            return record, result.revision
        if result.found.get(key, 0):
            raise _exists(spec.name)
        # a port was claimed meanwhile: read again (an explicit port is then a 409
        # naming its holder, an automatic one is picked again)
    raise PortTaken(
        f"the published ports of service {spec.name!r} were claimed by others "
        f"{writes.ATTEMPTS} times in a row; try again"
    )


def _exists(name: str) -> Conflict:
    return Conflict(f"a service named {name!r} already exists")


async def update_service(
    store: Store,
    view: ClusterView,
    ref: str,
    spec: ServiceSpec,
    *,
    expected_version: int | None,
    now: float,
) -> tuple[ServiceRecord, int]:
    """Replace the spec (a new version; the old one is kept for rollback)."""
    validate_spec(spec)
    name = _name_of(view, ref)

    def new_spec(record: ServiceRecord) -> ServiceSpec:
        if expected_version is not None and expected_version != record.spec_version:
            raise Conflict(
                f"service {name!r} is at version {record.spec_version}, not "
                f"{expected_version}: it changed meanwhile; inspect it and try again"
            )
        if spec.name != record.spec.name:
            raise Invalid(("body", "name"), f"a service cannot be renamed ({record.spec.name!r})")
        if spec.mode is not record.spec.mode:
            raise Invalid(
                ("body", "mode"),
                f"service {name!r} is {record.spec.mode}; the mode cannot change "
                "(remove the service and create it again)",
            )
        return spec

    return await _rewrite(store, name, ref, new_spec, now=now)


class Versioning(Protocol):
    """`next_version` or `rollback_version`: the record with a spec as a new version."""

    def __call__(
        self, record: ServiceRecord, spec: ServiceSpec, *, now: float
    ) -> ServiceRecord: ...


async def _rewrite(
    store: Store,
    name: str,
    ref: str,
    new_spec: Callable[[ServiceRecord], ServiceSpec],
    *,
    now: float,
    version: Versioning | None = None,
) -> tuple[ServiceRecord, int]:
    """Replace the service's spec with `new_spec(current)` (which may refuse), its ports
    assigned and claimed in the same compare-and-swap; a lost race is retried from a
    fresh read. `version` (default `next_version`) makes the new record; when it returns
    the current one (the same spec), nothing is written."""
    version = version or next_version
    key = keys.service(name)
    for attempt in range(writes.ATTEMPTS):
        kv = await store.get(key)
        if kv is None:
            raise NotFound(KIND, ref)
        current = ServiceRecord.load(kv.value)
        spec = new_spec(current)
        ported = bool(spec.ports or current.spec.ports)
        if ported:
            stored = {**specs_of(await read_services(store)), name: current.spec}
            (spec,) = assign_published_ports([spec], stored, attempt=attempt)
        updated = version(current, spec, now=now)
        if updated is current:  # nothing to change: no write, no event
            return current, kv.mod_revision
        compares: list[Compare] = []
        ops: list[Op] = []
        if ported:
            written = [Written(current.id, spec, current.spec)]
            claims = await claims_for(store, written)
            if claims is None:
                continue  # a port was claimed meanwhile
            compares, ops = claim_ops(claims, written)
        compares, ops = [Compare(key, kv.mod_revision), *compares], [Put(key, updated.dump()), *ops]
        check_fits(store, compares, ops, name)
        result = await store.txn(compares, ops)
        if result.succeeded:
            return updated, result.revision
    raise Conflict(f"{KIND} {ref!r} is being changed by others; try again")


async def scale_service(
    store: Store, view: ClusterView, ref: str, *, replicas: int, now: float
) -> tuple[ServiceRecord, int]:
    name = _name_of(view, ref)

    def change(record: ServiceRecord) -> ServiceRecord:
        if record.spec.mode is not ServiceMode.REPLICATED:
            raise Conflict(f"service {name!r} is global: only a replicated service scales")
        return next_version(record, record.spec.model_copy(update={"replicas": replicas}), now=now)

    return await writes.modify(
        store, keys.service(name), model=ServiceRecord, change=change, kind=KIND, ref=ref
    )


async def rollback_service(
    store: Store, view: ClusterView, ref: str, *, now: float
) -> tuple[ServiceRecord, int]:
    """Swap in the previous spec, as a new version (so rolling back twice rolls forward),
    rolled out by its `rollback_config` (see `rollback_version`).

    No previous spec is a 409. Its published ports are claimed again: one another
    service took meanwhile is a 409.
    """
    name = _name_of(view, ref)

    def new_spec(record: ServiceRecord) -> ServiceSpec:
        if record.previous_spec is None:
            raise Conflict(f"service {name!r} has no previous spec to roll back to")
        return record.previous_spec

    return await _rewrite(store, name, ref, new_spec, now=now, version=rollback_version)


async def remove_service(store: Store, view: ClusterView, ref: str) -> int:
    """Delete the service record and its port claims; the leader then shuts down and
    removes its tasks."""
    name = _name_of(view, ref)
    key = keys.service(name)
    for _ in range(writes.ATTEMPTS):
        kv = await store.get(key)
        if kv is None:
            raise NotFound(KIND, ref)
        ops: list[Op] = [Delete(key), *await _releases(store, kv.value)]
        result = await store.txn([Compare(key, kv.mod_revision)], ops)
        if result.succeeded:
            return result.revision
    raise Conflict(f"service {ref!r} is being changed by others; try again")


async def _releases(store: Store, value: bytes) -> list[Op]:
    """The deletes of the port claims held by the service stored as `value`."""
    try:
        record = ServiceRecord.load(value)
    except (ValidationError, ValueError):
        return []
    if not ingress_claims(record.spec):
        return []
    claims = await read_claims(store, ingress_claims(record.spec))
    _, ops = claim_ops(claims, [Written(record.id, None, record.spec)])
    return ops


async def deploy_services(
    store: Store, specs: Sequence[ServiceSpec], *, now: float
) -> tuple[list[ServiceRecord], int]:
    """Create or update every service in one transaction (a stack deploy).

    Every spec is validated first (`Invalid` names the failing one by its index); then
    all are written together or none is. An unchanged spec is left alone, so deploying
    the same stack twice restarts nothing.
    """
    names = [spec.name for spec in specs]
    for index, name in enumerate(names):
        if names.index(name) != index:
            raise Invalid(("body", index, "name"), f"service {name!r} appears twice")
    for index, spec in enumerate(specs):
        validate_spec(spec, loc=("body", index))
    for attempt in range(writes.ATTEMPTS):
        services = await read_services(store)
        published = assign_published_ports(specs, specs_of(services), attempt=attempt)
        compares: list[Compare] = []
        ops: list[Op] = []
        written: list[Written] = []
        records: list[ServiceRecord] = []
        for index, spec in enumerate(published):
            key = keys.service(spec.name)
            found = services.get(spec.name)
            if found is None:
                record = ServiceRecord(id=new_id(), spec=spec, created=now, updated=now)
                compares.append(Compare(key, 0))
                ops.append(Put(key, record.dump()))
                written.append(Written(record.id, spec, None))
            else:
                current, revision = found
                if spec.mode is not current.spec.mode:
                    raise Invalid(
                        ("body", index, "mode"),
                        f"service {spec.name!r} is {current.spec.mode}; the mode cannot change",
                    )
                record = next_version(current, spec, now=now)
                compares.append(Compare(key, revision))
                if record is not current:
                    ops.append(Put(key, record.dump()))
                    written.append(Written(record.id, spec, current.spec))
            records.append(record)
        claims = await claims_for(store, written)
        if claims is None:
            continue  # a port was claimed meanwhile
        claim_compares, claim_writes = claim_ops(claims, written)
        result = await store.txn([*compares, *claim_compares], [*ops, *claim_writes])
        if result.succeeded:
            return records, result.revision
    raise Conflict("the services are being changed by others; try again")


def next_version(
    record: ServiceRecord, spec: ServiceSpec, *, now: float, force: bool = False
) -> ServiceRecord:
    """The record with `spec` as a new version; `record` itself when nothing changes.

    A new spec is an update, paced by its `update_config`: the state of a rollback under
    way or paused is cleared (swarm mode clears UpdateStatus on an update), so the
    leader starts an update rather than carry on rolling back. Other states stay for the
    leader to move on (a paused update resumes with the new version).
    """
    if spec == record.spec and not force:
        return record
    changes: dict[str, object] = {
        "spec": spec,
        "spec_version": record.spec_version + 1,
        "previous_spec": record.spec,
        "updated": now,
    }
    if record.update_state in (ROLLING_BACK, ROLLBACK_PAUSED):
        changes |= {"update_state": "", "update_message": ""}
    return record.model_copy(update=changes)


MANUAL_ROLLBACK = "manually requested rollback"


def rollback_version(record: ServiceRecord, spec: ServiceSpec, *, now: float) -> ServiceRecord:
    """The record rolled back to `spec` (its previous spec, ports assigned) as a new
    version, always, in state `rolling back`: the leader then replaces the tasks by the
    spec's `rollback_config` and ends `rolled back` (`rollback paused` if it fails), as
    `docker service rollback` does."""
    return next_version(record, spec, now=now, force=True).model_copy(
        update={"update_state": ROLLING_BACK, "update_message": MANUAL_ROLLBACK}
    )
