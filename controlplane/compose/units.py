"""Compose's value syntaxes: durations (`1m30s`), sizes (`512M`), CPUs, and numbers as text.

After interpolation many numbers arrive as strings (`replicas: ${N}`), which the schema
allows; these parsers accept both and raise `ValueError` with a sentence naming what was
expected, e.g. "'five' is not an integer". Durations follow Go's syntax (what compose
files are written in); sizes follow Docker's, where `m` and `mb` are both mebibytes.
"""

from __future__ import annotations

import re
from typing import Any

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)$", re.IGNORECASE)
_SIZE_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")


def duration(value: Any) -> float:
    """`"1m30s"` -> 90.0; `"500ms"` -> 0.5; `0` or `"0"` -> 0.0. Seconds."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a duration such as 10s, 1m30s or 500ms")
    if isinstance(value, int | float):
        if value == 0:
            return 0.0
        raise ValueError(f"{value!r} needs a unit: write {value}s for seconds")
    text = value.strip()
    if text == "0":
        return 0.0
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        raise ValueError(f"{value!r} needs a unit: write {text}s for seconds")
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f"{value!r} is not a duration such as 10s, 1m30s or 500ms")
    return total


def size(value: Any) -> int:
    """`"512M"`, `"1.5g"`, `"1gb"`, `"256MiB"`, or plain bytes -> bytes (powers of 1024)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size such as 512M or 1G")
    if isinstance(value, int) and value >= 0:
        return value
    match = _SIZE.match(str(value).strip())
    if match is None:
        raise ValueError(f"{value!r} is not a size such as 512M or 1G")
    return int(float(match.group(1)) * 1024 ** _SIZE_POWERS[match.group(2).lower()])


def nano_cpus(value: Any) -> int:
    """`0.5` or `"0.5"` -> 500_000_000 (CPUs in billionths, as the service spec counts)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number of CPUs such as 0.5 or 2")
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number of CPUs such as 0.5 or 2") from None
    if cpus < 0 or cpus != cpus:
        raise ValueError(f"{value!r} is not a number of CPUs such as 0.5 or 2")
    return round(cpus * 1e9)


def integer(value: Any, *, minimum: int = 0) -> int:
    """An int or a string holding one; at least `minimum`."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        number = int(value)
    else:
        raise ValueError(f"{value!r} is not an integer")
    if number < minimum:
        raise ValueError(f"{number} is less than {minimum}")
    return number


def ratio(value: Any) -> float:
    """A number from 0 to 1, or a string holding one."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number from 0 to 1")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number from 0 to 1") from None
    if not 0 <= number <= 1:
        raise ValueError(f"{value!r} is not a number from 0 to 1")
    return number


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} is not true or false")
