"""Capped exponential backoff with jitter, for retrying a store that does not answer.

Every loop in the agent that talks to the store (heartbeat, status flushing, the task
watch) retries the same way: quickly at first, so that a blip costs little, then less
and less often up to a cap, so that a store that is down for minutes is not hammered by
every node at once. Jitter spreads the retries of many nodes apart.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays of `first`, 2 x `first`, ... up to `cap` seconds, each ± `jitter`."""

    def __init__(self, *, first: float = 0.2, cap: float = 5.0, jitter: float = 0.1) -> None:
        self.first = first
        self.cap = cap
        self.jitter = jitter
        self._next = first

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return jittered(delay, self.jitter)

    def reset(self) -> None:
        self._next = self.first


def jittered(seconds: float, fraction: float) -> float:
    """`seconds` moved up or down by at most `fraction` of itself, at random."""
    return seconds * (1 + random.uniform(-fraction, fraction))
