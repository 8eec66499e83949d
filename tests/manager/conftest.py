"""`shoal manager` processes for the tests, on loopback ports from `free_port()`.

Each runs the real command line (`python -c "...main()" manager ...`, so the tests do
not depend on the console script being installed) with its own log file, and is ready
once `/health` answers.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.process import ServerProcess, free_port

REPO = Path(__file__).resolve().parents[2]
SHOAL = [sys.executable, "-c", "from controlplane.cli import main; main()"]


def http(
    method: str, url: str, *, token: str | None = None, body: object | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class ManagerProcess(ServerProcess):
    def __init__(self, *, name: str, discovery: str, log_dir: Path, lease_ttl: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            name=name,
            argv=[
                *SHOAL,
                "manager",
                "--discovery",
                discovery,
                "--listen",
                f"127.0.0.1:{self.port}",
                "--lease-ttl",
                str(lease_ttl),
                "--id",
                name,
            ],
            log_dir=log_dir,
            ready=self._healthy,
            env={"PYTHONPATH": str(REPO)},
            start_timeout=60,
        )

    def _healthy(self) -> bool:
        try:
            status, _ = http("GET", f"{self.url}/health")
        except OSError:
            return False
        return status == 200

    def health(self) -> dict[str, Any]:
        status, body = http("GET", f"{self.url}/health")
        assert status == 200, body
        assert isinstance(body, dict)
        return body

    def call(
        self, method: str, path: str, *, token: str | None = None, body: object = None
    ) -> tuple[int, Any]:
        return http(method, f"{self.url}{path}", token=token, body=body)


@pytest.fixture
def start_manager(tmp_path: Path) -> Iterator[Any]:
    """`start_manager(name, discovery, lease_ttl=...)`: a started manager, stopped after."""
    started: list[ManagerProcess] = []

    def start(
        name: str, discovery: str, *, lease_ttl: float = 2.0, wait: bool = True
    ) -> ManagerProcess:
        process = ManagerProcess(
            name=name, discovery=discovery, log_dir=tmp_path / "logs", lease_ttl=lease_ttl
        )
        started.append(process)
        process.start(wait=wait)
        return process

    yield start
    for process in started:
        process.stop()
