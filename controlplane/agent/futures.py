"""Settling the futures of callers who wait for a shared, batched store call."""

from __future__ import annotations

import asyncio


def settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    """Resolve `future` with `error`, or with None; one already done (its caller gave up
    waiting, or it was cancelled with its loop) is left as it is."""
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
