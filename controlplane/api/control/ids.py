"""Object ids: 25 lowercase letters and digits, like swarm mode's.

Long enough never to collide (129 bits), short enough to read; a unique prefix of one is
accepted wherever an id is (`shoal node inspect 3fa`).
"""

from __future__ import annotations

import re
import secrets

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
ID_LENGTH = 25
#: What a node id supplied by an agent may look like: one key segment, no slash.
NODE_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")


def new_id() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(ID_LENGTH))
