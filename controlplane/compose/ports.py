"""Compose `ports` entries, short and long syntax, as the service spec's `PortConfig`s.

Short: `"80"`, `"8080:80"`, `"8080:80/udp"`, `"8000-8002:8000-8002"`,
`"127.0.0.1:8080:80"`. Long: a mapping with `target`, `published`, `protocol` and `mode`
(`ingress`, the routing mesh and the default, or `host`: only on nodes running a task).

Swarm mode publishes on every address, so a host IP is dropped with a note (Docker does
the same); shoal knows tcp and udp only, so `sctp` is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.models import PortConfig
from controlplane.models.service import PublishMode

_PORTS = r"\d+(?:-\d+)?"  # a port or a range
_SHORT = re.compile(
    rf"^(?:(?P<ip>\[[^\]]*\]|[^:\[\]]+):(?=(?:{_PORTS})?:))?"  # host IP, if two colons follow
    rf"(?:(?P<published>(?:{_PORTS})?):)?"
    rf"(?P<target>{_PORTS})"
    r"(?:/(?P<protocol>[a-zA-Z]+))?$"
)
PROTOCOLS = ("tcp", "udp")
MODES = tuple(mode.value for mode in PublishMode)


@dataclass
class ParsedPorts:
    ports: list[PortConfig] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings: what was dropped, and why


def parse_port(entry: Any) -> ParsedPorts:
    """One `ports` item; `ValueError` with the reason when it cannot be read."""
    if isinstance(entry, bool):
        raise ValueError(f"{entry!r} is not a port")
    if isinstance(entry, int):
        return ParsedPorts(ports=[_port(target=entry)])
    if isinstance(entry, str):
        return _short(entry)
    if isinstance(entry, Mapping):
        return _long(entry)
    raise ValueError(f"{entry!r} is not a port")


def _short(text: str) -> ParsedPorts:
    match = _SHORT.match(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a port mapping; write TARGET, PUBLISHED:TARGET or "
            "PUBLISHED:TARGET/udp (e.g. 8080:80)"
        )
    parsed = ParsedPorts()
    if match.group("ip"):
        parsed.notes.append(
            f"host IP {match.group('ip')} dropped: swarm mode publishes on every address"
        )
    protocol = _protocol(match.group("protocol") or "tcp")
    targets = _range(match.group("target"))
    published_text = match.group("published") or ""
    published: list[int | None] = list(_range(published_text)) if published_text else []
    if published and len(published) != len(targets):
        raise ValueError(
            f"{text!r}: the published range has {len(published)} ports and the target "
            f"range {len(targets)}; they must be the same length"
        )
    for index, target in enumerate(targets):
        parsed.ports.append(
            _port(
                target=target,
                published=published[index] if published else None,
                protocol=protocol,
            )
        )
    return parsed


def _long(entry: Mapping[str, Any]) -> ParsedPorts:
    parsed = ParsedPorts()
    if "target" not in entry:
        raise ValueError("a port mapping needs `target`, the container's port")
    target = _number(entry["target"], "target")
    published = entry.get("published")
    mode = str(entry.get("mode") or PublishMode.INGRESS.value)
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of: {', '.join(MODES)}")
    protocol = _protocol(str(entry.get("protocol") or "tcp"))
    if entry.get("host_ip"):
        parsed.notes.append(
            f"host_ip {entry['host_ip']} dropped: swarm mode publishes on every address"
        )
    if published in (None, ""):
        parsed.ports.append(_port(target=target, protocol=protocol, mode=mode))
        return parsed
    published_ports = _range(str(published))
    if len(published_ports) != 1:
        raise ValueError(f"published {published!r}: a range needs the short syntax")
    parsed.ports.append(
        _port(target=target, published=published_ports[0], protocol=protocol, mode=mode)
    )
    return parsed


def _port(
    *,
    target: int,
    published: int | None = None,
    protocol: str = "tcp",
    mode: str = PublishMode.INGRESS.value,
) -> PortConfig:
    for number in (target, published):
        if number is not None and not 1 <= number <= 65535:
            raise ValueError(f"port {number} is out of range (1-65535)")
    return PortConfig(target=target, published=published, protocol=protocol, mode=PublishMode(mode))


def _protocol(text: str) -> str:
    lowered = text.lower()
    if lowered not in PROTOCOLS:
        raise ValueError(f"protocol {text!r} is not supported; use tcp or udp")
    return lowered


def _number(value: Any, what: str) -> int:
    if isinstance(value, bool) or not re.fullmatch(r"\d+", str(value).strip()):
        raise ValueError(f"{what} {value!r} is not a port number")
    return int(str(value).strip())


def _range(text: str) -> list[int]:
    first, sep, last = text.partition("-")
    start = int(first)
    end = int(last) if sep else start
    if end < start:
        raise ValueError(f"port range {text!r} ends before it starts")
    if end - start > 1000:
        raise ValueError(f"port range {text!r} is longer than 1000 ports")
    return list(range(start, end + 1))
