"""Campaign, lead, stop, campaign again: the leader-only half of a manager.

Every manager runs one `LeaderLoop`. It campaigns for the leader key; on winning, it
starts the leader's duties (the reconciler) with the term's `Leadership`, whose token
fences every task write. The moment the term ends (`leadership.lost`: the lease expired,
the key changed hands, the store stopped answering, or a fenced write was refused as
`NotLeader`), the duties are told to stop and cancelled before they can issue another
write, and the loop campaigns again. A duty that crashes ends the term too: a leader
that cannot reconcile should let another manager try, so it resigns and waits a moment
before campaigning again.

Cancelling `run()` (shutdown) resigns: the leader key is deleted at once and a waiting
manager leads without waiting for the lease to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from discovery.election import Election, Leadership, NotLeader

log = logging.getLogger(__name__)

#: Pause after a duty crashed, before campaigning again (avoids a hot crash loop).
CRASH_BACKOFF_SECONDS = 2.0


class LeaderDuty(Protocol):
    """A leader-only loop (the reconciler): runs for one term, stops when told."""

    async def run(self) -> None: ...

    def stop(self) -> object:  # may be a coroutine function, or a plain one
        ...


DutyFactory = Callable[[Leadership], Sequence[LeaderDuty]]


class LeaderLoop:
    """Leads whenever it can; `leadership` is the current term, None when not leading."""

    def __init__(
        self,
        *,
        make_election: Callable[[], Election],
        duties: DutyFactory,
        crash_backoff: float = CRASH_BACKOFF_SECONDS,
    ) -> None:
        self._make_election = make_election
        self._duties = duties
        self._crash_backoff = crash_backoff
        self.leadership: Leadership | None = None
        self.terms_won = 0

    @property
    def is_leader(self) -> bool:
        return self.leadership is not None and not self.leadership.is_lost

    async def run(self) -> None:
        while True:
            leadership = await self._make_election().campaign()
            self.leadership = leadership
            self.terms_won += 1
            log.info("leading (term %d)", leadership.token)
            crashed = False
            try:
                crashed = await self._lead(leadership)
            finally:
                self.leadership = None
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(leadership.resign())
            if crashed:
                await asyncio.sleep(self._crash_backoff)

    async def _lead(self, leadership: Leadership) -> bool:
        """Run the duties until the term ends; True when a duty crashed."""
        duties = list(self._duties(leadership))
        running = [
            asyncio.create_task(duty.run(), name=f"leader duty {i}")
            for i, duty in enumerate(duties)
        ]
        lost = asyncio.create_task(leadership.lost.wait(), name="leadership lost")
        try:
            done, _ = await asyncio.wait({lost, *running}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self._stop(duties, running)
            lost.cancel()
        if lost in done:
            log.warning("term %d over: %s", leadership.token, leadership.reason)
            return False
        for task in done:
            error = None if task.cancelled() else task.exception()
            if isinstance(error, NotLeader):
                log.warning("term %d over: %s", leadership.token, error)
                return False
            if error is not None:
                log.error("a leader duty crashed; resigning", exc_info=error)
            else:
                log.error("a leader duty returned while leading; resigning")
        return True

    @staticmethod
    async def _stop(duties: Sequence[LeaderDuty], running: Sequence[asyncio.Task[None]]) -> None:
        """Cancel each duty first (it issues no further write), then let it clean up."""
        for task in running:
            task.cancel()
        for duty in duties:
            try:
                outcome = duty.stop()
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log.exception("a leader duty failed to stop")
        await asyncio.gather(*running, return_exceptions=True)
