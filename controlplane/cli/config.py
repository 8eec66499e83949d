"""The user's shoal config file: which manager to talk to, and the API token for it.

`~/.config/shoal/config.json` (or `$XDG_CONFIG_HOME/shoal/config.json`; `SHOAL_CONFIG`
names another file), written by `shoal swarm init` and `shoal up`, read by every command
that talks to a manager. It holds the API token in clear, so it is written with mode 0600
in a directory created 0700, atomically (a reader never sees half a file). Keys:

- `host`: the manager's URL, e.g. `http://127.0.0.1:2377`;
- `token`: the API token for that manager's cluster;
- `join_tokens`: `{"worker": ..., "manager": ...}` as last printed, because the manager
  keeps only their hashes and cannot show them again (`swarm join-token`).

Keys this module does not know are kept as they are, so other tools may add their own.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_ENV = "SHOAL_CONFIG"


class ConfigError(Exception):
    """The config file exists but cannot be used; the message names the file."""


def config_path() -> Path:
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "shoal" / "config.json"


@dataclass
class Config:
    host: str | None = None
    token: str | None = None
    join_tokens: dict[str, str] = field(default_factory=dict)
    other: dict[str, Any] = field(default_factory=dict)  # keys of other tools, kept

    def to_json(self) -> dict[str, Any]:
        data = dict(self.other)
        for key, value in (("host", self.host), ("token", self.token)):
            if value is not None:
                data[key] = value
        if self.join_tokens:
            data["join_tokens"] = dict(self.join_tokens)
        return data


def load_config(path: Path | None = None) -> Config:
    """The saved config; an empty one when there is no file."""
    path = path or config_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Config()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); fix or remove it") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} should hold a JSON object; fix or remove it")
    joins = raw.pop("join_tokens", {})
    return Config(
        host=_text(raw.pop("host", None)),
        token=_text(raw.pop("token", None)),
        join_tokens={str(k): str(v) for k, v in joins.items()} if isinstance(joins, dict) else {},
        other=raw,
    )


def save_config(config: Config, path: Path | None = None) -> Path:
    """Write `config` with mode 0600 (atomic replace); returns the path written."""
    path = path or config_path()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(config.to_json(), out, indent=2, sort_keys=True)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
