"""Stacks: services deployed together, named `<stack>_<service>`, marked with their stack.

A stack has no record of its own: it is the services whose spec says `stack: <name>`.

**Deploy is all or nothing.** Every spec is validated first; then every service is
created, updated or (with `prune`) removed in *one* transaction, each guarded by the
revision its decision was read at, so a deploy racing another change writes nothing
and says so (409). One transaction holds at most the store's `max_txn_ops` compares and
operations (Consul 64, etcd 128, the file store 65,536), and a deploy costs two per
service written or removed, one per unchanged service, and the port claims that move
(two per ingress port newly claimed, one per port released, one per new host-mode
port: see `ports`), all in the same transaction. A stack that does not fit is
refused with a 422 before anything is written, rather than split: a split deploy is not
atomic, and half a stack (a new web tier pointing at a database not yet updated) is
the state a user must never be left in. The message says how many items it needed.

**Remove** deletes every service of the stack. Each delete stands alone (nothing is left
half-consistent by removing some), so removal is split into as many transactions as
the store needs, each guarded; what another client changed meanwhile is left alone and
reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controlplane import keys
from controlplane.api.control import writes
from controlplane.api.control.errors import Conflict, Invalid, NotFound
from controlplane.api.control.ids import new_id
from controlplane.api.control.port_claims import (
    Written,
    claim_ops,
    claims_for,
    read_claims,
    read_services,
    touched,
)
from controlplane.api.control.ports import assign_published_ports
from controlplane.api.control.services import ServiceState, list_services, next_version
from controlplane.api.control.tasks import ObservedTask, TaskFilter, list_tasks
from controlplane.api.control.validation import validate_spec
from controlplane.api.control.view import ClusterView
from controlplane.models import ServiceSpec
from controlplane.models.service import ServiceRecord
from discovery import Compare, Delete, Op, Put, Store

KIND = "stack"


@dataclass(frozen=True, slots=True)
class StackSummary:
    name: str
    services: int


@dataclass(frozen=True, slots=True)
class Deployed:
    records: list[ServiceRecord]
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    removed: list[str]
    revision: int


# --- reads ------------------------------------------------------------------------------


def list_stacks(view: ClusterView) -> list[StackSummary]:
    counts: dict[str, int] = {}
    for record in view.services.values():
        if record.spec.stack:
            counts[record.spec.stack] = counts.get(record.spec.stack, 0) + 1
    return [StackSummary(name=name, services=counts[name]) for name in sorted(counts)]


def stack_services(view: ClusterView, name: str) -> list[ServiceState]:
    found = list_services(view, stack=name)
    if not found:
        raise NotFound(KIND, name)
    return found


def stack_tasks(view: ClusterView, name: str) -> list[ObservedTask]:
    tasks: list[ObservedTask] = []
    for state in stack_services(view, name):
        tasks.extend(list_tasks(view, TaskFilter(service=state.record.spec.name)))
    return tasks


# --- writes -----------------------------------------------------------------------------


def check_specs(name: str, specs: Sequence[ServiceSpec]) -> list[ServiceSpec]:
    """The specs, each marked with the stack; `Invalid` for the first that cannot be."""
    if not specs:
        raise Invalid(("body", "services"), "a stack needs at least one service")
    marked: list[ServiceSpec] = []
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        loc = ("body", "services", index)
        if spec.stack not in (None, name):
            raise Invalid((*loc, "stack"), f"service {spec.name!r} belongs to stack {spec.stack!r}")
        if not spec.name.startswith(f"{name}_"):
            raise Invalid((*loc, "name"), f"a service of stack {name!r} is named '{name}_<name>'")
        if spec.name in seen:
            raise Invalid((*loc, "name"), f"service {spec.name!r} appears twice")
        seen.add(spec.name)
        validate_spec(spec, loc=loc)
        marked.append(spec if spec.stack == name else spec.model_copy(update={"stack": name}))
    return marked


async def deploy_stack(
    store: Store, name: str, specs: Sequence[ServiceSpec], *, prune: bool, now: float
) -> Deployed:
    """Create, update and (with `prune`) remove the stack's services in one transaction."""
    wanted = check_specs(name, specs)
    names = {spec.name for spec in wanted}
    for attempt in range(writes.ATTEMPTS):
        current = await read_services(store)
        # Published ports as `POST /services` gives them (auto-assigned, never claimed
        # twice), against the same listing; services that prune removes free theirs.
        doomed = {
            service: found
            for service, found in current.items()
            if prune and found[0].spec.stack == name and service not in names
        }
        stored = {
            service: record.spec
            for service, (record, _) in current.items()
            if service not in doomed
        }
        published = assign_published_ports(wanted, stored, attempt=attempt)
        compares: list[Compare] = []
        ops: list[Op] = []
        written: list[Written] = []
        out = Deployed([], [], [], [], [], 0)
        for index, spec in enumerate(published):
            key = keys.service(spec.name)
            found = current.get(spec.name)
            if found is None:
                record = ServiceRecord(id=new_id(), spec=spec, created=now, updated=now)
                compares.append(Compare(key, 0))
                ops.append(Put(key, record.dump()))
                written.append(Written(record.id, spec, None))
                out.created.append(spec.name)
            else:
                existing, revision = found
                if existing.spec.stack != name:
                    raise Conflict(
                        f"service {spec.name!r} exists outside stack {name!r}: "
                        "remove it or rename the stack's service"
                    )
                if spec.mode is not existing.spec.mode:
                    raise Invalid(
                        ("body", "services", index, "mode"),
                        f"service {spec.name!r} is {existing.spec.mode}; the mode cannot "
                        "change (remove the service and deploy again)",
                    )
                record = next_version(existing, spec, now=now)
                compares.append(Compare(key, revision))
                if record is existing:
                    out.unchanged.append(spec.name)
                else:
                    ops.append(Put(key, record.dump()))
                    written.append(Written(record.id, spec, existing.spec))
                    out.updated.append(spec.name)
            out.records.append(record)
        for service, (record, revision) in sorted(doomed.items()):
            compares.append(Compare(keys.service(service), revision))
            ops.append(Delete(keys.service(service)))
            written.append(Written(record.id, None, record.spec))
            out.removed.append(service)
        claims = await claims_for(store, written)
        if claims is None:
            continue  # a port was claimed meanwhile
        claim_compares, claim_writes = claim_ops(claims, written)
        compares += claim_compares
        ops += claim_writes
        size = len(compares) + len(ops)
        if size > store.max_txn_ops:
            raise Invalid(
                ("body", "services"),
                f"this deploy needs {size} compares and writes in one transaction; the "
                f"store ({store.scheme}) takes at most {store.max_txn_ops}. Nothing was "
                "written: deploy fewer services at a time (a stack is written whole or not "
                "at all), or run the cluster on etcd or the file store",
            )
        result = await store.txn(compares, ops)
        if result.succeeded:
            return Deployed(
                records=out.records,
                created=out.created,
                updated=out.updated,
                unchanged=out.unchanged,
                removed=out.removed,
                revision=result.revision,
            )
    raise Conflict(f"the services of stack {name!r} are being changed by others; try again")


@dataclass(frozen=True, slots=True)
class _Removal:
    """One service's removal: its guard, its delete and its claims' deletes."""

    service: str
    compare: Compare
    ops: list[Op]


async def remove_stack(store: Store, name: str) -> tuple[list[str], int]:
    """Delete every service of the stack, each with its port claims; the names removed
    and the last revision."""
    doomed = [
        (service, record, revision)
        for service, (record, revision) in (await read_services(store)).items()
        if record.spec.stack == name
    ]
    claims = await read_claims(store, touched(Written(r.id, None, r.spec) for _, r, _ in doomed))
    removals: list[_Removal] = []
    for service, record, revision in doomed:
        key = keys.service(service)
        _, releases = claim_ops(claims, [Written(record.id, None, record.spec)])
        removals.append(_Removal(service, Compare(key, revision), [Delete(key), *releases]))
    if not removals:
        raise NotFound(KIND, name)
    removed: list[str] = []
    revision = 0
    for chunk in _chunks(removals, store.max_txn_ops):
        result = await store.txn([r.compare for r in chunk], [op for r in chunk for op in r.ops])
        if result.succeeded:
            removed.extend(r.service for r in chunk)
            revision = result.revision
            continue
        for one in chunk:  # one changed meanwhile: the others one by one
            alone = await store.txn([one.compare], one.ops)
            if alone.succeeded:
                removed.append(one.service)
                revision = max(revision, alone.revision)
    if not removed:
        raise Conflict(f"the services of stack {name!r} changed meanwhile; try again")
    return removed, revision


def _chunks(removals: Sequence[_Removal], limit: int) -> list[list[_Removal]]:
    """`removals` in order, packed into transactions of at most `limit` items each."""
    chunks: list[list[_Removal]] = []
    size = limit
    for removal in removals:
        cost = 1 + len(removal.ops)
        if size + cost > limit:
            chunks.append([])
            size = 0
        chunks[-1].append(removal)
        size += cost
    return chunks
