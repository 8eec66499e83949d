"""Stores whose first few service writes wait for each other: the race two managers run
when requests reach them at the same instant, made certain rather than likely."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from controlplane import keys
from discovery import Compare, Op, Store, TxnResult

WAIT = 10.0


class ServiceWriteBarrier:
    """Holds the first `parties` transactions that write a service, through any of the
    stores it wraps, until all of them have been asked for, so that every writer decided
    from the same reads; every later transaction passes straight through."""

    def __init__(self, parties: int) -> None:
        self._barrier = asyncio.Barrier(parties)
        self._left = parties
        self.held = 0

    def wrap(self, store: Store) -> None:
        txn = store.txn

        async def held_txn(compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
            if self._left > 0 and any(op.key.startswith(keys.SERVICES) for op in ops):
                self._left -= 1
                self.held += 1
                await asyncio.wait_for(self._barrier.wait(), WAIT)
            return await txn(compares, ops)

        setattr(store, "txn", held_txn)  # noqa: B010 (an instance's method, for one test)


def hold_service_writes(
    monkeypatch: pytest.MonkeyPatch, store: Store | Sequence[Store], parties: int
) -> ServiceWriteBarrier:
    """`parties` service writes through `store` (or any of several) wait for each other."""
    barrier = ServiceWriteBarrier(parties)
    for one in [store] if isinstance(store, Store) else store:
        monkeypatch.setattr(one, "txn", one.txn)  # restored after the test
        barrier.wrap(one)
    return barrier
