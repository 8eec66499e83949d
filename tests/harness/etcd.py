"""Placeholder until the etcd harness lands (being written this session)."""

from __future__ import annotations

import pytest

from tests.harness.process import require_binary


@pytest.fixture
def etcd_url() -> str:
    require_binary("etcd-not-built", why="harness not built yet")
    return ""
