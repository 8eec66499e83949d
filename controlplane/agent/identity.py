"""Who this node is: its id, its cluster and its store, kept in the state directory.

A node id is made once, the first time an agent runs with a state directory, and kept
in `<state-dir>/node.json` so that a restarted agent comes back as the same node and
adopts what it was running. The file also records the cluster id and the discovery URL
learnt at join, so that later starts talk to the store without asking a manager again.
The URL can carry credentials, hence mode 0600 (and 0700 for a directory we create).

Two agents must never share an id: that is checked at registration (see `heartbeat`),
not here, because only the store knows who else is alive.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

NODE_FILE = "node.json"


class IdentityError(Exception):
    """The state directory's identity cannot be read or written; the message says why."""


class Identity(BaseModel):
    """The contents of `node.json`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: int = 1
    node_id: str
    cluster_id: str
    discovery: str


def new_node_id() -> str:
    """A fresh node id: 25 characters of lowercase letters and digits, like swarm's."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(25))


def new_instance() -> str:
    """A random id for one agent process, written into its heartbeat document."""
    return secrets.token_hex(8)


def node_file(state_dir: Path) -> Path:
    return state_dir / NODE_FILE


def load_identity(state_dir: Path) -> Identity | None:
    """The saved identity, or None when this state directory has never joined."""
    path = node_file(state_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IdentityError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return Identity.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise IdentityError(
            f"{path} is not a valid node identity ({where}: {first['msg']}); "
            f"remove it to join as a new node"
        ) from None


def save_identity(state_dir: Path, identity: Identity) -> None:
    """Write `node.json` atomically with mode 0600, creating the directory (0700)."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".node.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(identity.model_dump(), out, indent=2)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, node_file(state_dir))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise IdentityError(f"cannot write {node_file(state_dir)}: {exc.strerror or exc}") from None
