"""What can go wrong in a control operation, in the user's words and with no HTTP in it.

The control layer raises these; `controlplane.api.errors` maps each to a status code
(404, 409, 422, 401, 400, 503). Keeping HTTP out of here lets the same operations serve
the CLI, a compose deploy or a test without a web server.
"""

from __future__ import annotations

from collections.abc import Sequence


class ControlError(Exception):
    """Base of every refusal of the control layer; `str(err)` is the user's message."""


class NotFound(ControlError):
    """The named object does not exist (unknown id, prefix or name)."""

    def __init__(self, kind: str, ref: str) -> None:
        super().__init__(f"{kind} {ref!r} not found")
        self.kind = kind
        self.ref = ref


class Ambiguous(ControlError):
    """A prefix or hostname names more than one object."""

    def __init__(self, kind: str, ref: str, matches: Sequence[str]) -> None:
        shown = ", ".join(sorted(matches)[:5])
        super().__init__(
            f"{kind} {ref!r} is ambiguous ({len(matches)} matches: {shown}); use a longer id"
        )
        self.kind = kind
        self.ref = ref


class Conflict(ControlError):
    """The request is valid but the cluster's current state refuses it."""


class Unauthorized(ControlError):
    """No credential, or one that this cluster does not accept."""


class StoreDown(ControlError):
    """The discovery store did not answer; nothing was written. Retry later."""


class Invalid(ControlError):
    """A value the request's schema accepts but the cluster does not (unknown constraint
    key, renaming a service). `loc` is the field's path, as in a 422 from validation."""

    def __init__(self, loc: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = tuple(loc)
        self.message = message
