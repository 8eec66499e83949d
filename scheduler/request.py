"""What the scheduler is asked to place: one task of one service.

A `PlacementRequest` is a frozen value. Everything a filter or a strategy may look at is
here; the identity of the task (slot, task id) is not part of its *feasibility key*, so
the replicas of one service share one feasibility computation in a pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

from scheduler.constraints import (
    Affinity,
    Constraint,
    Preference,
    parse_affinity,
    parse_constraint,
    parse_preference,
)


@dataclass(frozen=True, slots=True)
class Resources:
    """CPU in nano CPUs (1e9 = one CPU) and memory in bytes, like the Docker API."""

    nano_cpus: int = 0
    memory_bytes: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            nano_cpus=self.nano_cpus + other.nano_cpus,
            memory_bytes=self.memory_bytes + other.memory_bytes,
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            nano_cpus=self.nano_cpus - other.nano_cpus,
            memory_bytes=self.memory_bytes - other.memory_bytes,
        )

    def fits_in(self, available: Resources) -> bool:
        return self.nano_cpus <= available.nano_cpus and self.memory_bytes <= available.memory_bytes

    @property
    def is_zero(self) -> bool:
        return self.nano_cpus == 0 and self.memory_bytes == 0


class Platform(NamedTuple):
    """An (os, arch) pair; an empty field in a request means "any"."""

    os: str
    arch: str


class PortRequest(NamedTuple):
    """A host-mode published port. Equal to the plain tuple `(protocol, port)`."""

    protocol: str
    port: int

    def __str__(self) -> str:
        return f"{self.port}/{self.protocol}"


def _tuple(values: Sequence[object]) -> tuple[object, ...]:
    return values if isinstance(values, tuple) else tuple(values)


@dataclass(frozen=True)
class PlacementRequest:
    """One task to place.

    `constraints`, `affinities` and `preferences` are the raw strings of the service spec;
    they are parsed once per feasibility group (see `parsed_constraints`). Sequences given
    as lists are stored as tuples so that requests hash.

    `node_id` pins the request to one node (global services): only that node is
    considered, still through every filter, so an unplaced global task is explained too.
    """

    service: str
    slot: int | None = None
    task_id: str | None = None
    image: str = ""
    resources: Resources = Resources()
    constraints: Sequence[str] = ()
    preferences: Sequence[str] = ()
    affinities: Sequence[str] = ()
    host_ports: Sequence[PortRequest] = ()
    max_replicas_per_node: int = 0
    platforms: Sequence[Platform] = ()
    node_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("constraints", "preferences", "affinities"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))
        object.__setattr__(
            self, "host_ports", tuple(PortRequest(str(p), int(n)) for p, n in self.host_ports)
        )
        object.__setattr__(
            self, "platforms", tuple(Platform(str(o), str(a)) for o, a in self.platforms)
        )

    @property
    def key(self) -> str:
        """The name of this task in a `PlacementResult`: task id, else service.slot."""
        if self.task_id is not None:
            return self.task_id
        if self.slot is not None:
            return f"{self.service}.{self.slot}"
        if self.node_id is not None:
            return f"{self.service}@{self.node_id}"
        return self.service

    @property
    def feasibility_key(self) -> Hashable:
        """Everything but the task's identity: requests with equal keys place alike."""
        return (
            self.service,
            self.image,
            self.resources,
            self.constraints,
            self.preferences,
            self.affinities,
            self.host_ports,
            self.max_replicas_per_node,
            self.platforms,
            self.node_id,
        )

    @cached_property
    def parsed_constraints(self) -> tuple[Constraint, ...]:
        """Parsed once per request object; raises `ConstraintError` on a bad one."""
        return tuple(parse_constraint(text) for text in self.constraints)

    @cached_property
    def parsed_affinities(self) -> tuple[Affinity, ...]:
        return tuple(parse_affinity(text) for text in self.affinities)

    @cached_property
    def parsed_preferences(self) -> tuple[Preference, ...]:
        return tuple(parse_preference(text) for text in self.preferences)

    @property
    def has_soft_rules(self) -> bool:
        return any(c.soft for c in self.parsed_constraints) or any(
            a.soft for a in self.parsed_affinities
        )

    def hard_only(self) -> PlacementRequest:
        """This request with the soft constraints and affinities dropped."""
        return dataclasses.replace(
            self,
            constraints=tuple(c.text for c in self.parsed_constraints if not c.soft),
            affinities=tuple(a.text for a in self.parsed_affinities if not a.soft),
        )
