"""The reconciler's settings: timing, history, placement, and how it writes.

Defaults follow docs/DESIGN.md: a down node's tasks are replaced after one node TTL
(15 s), each slot keeps its last five tasks, the scheduler spreads, and one
transaction carries as many compares and operations as the store takes
(`Store.max_txn_ops`: Consul 64, etcd 128), up to `LEADER_TXN_ITEMS`. Tests pass
shorter times.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Compares plus operations in one transaction when the store does not say: Consul's limit.
MAX_TXN_ITEMS = 64
#: The most compares plus operations the leader puts in one transaction where the store
#: takes more (the file store takes 65,536): about 1,000 new tasks. A plan is written
#: in pieces so that the first tasks land, and their nodes start them, while the rest
#: are still being encoded and written; 10,000 tasks in one transaction kept every
#: node waiting for the last.
LEADER_TXN_ITEMS = 4096


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
    #: After a change, wait at least this many times the last pass's duration before the
    #: next pass, so that a stream of status reports cannot keep the leader planning
    #: back to back (at 10,000 tasks a pass over a service takes a fifth of a second).
    pace: float = 1.0
    #: Seconds between full passes (every service, whatever changed): a safety net under
    #: the passes that re-plan only the services whose inputs changed.
    full_pass_interval: float = 30.0
    #: Compares plus operations per transaction (None: the store's `max_txn_ops`, at
    #: most `LEADER_TXN_ITEMS`; given, never more than the store takes). `shoal manager
    #: --reconcile-txn-items` sets it: a small value writes a plan in many transactions.
    max_txn_items: int | None = None

    def txn_items(self, store_limit: int) -> int:
        """Compares plus operations per transaction on a store that takes `store_limit`."""
        if self.max_txn_items is not None:
            return min(self.max_txn_items, store_limit)
        return min(store_limit, LEADER_TXN_ITEMS)
