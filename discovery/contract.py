"""The store contract: the verbs every discovery backend provides.

shoal keeps all cluster state in a key-value store with revisions, leases and watches:
the shape of etcd's v3 API, which Consul and a local SQLite file can also provide.
Keys are text relative to the cluster prefix (the backend adds the prefix); values are
bytes. Every change gets a store revision that only grows; a key's `mod_revision` is
the revision of its last change, and revision 0 stands for "absent".

Backends differ in what their history keeps, and the contract says so rather than
hiding it:
- etcd and the file store deliver every change in order.
- Consul's blocking queries are level-triggered: a watcher sees every key's latest value
  in order of change, but two puts to one key between two polls reach it as one event.
  Watchers in shoal react to the current value, so this never matters to them.

Leader election (`discovery.election`) is built once on these verbs.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Self

from discovery.errors import InvalidArgument, LeaseNotFound

#: Largest value a backend must accept (Consul's own limit is 512 KiB).
MAX_VALUE_BYTES = 512 * 1024
#: Renewals the default `keep_alive_many` has in flight at once.
_RENEWALS_AT_ONCE = 64


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int | None = None


@dataclass(frozen=True, slots=True)
class Listing:
    """The keys under a prefix, as of `revision`: watch from `revision + 1` to follow."""

    items: list[KeyValue]
    revision: int


class EventType(StrEnum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    key: str
    value: bytes | None  # None for deletes
    revision: int  # the store revision of this change


@dataclass(frozen=True, slots=True)
class Compare:
    """Succeeds when `key`'s mod_revision equals `mod_revision` (0: the key is absent)."""

    key: str
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


Op = Put | Delete


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int  # the store revision after the transaction (when it succeeded)
    # mod_revision of each compared key as found, when the transaction failed (0: absent);
    # lets a caller tell which guard failed without another read.
    found: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: float  # seconds, as granted (a backend may round up to its minimum)


class Store(abc.ABC):
    """One open connection to one cluster's keys. Safe to share between tasks."""

    #: URL scheme(s) this backend serves; set by subclasses.
    scheme: str = ""
    #: Smallest lease TTL this backend grants (Consul: 10 s).
    min_lease_ttl: float = 1.0
    #: How long after its TTL an unrenewed lease may still hold its keys
    #: (Consul invalidates a session between TTL and 2 x TTL).
    lease_expiry_slack: float = 1.0
    #: True when a watch delivers every change, each at its own revision, in order.
    #: False for level-triggered stores (Consul): every key's latest state still
    #: arrives, but changes between two polls are collapsed and a delete's position
    #: among them is approximate.
    exact_history: bool = True
    #: The most compares plus operations one `txn` may hold; a larger transaction raises
    #: `InvalidArgument` before anything is sent. Consul caps a transaction at 64
    #: operations (its compares are operations too); etcd refuses more than
    #: `--max-txn-ops` (128 by default) compares or operations, so 128 in all is safe
    #: there. Callers that write many keys split their writes by this number.
    max_txn_ops: int = 64

    @classmethod
    @abc.abstractmethod
    async def open(cls, url: str) -> Self:
        """Parse `url` and connect lazily: a bad URL raises `InvalidStoreURL` here, a
        store that is down does not (its operations raise `StoreUnavailable`)."""

    # --- keys ----------------------------------------------------------------------
    @abc.abstractmethod
    async def get(self, key: str) -> KeyValue | None: ...

    @abc.abstractmethod
    async def list(self, prefix: str) -> Listing:
        """Every key starting with `prefix` ("" for all), sorted by key."""

    @abc.abstractmethod
    async def put(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        """Write `key`; returns the new store revision (the key's mod_revision)."""

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove `key`; True when it existed."""

    @abc.abstractmethod
    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        """Apply every op atomically when every compare holds; otherwise nothing."""

    # --- leases --------------------------------------------------------------------
    @abc.abstractmethod
    async def grant(self, ttl: float) -> Lease: ...

    @abc.abstractmethod
    async def keep_alive(self, lease: int) -> None:
        """Renew once; raises `LeaseNotFound` when the lease already ended."""

    async def keep_alive_many(self, leases: Sequence[int]) -> set[int]:
        """Renew every lease in `leases` once; returns the ones that already ended.

        For a process holding many leases (a hollow fleet). Raises what `keep_alive`
        raises other than `LeaseNotFound` (`StoreUnavailable`...) when the store does
        not answer; some leases may then have been renewed. Backends that can renew
        many leases in one request override this; the default renews them one by one,
        a bounded number at a time.
        """
        lost: set[int] = set()
        pending = list(dict.fromkeys(leases))
        for start in range(0, len(pending), _RENEWALS_AT_ONCE):
            chunk = pending[start : start + _RENEWALS_AT_ONCE]
            results = await asyncio.gather(
                *(self.keep_alive(lease) for lease in chunk), return_exceptions=True
            )
            failure: BaseException | None = None
            for lease, result in zip(chunk, results, strict=True):
                if isinstance(result, LeaseNotFound):
                    lost.add(lease)
                elif isinstance(result, BaseException) and failure is None:
                    failure = result
            if failure is not None:
                raise failure
        return lost

    @abc.abstractmethod
    async def revoke(self, lease: int) -> None:
        """End the lease now: its keys are deleted (watchers see deletes)."""

    # --- watch ---------------------------------------------------------------------
    @abc.abstractmethod
    def watch(self, prefix: str, *, start_revision: int) -> AsyncIterator[Event]:
        """Changes under `prefix` with revision >= `start_revision`, in order, forever.

        The iterator survives a restart of the store or a dropped connection: it
        reconnects and resumes after the last event it delivered, with no gap and no
        repeat. It raises `RevisionCompacted` when the store no longer has the history
        asked for. Close it (`aclose()`, or leave the `async for`) to stop watching.
        """

    # --- lifecycle -----------------------------------------------------------------
    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def check_txn_size(store: Store, compares: Sequence[Compare], ops: Sequence[Op]) -> None:
    """Refuse a transaction larger than the backend's `max_txn_ops`."""
    size = len(compares) + len(ops)
    if size > store.max_txn_ops:
        raise InvalidArgument(
            f"a transaction on {store.scheme or 'this store'} holds at most "
            f"{store.max_txn_ops} compares and operations, not {size}: split it"
        )


def check_key(key: str) -> None:
    if not key or key.startswith("/"):
        raise InvalidArgument(f"key {key!r} must be non-empty and relative (no leading '/')")


def check_value(value: bytes) -> None:
    if len(value) > MAX_VALUE_BYTES:
        raise InvalidArgument(f"value of {len(value)} bytes exceeds {MAX_VALUE_BYTES} bytes")
