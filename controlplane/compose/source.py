"""Reading a compose file as data that remembers where each value came from.

PyYAML gives plain dicts and lists and forgets the lines; an error that says "replicas
is not an integer" without a line makes the user hunt for it. So the file is composed
into PyYAML's node graph (whose marks hold the lines) and built into `Mapping` and
`Sequence`: ordinary `dict` and `list` subclasses (so the JSON schema validator and the
converter read them like any other data) that also keep the `Location` of each key and
item. Merging several files and interpolating variables copy those locations along, so
a problem found at the end still points at the line that caused it.

Scalars follow YAML 1.2's core schema, as Docker's own loader (go-yaml v3) does, not
PyYAML's YAML 1.1 defaults: `yes`, `no`, `on` and `off` stay strings, `0755` is the
decimal 755, and an unquoted port pair such as `22:22` stays the text "22:22" instead of
YAML 1.1's base-60 number 1342. A key written twice in one mapping is an error (YAML 1.1
silently keeps the last one, which hides typos).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from controlplane.compose.problems import ComposeError, Location, Path, Problem

#: More nodes than any real compose file has; reached by alias bombs ("billion laughs").
MAX_NODES = 200_000


class Mapping(dict[str, Any]):
    """A YAML mapping; `where[key]` is the location of that key."""

    def __init__(self, location: Location) -> None:
        super().__init__()
        self.location = location
        self.where: dict[str, Location] = {}

    def set(self, key: str, value: Any, location: Location) -> None:
        self[key] = value
        self.where[key] = location


class Sequence(list[Any]):
    """A YAML sequence; `where[i]` is the location of item i."""

    def __init__(self, location: Location) -> None:
        super().__init__()
        self.location = location
        self.where: list[Location] = []

    def add(self, value: Any, location: Location) -> None:
        self.append(value)
        self.where.append(location)


def locate(root: Any, path: Path) -> Location | None:
    """The location of the deepest part of `path` that exists in `root`."""
    found: Location | None = root.location if isinstance(root, Mapping | Sequence) else None
    node = root
    for part in path:
        in_mapping = isinstance(node, Mapping) and isinstance(part, str) and part in node
        in_list = isinstance(node, Sequence) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_mapping or in_list):
            break
        found, node = node.where[part], node[part]
    return found


# --- YAML 1.2 core scalars -------------------------------------------------------------

_YAML11_TAGS = {
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:value",
}
_CORE = (
    # (tag, pattern, possible first characters; "" is the empty scalar)
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ("~", "n", "N", "")),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", tuple("tTfF")),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", tuple("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        tuple("-+.0123456789"),
    ),
)


class _Loader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core schema's implicit types."""

    yaml_implicit_resolvers = {  # noqa: RUF012  (PyYAML's own class attribute)
        first: [(tag, regex) for tag, regex in resolvers if tag not in _YAML11_TAGS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


for _tag, _pattern, _first in _CORE:
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


def _core_int(loader: yaml.SafeLoader, node: Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _core_float(loader: yaml.SafeLoader, node: Node) -> float:
    text = str(loader.construct_scalar(node)).lower()  # type: ignore[arg-type]
    if text.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    if text == ".nan":
        return math.nan
    return float(text)


_Loader.add_constructor("tag:yaml.org,2002:int", _core_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _core_float)


# --- building ----------------------------------------------------------------------------


class _Builder:
    def __init__(self, loader: _Loader, name: str) -> None:
        self.loader = loader
        self.name = name
        self.count = 0
        self.problems: list[Problem] = []

    def at(self, node: Node) -> Location:
        return Location(self.name, node.start_mark.line + 1)

    def build(self, node: Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise ComposeError(
                [Problem(self.at(node), path, f"more than {MAX_NODES} values (alias loop?)")]
            )
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            items = Sequence(self.at(node))
            for index, child in enumerate(node.value):
                items.add(self.build(child, (*path, index)), self.at(child))
            return items
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: MappingNode, path: Path) -> Mapping:
        result = Mapping(self.at(node))
        own: dict[str, Location] = {}
        merged: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merged.extend(self._merge_pairs(value_node, path))
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in own:
                self.problems.append(
                    Problem(
                        self.at(key_node),
                        (*path, key),
                        f"key {key!r} is already defined at line {own[key].line}",
                    )
                )
                continue
            own[key] = self.at(key_node)
        # Keys from `<<: *anchor` come first; the mapping's own keys override them.
        for key_node, value_node in [*merged, *self._own_pairs(node)]:
            key = self._key(key_node, path)
            if key is not None:
                result.set(key, self.build(value_node, (*path, key)), self.at(key_node))
        return result

    def _own_pairs(self, node: MappingNode) -> Iterable[tuple[Node, Node]]:
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, ScalarNode):
                continue
            if key_node.value in seen:
                continue
            seen.add(key_node.value)
            yield key_node, value_node

    def _merge_pairs(self, value: Node, path: Path) -> list[tuple[Node, Node]]:
        sources = value.value if isinstance(value, SequenceNode) else [value]
        pairs: list[tuple[Node, Node]] = []
        for source in reversed(sources):  # earlier sources win over later ones
            if not isinstance(source, MappingNode):
                self.problems.append(
                    Problem(self.at(source), path, "`<<` merges mappings only (an alias to one)")
                )
                continue
            pairs.extend((k, v) for k, v in source.value if k.tag != "tag:yaml.org,2002:merge")
        return pairs

    def _key(self, node: Node, path: Path) -> str | None:
        if isinstance(node, ScalarNode):
            return str(node.value)
        self.problems.append(Problem(self.at(node), path, "a key must be a plain value"))
        return None


def parse(text: str, *, name: str) -> Mapping:
    """Parse one compose file's text; `name` is how problems refer to the file."""
    try:
        loader = _Loader(text)  # refuses characters YAML does not allow, before parsing
    except yaml.reader.ReaderError as exc:
        raise _unreadable(exc, text, name) from None
    try:
        node = loader.get_single_node()
        builder = _Builder(loader, name)
        data = None if node is None else builder.build(node, ())
    except yaml.reader.ReaderError as exc:  # the reader checks the text a chunk at a time
        raise _unreadable(exc, text, name) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ComposeError([Problem(Location(name, line), (), _yaml_message(exc))]) from None
    except yaml.YAMLError as exc:
        raise ComposeError([Problem(Location(name, 1), (), f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if builder.problems:
        raise ComposeError(builder.problems)
    if data is None:
        raise ComposeError([Problem(Location(name, 1), (), "the file is empty")])
    if not isinstance(data, Mapping):
        raise ComposeError(
            [Problem(Location(name, 1), (), "a compose file is a mapping with a `services` key")]
        )
    return data


def _unreadable(exc: yaml.reader.ReaderError, text: str, name: str) -> ComposeError:
    """A character YAML does not allow (a control character, say), with its line."""
    line = text.count("\n", 0, max(exc.position, 0)) + 1
    character = f"#x{exc.character:04x}" if isinstance(exc.character, int) else "a character"
    return ComposeError(
        [Problem(Location(name, line), (), f"{character} is not allowed in a YAML file")]
    )


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's parser words, with the usual cause when it is a common one."""
    problem = exc.problem or "not valid YAML"
    context = f" ({exc.context})" if exc.context else ""
    hint = ""
    if "\\t" in problem or "\t" in problem:
        hint = "; YAML indents with spaces, not tabs"
    elif "block" in problem + context:
        hint = "; check the indentation"
    return f"invalid YAML: {problem}{context}{hint}"
