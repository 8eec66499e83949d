"""Placement rules as text: parse and validate them once, match them many times.

Two syntaxes live side by side, so stacks written for either ancestor keep working:

* swarm mode: `node.labels.zone==a`, `node.role != manager`, `node.ip==10.0.0.0/8`. The
  key is one of `SWARM_KEYS` or starts with `node.labels.` / `engine.labels.`. Values
  compare exactly, ignoring case (`node.ip` takes an address or a CIDR).
* classic Swarm: `constraint:region==us-*`, `constraint:node!=/node-[12]/`. The key is
  `node` (hostname or id), any swarm-mode key, or else an engine label (falling back to an
  operator label). The value may be a glob or a `/regex/` (full match, ignoring case).

Both accept `==` and `!=`, and the soft forms `==~` and `!=~`: a soft rule is dropped for a
task when no node satisfies it. A missing label never equals anything, so `!=` holds for it.

Affinities use the classic form `affinity:service==web` and `affinity:image==redis*`
(also `!=` for anti-affinity, and the soft forms). Placement preferences are label paths:
`node.labels.zone` or `spread=node.labels.zone`.

Every parse error is a `ConstraintError` (a `ValueError`) whose message names the bad
part and what would be accepted: the manager calls these functions when a service is
created, so a typo is refused there instead of silently matching no node.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from scheduler.nodes import NodeView

CLASSIC_PREFIX = "constraint:"
AFFINITY_PREFIX = "affinity:"
OPERATORS = ("==", "!=", "==~", "!=~")
SWARM_KEYS = (
    "node.id",
    "node.hostname",
    "node.ip",
    "node.role",
    "node.platform.os",
    "node.platform.arch",
)
LABEL_PREFIXES = ("node.labels.", "engine.labels.")
AFFINITY_KEYS = ("service", "image")

_CLASSIC_KEY = re.compile(r"[A-Za-z0-9_./-]+")
_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armv7l": "arm",
    "armel": "arm",
    "i386": "386",
    "i686": "386",
}


class ConstraintError(ValueError):
    """A placement rule that cannot be parsed: bad key, operator or value."""


def normalize_arch(arch: str) -> str:
    """`x86_64` -> `amd64`, `aarch64` -> `arm64`: the names Docker reports vary by host."""
    lowered = arch.lower()
    return _ARCH_ALIASES.get(lowered, lowered)


# --- values -------------------------------------------------------------------------------

Matcher = Callable[[str], bool]


def _exact(value: str) -> Matcher:
    folded = value.casefold()
    return lambda candidate: candidate.casefold() == folded


def _pattern(value: str, *, text: str) -> Matcher:
    """Classic values: `/regex/`, a glob (`*`, `?`, `[...]`), or a plain string."""
    if len(value) >= 2 and value.startswith("/") and value.endswith("/"):
        try:
            regex = re.compile(value[1:-1], re.IGNORECASE)
        except re.error as exc:
            raise ConstraintError(f"{text!r}: invalid regular expression: {exc}") from None
        return lambda candidate: regex.fullmatch(candidate) is not None
    if any(ch in value for ch in "*?["):
        glob = re.compile(fnmatch.translate(value), re.IGNORECASE)
        return lambda candidate: glob.match(candidate) is not None
    return _exact(value)


def _address(value: str, *, text: str) -> Matcher:
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ConstraintError(
            f"{text!r}: node.ip takes an address or a CIDR (10.0.0.5, 10.0.0.0/8), not {value!r}"
        ) from None

    def matches(candidate: str) -> bool:
        try:
            return ipaddress.ip_address(candidate) in network
        except ValueError:
            return False

    return matches


# --- keys ---------------------------------------------------------------------------------

Getter = Callable[["NodeView"], tuple[str, ...]]


def _swarm_getter(key: str) -> Getter | None:
    """How to read a swarm-mode key from a node, or None if the key is not one."""
    if key == "node.id":
        return lambda node: (node.id,)
    if key == "node.hostname":
        return lambda node: (node.hostname,)
    if key == "node.ip":
        return lambda node: (node.addr,)
    if key == "node.role":
        return lambda node: (node.role,)
    if key == "node.platform.os":
        return lambda node: (node.platform.os,)
    if key == "node.platform.arch":
        return lambda node: (normalize_arch(node.platform.arch),)
    for prefix in LABEL_PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            label = key[len(prefix) :]
            if prefix == "node.labels.":
                return lambda node: _label(node.labels, label)
            return lambda node: _label(node.engine_labels, label)
    return None


def _label(labels: dict[str, str], name: str) -> tuple[str, ...]:
    value = labels.get(name)
    return () if value is None else (value,)


def _classic_getter(key: str) -> Getter:
    if key == "node":
        return lambda node: (node.hostname, node.id)
    swarm = _swarm_getter(key)
    if swarm is not None:
        return swarm

    def engine_then_operator_label(node: NodeView) -> tuple[str, ...]:
        value = node.engine_labels.get(key, node.labels.get(key))
        return () if value is None else (value,)

    return engine_then_operator_label


def _split(body: str, *, text: str, allowed: str) -> tuple[str, str, str]:
    """`key==~value` -> (key, "==~", value), whitespace around the operator allowed."""
    match = re.search(r"(==|!=)(~?)", body)
    if match is None:
        bad = re.search(r"(<=|>=|=|<|>|~)", body)
        found = f"operator {bad.group(1)!r}" if bad else "no operator"
        raise ConstraintError(f"{text!r}: {found}; use one of {allowed}")
    key = body[: match.start()].strip()
    value = body[match.end() :].strip()
    operator = match.group(1) + match.group(2)
    if not key:
        raise ConstraintError(f"{text!r}: missing key before {operator!r}")
    if not value:
        raise ConstraintError(f"{text!r}: missing value after {operator!r}")
    if value.startswith(("=", "~")):
        raise ConstraintError(f"{text!r}: unknown operator {operator + value[0]!r}; use {allowed}")
    return key, operator, value


# --- rules --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Constraint:
    """One parsed constraint. `matches(node)` applies it, operator included."""

    text: str
    key: str
    operator: Literal["==", "!="]
    value: str
    soft: bool
    syntax: Literal["swarm", "classic"]
    _get: Getter
    _match: Matcher

    def matches(self, node: NodeView) -> bool:
        found = any(self._match(candidate) for candidate in self._get(node))
        return found if self.operator == "==" else not found

    def __str__(self) -> str:
        return self.text


def parse_constraint(text: str) -> Constraint:
    """Parse either syntax; raise `ConstraintError` naming the bad key or operator."""
    stripped = text.strip()
    allowed = ", ".join(OPERATORS)
    if stripped.startswith(CLASSIC_PREFIX):
        key, operator, value = _split(stripped[len(CLASSIC_PREFIX) :], text=text, allowed=allowed)
        if not _CLASSIC_KEY.fullmatch(key):
            raise ConstraintError(f"{text!r}: invalid key {key!r}; use letters, digits and . _ - /")
        if key.startswith(("node.", "engine.")) and key != "node":
            _check_swarm_key(key, text=text)
        get = _classic_getter(key)
        match = _address(value, text=text) if key == "node.ip" else _pattern(value, text=text)
        syntax: Literal["swarm", "classic"] = "classic"
    else:
        key, operator, value = _split(stripped, text=text, allowed=allowed)
        swarm_get = _check_swarm_key(key, text=text)
        get = swarm_get
        match = _address(value, text=text) if key == "node.ip" else _exact(value)
        if key == "node.platform.arch":
            match = _exact(normalize_arch(value))
        syntax = "swarm"
    return Constraint(
        text=stripped,
        key=key,
        operator="==" if operator.startswith("==") else "!=",
        value=value,
        soft=operator.endswith("~"),
        syntax=syntax,
        _get=get,
        _match=match,
    )


def _check_swarm_key(key: str, *, text: str) -> Getter:
    getter = _swarm_getter(key)
    if getter is None:
        known = ", ".join((*SWARM_KEYS, "node.labels.<key>", "engine.labels.<key>"))
        raise ConstraintError(
            f"{text!r}: unknown constraint key {key!r}; known keys: {known} "
            f"(or the classic form constraint:<label>==<value>)"
        )
    return getter


def validate_constraints(texts: list[str] | tuple[str, ...]) -> None:
    """Raise `ConstraintError` for the first bad constraint: for service creation."""
    for text in texts:
        parse_constraint(text)


@dataclass(frozen=True, eq=False)
class Affinity:
    """`affinity:service==web`: co-locate with (or, with `!=`, away from) what runs."""

    text: str
    key: Literal["service", "image"]
    operator: Literal["==", "!="]
    value: str
    soft: bool
    _match: Matcher

    def matches(self, node: NodeView) -> bool:
        if self.key == "service":
            found = any(
                count > 0 and self._match(name) for name, count in node.tasks_by_service.items()
            )
        else:
            found = any(
                self._match(image) or self._match(_repository(image)) for image in node.images
            )
        return found if self.operator == "==" else not found

    def __str__(self) -> str:
        return self.text


def _repository(image: str) -> str:
    """`registry:5000/redis:7@sha256:...` -> `registry:5000/redis`."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def parse_affinity(text: str) -> Affinity:
    stripped = text.strip()
    if not stripped.startswith(AFFINITY_PREFIX):
        raise ConstraintError(
            f"{text!r}: an affinity reads affinity:<key>==<value>, with key one of "
            f"{', '.join(AFFINITY_KEYS)}"
        )
    key, operator, value = _split(
        stripped[len(AFFINITY_PREFIX) :], text=text, allowed=", ".join(OPERATORS)
    )
    if key not in AFFINITY_KEYS:
        raise ConstraintError(
            f"{text!r}: unknown affinity key {key!r}; known keys: {', '.join(AFFINITY_KEYS)}"
        )
    return Affinity(
        text=stripped,
        key="service" if key == "service" else "image",
        operator="==" if operator.startswith("==") else "!=",
        value=value,
        soft=operator.endswith("~"),
        _match=_pattern(value, text=text),
    )


@dataclass(frozen=True, eq=False)
class Preference:
    """`spread=node.labels.zone`: spread a service's tasks over the values of a label."""

    text: str
    key: str
    _get: Getter

    def value_of(self, node: NodeView) -> str:
        """The node's value for this key; nodes without it share the value ""."""
        values = self._get(node)
        return values[0] if values else ""


def parse_preference(text: str) -> Preference:
    stripped = text.strip()
    key = stripped
    for prefix in ("spread=", "spread:"):
        if stripped.startswith(prefix):
            key = stripped[len(prefix) :].strip()
    getter = _swarm_getter(key)
    if getter is None:
        raise ConstraintError(
            f"{text!r}: a placement preference spreads over a node key, e.g. "
            f"spread=node.labels.zone; unknown key {key!r}"
        )
    return Preference(text=stripped, key=key, _get=getter)
