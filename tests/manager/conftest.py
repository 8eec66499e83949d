"""`shoal manager` processes for the manager tests (`tests.harness.manager`), stopped
after each test; calls to them time out after 2 s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.manager import REPO, SHOAL, ManagerProcess, http

__all__ = ["REPO", "SHOAL", "ManagerProcess", "http", "start_manager"]


@pytest.fixture
def start_manager(tmp_path: Path) -> Iterator[Any]:
    """`start_manager(name, discovery, lease_ttl=...)`: a started manager, stopped after."""
    started: list[ManagerProcess] = []

    def start(
        name: str, discovery: str, *, lease_ttl: float = 2.0, wait: bool = True
    ) -> ManagerProcess:
        process = ManagerProcess(
            name=name,
            discovery=discovery,
            log_dir=tmp_path / "logs",
            lease_ttl=lease_ttl,
            http_timeout=2.0,
        )
        started.append(process)
        process.start(wait=wait)
        return process

    yield start
    for process in started:
        process.stop()
