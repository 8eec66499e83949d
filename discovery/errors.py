"""The exceptions every backend raises, whatever client library it wraps.

Callers catch these and nothing else: a gRPC status or a requests error never leaves a
backend. `StoreUnavailable` is the one to retry on; `RevisionCompacted` means "resync
from a fresh list"; the rest are programming or configuration errors.
"""

from __future__ import annotations


class DiscoveryError(Exception):
    """Base of every error raised by the discovery package."""


class InvalidStoreURL(DiscoveryError, ValueError):
    """A discovery URL that cannot be used; the message names the problem."""


class UnknownScheme(InvalidStoreURL):
    """No backend is registered for the URL's scheme; the message lists the known ones."""


class DuplicateScheme(DiscoveryError):
    """Two backends claim one scheme (a built-in and an entry point, or two entry points)."""


class StoreUnavailable(DiscoveryError):
    """The store cannot be reached (down, partitioned, timed out). Retry later."""


class RevisionCompacted(DiscoveryError):
    """A watch asked for history the store no longer keeps: list again, then watch."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(
            f"revision {requested} is compacted (oldest kept: {oldest}); "
            "list the prefix again and watch from the listing's revision + 1"
        )
        self.requested = requested
        self.oldest = oldest


class LeaseNotFound(DiscoveryError):
    """The lease expired or was revoked; keys bound to it are gone."""


class InvalidArgument(DiscoveryError, ValueError):
    """A call with arguments the store refuses (bad TTL, oversized value, empty key)."""
