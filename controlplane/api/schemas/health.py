"""Body of `/health`."""

from __future__ import annotations

from pydantic import BaseModel


class Health(BaseModel):
    status: str = "ok"
    manager_id: str
    leader: bool
    initialised: bool
    version: str
