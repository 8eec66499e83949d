"""Placeholder until the dockerd harness lands (being written this session)."""

from __future__ import annotations

import pytest

from tests.harness.process import require_binary


@pytest.fixture
def dockerd_url() -> str:
    require_binary("dockerd-not-built", why="harness not built yet")
    return ""
