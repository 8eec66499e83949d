"""A manager's registration: present while it runs, healed when its lease ends, gone at stop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from controlplane import keys
from controlplane.manager.registration import Registration
from controlplane.models import ManagerRecord
from discovery import Store, open_store
from discovery.backends.memory import MemoryStore

DEADLINE = 5.0


@pytest.fixture
async def store(memory_url: str) -> AsyncIterator[Store]:
    opened = await open_store(memory_url)
    yield opened
    await opened.close()
    MemoryStore.reset(memory_url.split("://", 1)[1])


async def until_present(store: Store, key: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while await store.get(key) is None:
        assert time.monotonic() < deadline, f"{key} never appeared"
        await asyncio.sleep(0.01)


async def test_registration_heals_and_stop_removes_it(store: Store) -> None:
    record = ManagerRecord(id="m1", api_url="http://127.0.0.1:1", started=1.0, shoal_version="t")
    registration = Registration(store, record=record, ttl=0.3)
    task = asyncio.create_task(registration.run())
    try:
        await until_present(store, keys.manager("m1"))
        kv = await store.get(keys.manager("m1"))
        assert kv is not None
        assert ManagerRecord.load(kv.value) == record
        # Outlived its lease (a long pause, say): the record vanishes, then comes back.
        assert registration.lease is not None
        await store.revoke(registration.lease)
        assert await store.get(keys.manager("m1")) is None
        await until_present(store, keys.manager("m1"))
        await asyncio.sleep(1.0)  # three TTLs: renewals keep it alive
        assert await store.get(keys.manager("m1")) is not None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await registration.stop()
    assert await store.get(keys.manager("m1")) is None
