"""Cluster state as a manager holds it: a typed mirror of the store, and its snapshots.

Every manager runs one `ClusterMirror`; its API answers from it and, on the leader, the
reconciler plans from its `ClusterSnapshot`s. Nothing here writes to the store.

Modules: `mirror` (list, watch, notify), `contents` (the maps and how one event changes
them), `snapshot` (a frozen copy for one pass), `records` (documents with their store
revisions).
"""

from controlplane.state.mirror import ClusterMirror
from controlplane.state.records import StoredService, StoredStatus, StoredTask
from controlplane.state.snapshot import ClusterSnapshot

__all__ = ["ClusterMirror", "ClusterSnapshot", "StoredService", "StoredStatus", "StoredTask"]
