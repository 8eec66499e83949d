"""Fixtures every test package shares: a fresh discovery URL per test, per backend.

`memory_url` and `file_url` need nothing; `etcd_url` and `consul_url` come from the
harness plugins, which start real servers once per session on loopback.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.harness.etcd", "tests.harness.consul", "tests.harness.dockerd"]

BACKENDS = ("memory", "file", "etcd", "consul")


def unique(stem: str = "t") -> str:
    return f"{stem}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def memory_url() -> str:
    return f"memory://{unique()}"


@pytest.fixture
def file_url(tmp_path: Path) -> str:
    return f"file://{tmp_path}/store"


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty cluster prefix on each backend in turn."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """Commands run in-process (typer's CliRunner) set up logging on a stream that the
    runner closes afterwards; later tests' log records would then fail to print."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
