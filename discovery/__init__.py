"""Discovery: the key-value store that holds a cluster's whole state.

A store is opened from a URL whose scheme picks the backend (`etcd://`, `consul://`,
`file://`, and `memory://` for unit tests), through a registry that other packages can
extend with the entry-point group `shoal.discovery`. Every backend offers the same verbs
(`discovery.contract.Store`): get, list with a revision, put, delete, transactions that
compare revisions, leases, and watches that resume after a store restart. Leader
election with a fencing token (`discovery.election`) is written once on those verbs.

Layers, top to bottom: election -> contract -> backends -> client libraries. Nothing
here imports `controlplane` or `scheduler`.
"""

from discovery.contract import (
    Compare,
    Delete,
    Event,
    EventType,
    KeyValue,
    Lease,
    Listing,
    Op,
    Put,
    Store,
    TxnResult,
)
from discovery.errors import (
    DiscoveryError,
    DuplicateScheme,
    InvalidArgument,
    InvalidStoreURL,
    LeaseNotFound,
    RevisionCompacted,
    StoreUnavailable,
    UnknownScheme,
)
from discovery.registry import open_store

__all__ = [
    "Compare",
    "Delete",
    "DiscoveryError",
    "DuplicateScheme",
    "Event",
    "EventType",
    "InvalidArgument",
    "InvalidStoreURL",
    "KeyValue",
    "Lease",
    "LeaseNotFound",
    "Listing",
    "Op",
    "Put",
    "RevisionCompacted",
    "Store",
    "StoreUnavailable",
    "TxnResult",
    "UnknownScheme",
    "open_store",
]
