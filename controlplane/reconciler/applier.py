"""The applier: writes a plan in fenced transactions, and nothing else writes for the leader.

Each plan op becomes a few compares and store operations (`txn_parts`; the table is in
`plan`). Ops are packed, in plan order, into transactions of at most `max_txn_items`
compares plus operations (64 by default: Consul's limit), an op never split across two,
and no key written twice in one transaction. Every transaction also compares the leader
key's mod_revision with this term's fencing token, so:

- the fence fails (another manager leads now): `NotLeader` is raised and nothing more
  is written; what earlier transactions wrote was written while this manager led;
- an op's own guard fails (the plan was made from a view the store has since moved
  past): that op is dropped, the rest of its transaction is tried again without it,
  and the next pass decides again from the newer view. The failed compares name the
  culprits (`TxnResult.found`); if the store does not say, the whole transaction is
  counted as conflicting.

`NotLeader` is `discovery.election.NotLeader`, the one the manager's leader loop
already treats as "this term is over".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from controlplane import keys
from controlplane.models.base import Document
from controlplane.reconciler.config import MAX_TXN_ITEMS
from controlplane.reconciler.plan import (
    CreateTask,
    DeleteStatus,
    DeleteTask,
    PlacePending,
    Plan,
    PlanOp,
    ShutdownTask,
    UpdateServiceRecord,
)
from discovery import Compare, Delete, Op, Put, TxnResult
from discovery.election import NotLeader

__all__ = ["ApplyResult", "NotLeader", "Transactions", "apply_plan", "txn_parts"]


class Transactions(Protocol):
    """The one store verb the applier needs (a `discovery.Store` has it)."""

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult: ...


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: int = 0  # ops written
    conflicts: int = 0  # ops dropped because their guard failed
    transactions: int = 0
    revision: int = 0  # the store revision after the last transaction that succeeded


Expect = Callable[[list[tuple[str, bytes, Document]]], None]


def documents(op: PlanOp) -> list[Document]:
    """The documents `txn_parts(op)` puts, in the order of its puts."""
    if isinstance(op, CreateTask | PlacePending):
        return [op.task, op.status]
    if isinstance(op, ShutdownTask):
        return [op.task] if op.status is None else [op.task, op.status]
    if isinstance(op, UpdateServiceRecord):
        return [op.record]
    return []


def _expectations(op: PlanOp, writes: list[Op]) -> list[tuple[str, bytes, Document]]:
    puts = [write for write in writes if isinstance(write, Put)]
    return [(put.key, put.value, doc) for put, doc in zip(puts, documents(op), strict=True)]


def txn_parts(op: PlanOp) -> tuple[list[Compare], list[Op]]:
    """The guards and the writes of one op."""
    if isinstance(op, CreateTask):
        status_key = keys.status(op.task.id)
        return (
            [Compare(op.key, 0), Compare(status_key, 0)],
            [Put(op.key, op.task.dump()), Put(status_key, op.status.dump())],
        )
    if isinstance(op, PlacePending):
        return (
            [Compare(op.pending_key, op.pending_revision), Compare(op.key, 0)],
            [
                Delete(op.pending_key),
                Put(op.key, op.task.dump()),
                Put(keys.status(op.task.id), op.status.dump()),
            ],
        )
    if isinstance(op, ShutdownTask):
        compares = [Compare(op.key, op.mod_revision)]
        writes: list[Op] = [Put(op.key, op.task.dump())]
        if op.status is not None:
            status_key = keys.status(op.task.id)
            compares.append(Compare(status_key, op.status_revision))
            writes.append(Put(status_key, op.status.dump()))
        return compares, writes
    if isinstance(op, DeleteTask):
        return [Compare(op.key, op.mod_revision)], [Delete(op.key), Delete(keys.status(op.task_id))]
    if isinstance(op, DeleteStatus):
        status_key = keys.status(op.task_id)
        return [Compare(status_key, op.mod_revision)], [Delete(status_key)]
    if isinstance(op, UpdateServiceRecord):
        return [Compare(op.key, op.mod_revision)], [Put(op.key, op.record.dump())]
    raise TypeError(f"not a plan op: {op!r}")


Parts = tuple[list[Compare], list[Op]]


def _batches(ops: Sequence[PlanOp], *, room: int) -> Iterator[list[tuple[PlanOp, Parts]]]:
    """The ops with their parts, packed in order; each batch is encoded only when the
    one before it has been sent (the first thousand of 10,000 new tasks go out while
    the rest wait to be encoded)."""
    batch: list[tuple[PlanOp, Parts]] = []
    used = 0
    written: set[str] = set()
    for op in ops:
        compares, writes = txn_parts(op)
        size = len(compares) + len(writes)
        if batch and (used + size > room or any(write.key in written for write in writes)):
            yield batch
            batch, used, written = [], 0, set()
        batch.append((op, (compares, writes)))
        used += size
        written.update(write.key for write in writes)
    if batch:
        yield batch


async def apply_plan(
    store: Transactions,
    plan: Plan,
    *,
    fencing_token: int,
    max_txn_items: int = MAX_TXN_ITEMS,
    expect: Expect | None = None,
) -> ApplyResult:
    """Write `plan`; raises `NotLeader` as soon as the fence fails. `expect`, if given,
    is told each transaction's documents before it is sent (the mirror's `expect`)."""
    fence = Compare(keys.LEADER, fencing_token)
    applied = conflicts = transactions = revision = 0
    # each op's documents are encoded once (10,000 new tasks: 20,000 JSON documents)
    for batch in _batches(plan.ops, room=max_txn_items - 1):
        remaining = batch
        while remaining:
            parts = [op_parts for _, op_parts in remaining]
            compares = [fence, *(c for guard, _ in parts for c in guard)]
            writes = [w for _, ops in parts for w in ops]
            if expect is not None:
                expect([e for op, (_, w) in remaining for e in _expectations(op, w)])
            result = await store.txn(compares, writes)
            transactions += 1
            if result.succeeded:
                applied += len(remaining)
                revision = result.revision
                break
            if result.found.get(keys.LEADER, fencing_token) != fencing_token:
                raise NotLeader(
                    f"the leader key changed (fencing token {fencing_token} is stale): "
                    "this manager no longer leads; nothing more was written"
                )
            failed = {
                index
                for index, (guard, _) in enumerate(parts)
                if any(result.found.get(c.key, c.mod_revision) != c.mod_revision for c in guard)
            }
            if not failed:
                conflicts += len(remaining)
                break
            conflicts += len(failed)
            remaining = [op for index, op in enumerate(remaining) if index not in failed]
    return ApplyResult(
        applied=applied, conflicts=conflicts, transactions=transactions, revision=revision
    )
