"""Task ids: derived from what the task is for, so that planning twice writes once.

A pass gives a slot (or a global service's node) at most one new task, so the service,
the slot and the snapshot revision name it uniquely. Planning again from the same
snapshot (a retry after the store failed to answer) yields the same id, and the
create's compare-absent guard turns the second write into a no-op instead of a twin.
Ids are 25 lowercase base-32 characters, like the ids docker shows.
"""

from __future__ import annotations

import base64
import hashlib


def new_task_id(*, service_id: str, slot: int | str, revision: int) -> str:
    digest = hashlib.sha256(f"{service_id}\x00{slot}\x00{revision}".encode()).digest()
    return base64.b32encode(digest).decode().lower()[:25]
