"""The heap keeper freezes what lives, and still frees cycles frozen before they died."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from controlplane.manager.heap import HeapKeeper


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_a_frozen_cycle_is_freed_by_the_next_full_collection() -> None:
    clock = Clock()
    keeper = HeapKeeper(collect_every=300, clock=clock)
    cycle = Cycle()
    dead = weakref.ref(cycle)
    keeper.step()
    assert gc.get_freeze_count() > 0
    del cycle
    gc.collect()
    assert dead() is not None  # frozen: the collector does not walk it
    clock.now = 100
    keeper.step()
    assert dead() is not None
    assert keeper.collections == 0
    clock.now = 301
    keeper.step()
    assert dead() is None
    assert keeper.collections == 1


async def test_a_stopped_keeper_leaves_nothing_frozen() -> None:
    keeper = HeapKeeper(freeze_every=0.01)
    task = asyncio.create_task(keeper.run())
    await asyncio.sleep(0.1)
    assert keeper.freezes >= 2
    assert gc.get_freeze_count() > 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gc.get_freeze_count() == 0
