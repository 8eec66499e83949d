"""`env_file`: variables from files, read on the machine that deploys, as Docker does.

The files are read by the CLI, not by the nodes: their contents go into the service's
environment, so a node never needs the file. Relative paths are taken from the directory
of the first compose file (Docker's working directory for a stack).

Format, one variable a line: `KEY=VALUE`; blank lines and lines starting with `#` are
skipped; a value in matching single or double quotes loses them; `export KEY=VALUE` is
allowed (files shared with a shell); a bare `KEY` takes KEY's value from the deploying
environment and is left out when KEY is not set there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class EnvFileError(ValueError):
    """A file that cannot be read, or a line that is not a variable; `line` from 1."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def read_env_file(path: Path, environ: Mapping[str, str]) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EnvFileError(f"env file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EnvFileError(f"cannot read env file {str(path)!r}: {exc}") from None
    return parse_env(text, environ, name=str(path))


def parse_env(text: str, environ: Mapping[str, str], *, name: str = "env file") -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not _KEY.match(key):
            raise EnvFileError(f"{name}:{number}: {raw.strip()!r} is not KEY=VALUE", line=number)
        if not sep:
            if key in environ:
                values[key] = environ[key]
            continue
        values[key] = _unquote(value.strip())
    return values


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value
