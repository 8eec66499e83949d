"""A `shoal manager` process for the tests, on a loopback port from `free_port()`.

It runs the real command line (`python -c "...main()" manager ...`, so the tests do not
depend on the console script being installed) with its own log file, and is ready once
`/health` answers. The manager and e2e suites share it; `node_grace` passes
`--node-grace` (the e2e cluster replaces a down node's tasks after 3 s). `up_process` is
`shoal up` the same way.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.harness.process import ServerProcess, free_port

REPO = Path(__file__).resolve().parents[2]
SHOAL = [sys.executable, "-c", "from controlplane.cli import main; main()"]


def http(
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: object | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """(status, decoded JSON body) of one call; an error body that is not JSON as text."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw) if raw else None
        except ValueError:
            return exc.code, raw.decode(errors="replace")


class ManagerProcess(ServerProcess):
    """One `shoal manager --id NAME`; `start()` it (from `ServerProcess`), `stop()` it."""

    def __init__(
        self,
        *,
        name: str,
        discovery: str,
        log_dir: Path,
        lease_ttl: float,
        node_grace: float | None = None,
        http_timeout: float = 10.0,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.http_timeout = http_timeout
        argv = [
            *SHOAL,
            "manager",
            "--discovery",
            discovery,
            "--listen",
            f"127.0.0.1:{self.port}",
            "--lease-ttl",
            str(lease_ttl),
        ]
        if node_grace is not None:
            argv += ["--node-grace", str(node_grace)]
        super().__init__(
            name=name,
            argv=[*argv, "--id", name],
            log_dir=log_dir,
            ready=self._healthy,
            env={"PYTHONPATH": str(REPO)},
            start_timeout=60,
        )

    def _get_health(self) -> tuple[int, Any]:
        return http("GET", f"{self.url}/health", timeout=self.http_timeout)

    def _healthy(self) -> bool:
        try:
            status, _ = self._get_health()
        except OSError:
            return False
        return status == 200

    def leads(self) -> bool:
        """It answers and says it leads."""
        try:
            status, body = self._get_health()
        except OSError:
            return False
        return status == 200 and bool(body.get("leader"))

    def health(self) -> dict[str, Any]:
        status, body = self._get_health()
        assert status == 200, body
        assert isinstance(body, dict)
        return body

    def call(
        self, method: str, path: str, *, token: str | None = None, body: object = None
    ) -> tuple[int, Any]:
        return http(method, f"{self.url}{path}", token=token, body=body, timeout=self.http_timeout)


def up_process(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> ServerProcess:
    """`shoal up` (not started) on a file store under `tmp_path`, its node on 127.0.0.1, its
    API token saved in `tmp_path / "config.json"`; ready once it says it is up."""
    process = ServerProcess(
        name="shoal-up",
        argv=[
            *SHOAL,
            "up",
            "--data-dir",
            str(tmp_path / "data"),
            "--listen",
            "127.0.0.1:0",
            "--advertise-addr",
            "127.0.0.1",
            *extra,
        ],
        log_dir=tmp_path,
        ready=lambda: "shoal is up" in process.log_path.read_text(errors="replace"),
        env={"PYTHONPATH": str(REPO), "SHOAL_CONFIG": str(tmp_path / "config.json"), **(env or {})},
        start_timeout=60,
    )
    return process
