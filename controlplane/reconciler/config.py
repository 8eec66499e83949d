"""The reconciler's settings: timing, history, placement, and how it writes.

Defaults follow docs/DESIGN.md: a down node's tasks are replaced after one node TTL
(15 s), each slot keeps its last five tasks, the scheduler spreads, and one
transaction carries at most 64 compares and operations (Consul's limit, the smallest
of the backends). Tests pass shorter times.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Compares plus operations in one transaction: Consul's limit.
MAX_TXN_ITEMS = 64


@dataclass(frozen=True, slots=True)
class ReconcilerConfig:
    #: Seconds a node's heartbeat key may be gone before its tasks are replaced.
    node_grace: float = 15.0
    #: Tasks kept per slot, the current one included; older finished ones are deleted.
    history_limit: int = 5
    #: Scheduler filter names in order (None: the scheduler's defaults).
    filters: tuple[str, ...] | None = None
    #: Scheduler strategy name, and the seed that makes `random` deterministic.
    strategy: str = "spread"
    seed: int = 0
    #: Seconds to let a burst of store changes settle before a pass.
    debounce: float = 0.05
    #: Seconds to wait before another pass after one failed (store down, a bug).
    retry_delay: float = 1.0
    #: Compares plus operations per transaction.
    max_txn_items: int = MAX_TXN_ITEMS
