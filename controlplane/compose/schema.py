"""Validation against the Compose specification's JSON schema, in the user's words.

The schema is not ours: it is the compose-spec project's `compose-spec.json`, as shipped
(and kept current) inside the installed `check-jsonschema` package, at
`check_jsonschema/builtin_schemas/vendor/compose-spec.json`, read with
`importlib.resources`. Using the maintained copy means a file docker accepts is not
refused here for a key we forgot, and a typo is caught by the same rules everywhere.

jsonschema's messages are written for schema authors ("Unevaluated properties are not
allowed"); these are rewritten for people editing a compose file: an unknown key is
named, with the closest known key as a suggestion; a wrong type says what was expected.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterator
from importlib import resources
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no types-jsonschema in the test extras
from jsonschema.exceptions import ValidationError, best_match  # type: ignore[import-untyped]

from controlplane.compose.problems import Path, Problem
from controlplane.compose.source import Mapping, locate

SCHEMA_PACKAGE = "check_jsonschema.builtin_schemas.vendor"
SCHEMA_FILE = "compose-spec.json"

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "empty",
}


@functools.cache
def compose_schema() -> dict[str, Any]:
    """The Compose specification's schema, as installed with check-jsonschema."""
    text = resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator() -> Any:
    schema = compose_schema()
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def schema_problems(document: Mapping) -> list[Problem]:
    """Every way `document` breaks the schema, each at its line."""
    problems: list[Problem] = []
    for error in _validator().iter_errors(document):
        for path, message in _explain(error):
            problems.append(Problem(locate(document, path), path, message))
    return problems


# --- messages ----------------------------------------------------------------------------


def _explain(error: ValidationError) -> Iterator[tuple[Path, str]]:
    path: Path = tuple(error.absolute_path)
    kind = error.validator
    if kind in ("additionalProperties", "unevaluatedProperties"):
        yield from _unknown_keys(error, path)
    elif kind in ("oneOf", "anyOf"):
        yield from _alternatives(error, path)
    elif kind == "type":
        yield path, f"{_show(error.instance)} is not {_types(error.validator_value)}"
    elif kind == "enum":
        allowed = ", ".join(str(value) for value in error.validator_value)
        yield path, f"{_show(error.instance)} is not one of: {allowed}"
    elif kind == "required":
        missing = [key for key in error.validator_value if key not in error.instance]
        for key in missing:
            yield path, f"missing the required key {key!r}"
    elif kind == "uniqueItems":
        yield path, "lists the same item twice"
    else:
        yield path, error.message


def _unknown_keys(error: ValidationError, path: Path) -> Iterator[tuple[Path, str]]:
    instance = error.instance
    if not isinstance(instance, dict):
        return
    schema = error.schema if isinstance(error.schema, dict) else {}
    known = _known_keys(schema)
    patterns = schema.get("patternProperties", {})
    if not known and patterns:  # a mapping of names (services, networks): a bad name
        for key in instance:
            if not any(re.search(pattern, key) for pattern in patterns):
                yield (
                    (*path, key),
                    f"{key!r} is not a valid name (use letters, digits, '.', '_' and '-')",
                )
        return
    for key in instance:
        if key in known or key.startswith("x-"):
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        yield (*path, key), f"unknown key {key!r}{hint}"


def _known_keys(schema: dict[str, Any]) -> set[str]:
    """Property names a schema fragment allows, following `allOf` and local `$ref`s."""
    keys = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        keys |= _known_keys(_resolve(part))
    if "$ref" in schema:
        keys |= _known_keys(_resolve(schema))
    return keys


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    node: Any = compose_schema()
    for part in ref[2:].split("/"):
        node = node[part]
    return node if isinstance(node, dict) else {}


def _alternatives(error: ValidationError, path: Path) -> Iterator[tuple[Path, str]]:
    """A value none of whose allowed forms fit. Forms of another type are set aside: the
    user meant the form their value has, so its own failure is the one to explain."""
    context = list(error.context or ())
    wrong_type = [e for e in context if e.validator == "type" and tuple(e.absolute_path) == path]
    meant = [e for e in context if e not in wrong_type]
    if not meant:
        expected: list[str] = []
        for e in wrong_type:
            expected.extend(_as_list(e.validator_value))
        yield path, f"{_show(error.instance)} is not {_types(expected or ['valid'])}"
        return
    closest = best_match(meant)
    yield from _explain(closest)


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _types(value: Any) -> str:
    names = list(dict.fromkeys(_TYPE_NAMES.get(name, name) for name in _as_list(value)))
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)
