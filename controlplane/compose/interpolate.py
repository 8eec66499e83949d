"""`${VAR}` substitution in compose files, with the shell-like forms compose supports.

| form | gives |
|---|---|
| `$VAR`, `${VAR}` | VAR's value; an unset VAR gives "" and a warning |
| `${VAR:-default}` | default when VAR is unset or empty |
| `${VAR-default}` | default when VAR is unset |
| `${VAR:?message}` | an error with the message when VAR is unset or empty |
| `${VAR?message}` | an error with the message when VAR is unset |
| `${VAR:+other}` | other when VAR is set and not empty, else "" |
| `${VAR+other}` | other when VAR is set, else "" |
| `$$` | a literal `$` |

Defaults may themselves hold variables (`${A:-${B:-x}}`). Only string values are
touched, never keys, as in Docker's loader. The environment is a mapping passed in, never
read from the process here, so tests and the CLI decide what a file sees.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as AnyMapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.compose.problems import Location, Path, Problem
from controlplane.compose.source import Mapping, Sequence

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class _Failed(Exception):
    """A substitution that cannot be made; the message is the user's."""


@dataclass
class Interpolator:
    """Substitutes variables from `environ`, collecting errors and warnings."""

    environ: AnyMapping[str, str]
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    _unset_warned: set[str] = field(default_factory=set)

    def tree(self, value: Any, path: Path, where: Location | None) -> Any:
        """A copy of `value` with every string substituted; locations are kept."""
        if isinstance(value, Mapping):
            mapping = Mapping(value.location)
            for key, item in value.items():
                location = value.where[key]
                mapping.set(key, self.tree(item, (*path, key), location), location)
            return mapping
        if isinstance(value, Sequence):
            items = Sequence(value.location)
            for index, item in enumerate(value):
                location = value.where[index]
                items.add(self.tree(item, (*path, index), location), location)
            return items
        if isinstance(value, str) and "$" in value:
            try:
                return self.text(value, path=path, where=where)
            except _Failed as exc:
                self.errors.append(Problem(where, path, str(exc)))
                return value
        return value

    def text(self, text: str, *, path: Path = (), where: Location | None = None) -> str:
        out: list[str] = []
        i = 0
        while i < len(text):
            dollar = text.find("$", i)
            if dollar < 0:
                out.append(text[i:])
                break
            out.append(text[i:dollar])
            i = self._one(text, dollar, out, path=path, where=where)
        return "".join(out)

    def _one(
        self, text: str, at: int, out: list[str], *, path: Path, where: Location | None
    ) -> int:
        """Substitute the reference starting at `text[at] == "$"`; return the next index."""
        rest = text[at + 1 :]
        if rest.startswith("$"):
            out.append("$")
            return at + 2
        if rest.startswith("{"):
            end = _closing_brace(text, at + 2)
            if end < 0:
                raise _Failed(f"unterminated ${{...}} in {text!r}; write $$ for a literal $")
            out.append(self._braced(text[at + 2 : end], path=path, where=where))
            return end + 1
        name = _NAME.match(rest)
        if name is None:
            raise _Failed(
                f"'$' must be followed by a name, {{name}} or another '$' in {text!r}; "
                "write $$ for a literal $"
            )
        out.append(self._value(name.group(), path=path, where=where))
        return at + 1 + name.end()

    def _braced(self, body: str, *, path: Path, where: Location | None) -> str:
        name = _NAME.match(body)
        if name is None:
            raise _Failed(f"invalid variable reference ${{{body}}}: expected a name")
        var, rest = name.group(), body[name.end() :]
        if not rest:
            return self._value(var, path=path, where=where)
        operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
        if operator is None:
            raise _Failed(
                f"invalid variable reference ${{{body}}}: after the name use "
                "}, :-, -, :?, ?, :+ or +"
            )
        argument = rest[len(operator) :]
        value = self.environ.get(var)
        missing = value is None or (operator.startswith(":") and value == "")
        if operator in (":-", "-"):
            return self.text(argument, path=path, where=where) if missing else str(value)
        if operator in (":?", "?"):
            if missing:
                detail = self.text(argument, path=path, where=where)
                state = "is not set" if value is None else "is empty"
                raise _Failed(
                    f"required variable {var} {state}" + (f": {detail}" if detail else "")
                )
            return str(value)
        return "" if missing else self.text(argument, path=path, where=where)

    def _value(self, var: str, *, path: Path, where: Location | None) -> str:
        value = self.environ.get(var)
        if value is None:
            if var not in self._unset_warned:
                self._unset_warned.add(var)
                self.warnings.append(
                    Problem(where, path, f"variable {var} is not set; using an empty string")
                )
            return ""
        return value


def _closing_brace(text: str, start: int) -> int:
    """Index of the `}` closing a `${` whose body starts at `start`, or -1."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1
