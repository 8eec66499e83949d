"""The leader loop: duties run only while leading, stop when the term ends, and resume
after the next win; a crashing duty makes the manager step down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from controlplane import keys
from controlplane.manager.leading import LeaderDuty, LeaderLoop
from discovery import Store, open_store
from discovery.backends.memory import MemoryStore
from discovery.election import Election, Leadership

TTL = 0.5
DEADLINE = 5.0


async def eventually(condition: Callable[[], bool], *, within: float = DEADLINE) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class Duty:
    """A leader duty that records what happened to it."""

    def __init__(self, token: int, *, crash: bool = False) -> None:
        self.token = token
        self.crash = crash
        self.running = False
        self.stopped = False

    async def run(self) -> None:
        self.running = True
        try:
            if self.crash:
                raise RuntimeError("boom")
            await asyncio.Event().wait()
        finally:
            self.running = False

    async def stop(self) -> None:
        self.stopped = True


@pytest.fixture
async def store(memory_url: str) -> AsyncIterator[Store]:
    opened = await open_store(memory_url)
    yield opened
    await opened.close()
    MemoryStore.reset(memory_url.split("://", 1)[1])


def loop_for(store: Store, duties: list[Duty], *, crash: bool = False) -> LeaderLoop:
    def start(leadership: Leadership) -> list[LeaderDuty]:
        duty = Duty(leadership.token, crash=crash)
        duties.append(duty)
        return [duty]

    return LeaderLoop(
        make_election=lambda: Election(store, key=keys.LEADER, value=b"{}", ttl=TTL),
        duties=start,
        crash_backoff=0.05,
    )


async def test_duties_run_while_leading_and_stop_when_the_term_ends(store: Store) -> None:
    duties: list[Duty] = []
    leader = loop_for(store, duties)
    task = asyncio.create_task(leader.run())
    try:
        await eventually(lambda: leader.is_leader and bool(duties) and duties[0].running)
        first = duties[0]
        # The term ends behind the leader's back: its lease is revoked.
        assert leader.leadership is not None
        await store.revoke(leader.leadership.lease)
        await eventually(lambda: not first.running)
        assert first.stopped
        # It campaigns again, wins a new term, and starts fresh duties with its token.
        await eventually(lambda: len(duties) == 2 and duties[1].running)
        assert duties[1].token > first.token
        assert leader.terms_won == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_only_one_of_two_leads_and_the_other_takes_over_on_resign(store: Store) -> None:
    a_duties: list[Duty] = []
    b_duties: list[Duty] = []
    a, b = loop_for(store, a_duties), loop_for(store, b_duties)
    a_task = asyncio.create_task(a.run())
    await eventually(lambda: a.is_leader)
    b_task = asyncio.create_task(b.run())
    try:
        await asyncio.sleep(TTL * 2)  # b has had time to (wrongly) lead
        assert not b.is_leader
        assert not b_duties
        a_task.cancel()  # a clean stop resigns
        await asyncio.gather(a_task, return_exceptions=True)
        assert a_duties[0].stopped
        started = time.monotonic()
        await eventually(lambda: b.is_leader)
        assert time.monotonic() - started < TTL  # no waiting for a's lease to expire
        assert await store.get(keys.LEADER) is not None
    finally:
        b_task.cancel()
        await asyncio.gather(b_task, return_exceptions=True)
    assert await store.get(keys.LEADER) is None  # b resigned too


async def test_a_crashing_duty_resigns_and_campaigns_again(store: Store) -> None:
    duties: list[Duty] = []
    leader = loop_for(store, duties, crash=True)
    task = asyncio.create_task(leader.run())
    try:
        await eventually(lambda: len(duties) >= 2)
        assert all(d.stopped for d in duties[:-1])
        assert duties[1].token > duties[0].token  # each attempt is a new term
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
