"""Several compose files as one: `-c base.yml -c prod.yml`, later files overriding earlier.

The rules are Docker's, in short: mappings merge key by key (recursively); a scalar in a
later file replaces the earlier one; `command`, `entrypoint` and a healthcheck's `test`
are replaced whole (half of one command and half of another is never what anyone
meant); other lists are concatenated without repeats. `environment`, `labels` and
`deploy.labels` may be written as a list (`KEY=VALUE`) or a mapping in either file; they
merge by variable name. Ports are concatenated here; the converter lets a later file's
port replace an earlier one published on the same port (see `convert`).

Every value keeps the location it had in the file it came from.
"""

from __future__ import annotations

from typing import Any

from controlplane.compose.problems import Path
from controlplane.compose.source import Mapping, Sequence

#: Lists a later file replaces instead of extending, by their last key.
REPLACED_LISTS = frozenset({"command", "entrypoint", "test"})

#: Keys whose value is a list of KEY=VALUE or a mapping; merged by KEY.
KEYED_LISTS = frozenset({"environment", "labels", "extra_hosts", "sysctls"})


def merge_files(documents: list[Mapping]) -> Mapping:
    merged = documents[0]
    for document in documents[1:]:
        merged = _merge_mapping(merged, document, ())
    return merged


def _merge_mapping(base: Mapping, override: Mapping, path: Path) -> Mapping:
    result = Mapping(base.location)
    for key, value in base.items():
        result.set(key, value, base.where[key])
    for key, value in override.items():
        if key in result:
            value = _merge_value(result[key], value, (*path, key))
        result.set(key, value, override.where[key])
    return result


def _merge_value(base: Any, override: Any, path: Path) -> Any:
    key = path[-1] if path else ""
    lists = (Mapping, Sequence)
    if key in KEYED_LISTS and isinstance(base, lists) and isinstance(override, lists):
        return _merge_mapping(as_mapping(base), as_mapping(override), path)
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        return _merge_mapping(base, override, path)
    if isinstance(base, Sequence) and isinstance(override, Sequence) and key not in REPLACED_LISTS:
        result = Sequence(base.location)
        for index, item in enumerate(base):
            result.add(item, base.where[index])
        for index, item in enumerate(override):
            if item not in result:
                result.add(item, override.where[index])
        return result
    return override


def as_mapping(value: Mapping | Sequence) -> Mapping:
    """`["A=1", "B"]` -> `{"A": "1", "B": None}`, keeping each item's location."""
    if isinstance(value, Mapping):
        return value
    result = Mapping(value.location)
    for index, item in enumerate(value):
        name, sep, text = str(item).partition("=")
        result.set(name, text if sep else None, value.where[index])
    return result
