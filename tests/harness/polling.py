"""Waiting for a condition in a synchronous test: `poll`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(condition: Callable[[], T | None], *, within: float, what: str, every: float = 0.1) -> T:
    """`condition()` once it is truthy, asked every `every` seconds; fail naming `what`
    (and the last answer) after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {within} s (last: {last!r})")
        time.sleep(every)
