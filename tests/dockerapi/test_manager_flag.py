"""`shoal manager --docker-api`: a bad address or a taken port is one line and exit 2."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.e2e.conftest import REPO, SHOAL


def _manager(tmp_path: Path, docker_api: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SHOAL, "manager", "--discovery", f"file://{tmp_path}/store", "--listen",
         "127.0.0.1:0", "--docker-api", docker_api],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip


def test_a_malformed_address_names_the_option(tmp_path: Path) -> None:
    done = _manager(tmp_path, "nonsense")
    assert done.returncode == 2
    assert "--docker-api" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_taken_port_is_refused_at_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = _manager(tmp_path, f"127.0.0.1:{port}")
    assert done.returncode == 2
    assert f"127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
