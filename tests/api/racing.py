"""A store whose first few service writes wait for each other: the race two managers run
when requests reach them at the same instant, made certain rather than likely."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from controlplane import keys
from discovery import Compare, Op, Store, TxnResult

WAIT = 10.0


class ServiceWriteBarrier:
    """Replaces `store.txn`: the first `parties` transactions that write a service are
    held until all of them have been asked for, so every writer decided from the same
    reads; every later transaction passes straight through."""

    def __init__(self, store: Store, parties: int) -> None:
        self._txn = store.txn
        self._barrier = asyncio.Barrier(parties)
        self._left = parties
        self.held = 0

    async def __call__(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        if self._left > 0 and any(op.key.startswith(keys.SERVICES) for op in ops):
            self._left -= 1
            self.held += 1
            await asyncio.wait_for(self._barrier.wait(), WAIT)
        return await self._txn(compares, ops)


def hold_service_writes(
    monkeypatch: pytest.MonkeyPatch, store: Store, parties: int
) -> ServiceWriteBarrier:
    barrier = ServiceWriteBarrier(store, parties)
    monkeypatch.setattr(store, "txn", barrier)
    return barrier
