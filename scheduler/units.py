"""Human units for explanations: "512 MiB", "1.5 GiB", "0.5 CPUs", "3 nodes"."""

from __future__ import annotations

_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def _trim(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_bytes(count: int) -> str:
    """Binary units with at most one decimal: 536870912 -> "512 MiB"."""
    value = float(count)
    unit = _BINARY_UNITS[0]
    for unit in _BINARY_UNITS:
        if abs(value) < 1024 or unit == _BINARY_UNITS[-1]:
            break
        value /= 1024
    return f"{_trim(value, 1)} {unit}"


def format_cpus(nano_cpus: int) -> str:
    """500_000_000 -> "0.5 CPUs"; 1_000_000_000 -> "1 CPU"."""
    text = _trim(nano_cpus / 1e9, 2)
    return f"{text} CPU" if text == "1" else f"{text} CPUs"


def nodes_phrase(count: int, singular: str, plural: str) -> str:
    """`nodes_phrase(1, "lacks", "lack")` -> "1 node lacks"; with 2 -> "2 nodes lack"."""
    if count == 1:
        return f"1 node {singular}"
    return f"{count} nodes {plural}"


def count_nodes(count: int) -> str:
    """1 -> "1 node"; 3 -> "3 nodes"."""
    return "1 node" if count == 1 else f"{count} nodes"
