"""Shapes shared by every resource: the error body, documented once for OpenAPI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Request(BaseModel):
    """Base of request bodies: unknown fields are refused (422 naming them)."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every 4xx and 5xx: `detail` is a sentence, or for a 422 a list of
    `{"loc": [...], "msg": ..., "type": ...}` naming each refused field."""

    detail: str | list[dict[str, Any]]


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": description}
    for code, description in (
        (401, "No API token, or not this cluster's"),
        (404, "No such object"),
        (409, "The cluster's state refuses the request"),
        (503, "The discovery store did not answer; nothing was written"),
    )
}
