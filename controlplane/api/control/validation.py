"""Checks a service spec needs beyond its schema, each naming the field it refuses.

The pydantic model already refuses wrong types and ranges (replicas -1, port 70000).
What it cannot know is the scheduler's vocabulary: a constraint key the scheduler does
not know would match no node and leave tasks pending forever, so it is refused here
with the scheduler's own message. Used by service create and update alike, and by a
stack deploy for each of its services before any is written.
"""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.api.control.errors import Invalid
from controlplane.models import ServiceMode, ServiceSpec
from scheduler.constraints import (
    AFFINITY_PREFIX,
    ConstraintError,
    parse_affinity,
    parse_constraint,
    parse_preference,
)

PLATFORM_PARTS = (1, 2, 3)  # os, os/arch, os/arch/variant


def validate_spec(spec: ServiceSpec, *, loc: Sequence[str | int] = ("body",)) -> None:
    """Raise `Invalid` for the first field the cluster cannot act on."""
    base = tuple(loc)
    placement = (*base, "placement")
    for index, text in enumerate(spec.placement.constraints):
        try:
            if text.strip().startswith(AFFINITY_PREFIX):
                parse_affinity(text)
            else:
                parse_constraint(text)
        except ConstraintError as exc:
            raise Invalid((*placement, "constraints", index), str(exc)) from None
    for index, text in enumerate(spec.placement.preferences):
        try:
            parse_preference(text)
        except ConstraintError as exc:
            raise Invalid((*placement, "preferences", index), str(exc)) from None
    for index, text in enumerate(spec.placement.platforms):
        parts = text.split("/")
        if len(parts) not in PLATFORM_PARTS or not all(part.strip() for part in parts):
            raise Invalid(
                (*placement, "platforms", index),
                f"{text!r} is not a platform; write os[/arch[/variant]], e.g. linux/amd64",
            )
    if spec.mode is ServiceMode.GLOBAL and spec.placement.max_replicas_per_node > 1:
        raise Invalid(
            (*placement, "max_replicas_per_node"),
            "a global service runs one task per node; max_replicas_per_node must be 0 or 1",
        )
