"""The Engine's multiplexed stream: each chunk is an 8-byte header, then the payload.

The header is the stream (1 stdout, 2 stderr), three zero bytes, and the payload's
length as a 4-byte big-endian number. A client without a TTY (`Config.Tty` false)
splits the two streams apart by it (the CLI's `stdcopy`).
"""

from __future__ import annotations

import struct

STREAM_IDS = {"stdout": 1, "stderr": 2}
MEDIA_TYPE = "application/vnd.docker.multiplexed-stream"


def frame(stream: str, payload: bytes) -> bytes:
    return struct.pack(">BxxxI", STREAM_IDS[stream], len(payload)) + payload


def log_payload(line: str, time: str | None) -> bytes:
    """One log line as `docker logs` prints it: the time first when asked for."""
    return (f"{time} {line}\n" if time else f"{line}\n").encode()
