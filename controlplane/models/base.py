"""The common base of every stored document."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict


class Document(BaseModel):
    """A JSON document kept in the store; `version` is the schema version."""

    model_config = ConfigDict(extra="forbid", frozen=False)

    version: int = 1

    def dump(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def load(cls, raw: bytes) -> Self:
        return cls.model_validate_json(raw)
