from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from discovery import Store, open_store


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()
