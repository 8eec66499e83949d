"""Calling a node's agent endpoint from a manager.

The node record (`nodes/<id>`) names the endpoint and its secret; a node without one
(down, hollow, or an agent too old to serve it) is `AgentUnreachable`, as is one that
does not answer. A task the node has no container for is `AgentNotFound`, something
the node's runtime cannot do `AgentUnsupported`; each message says which node.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from controlplane.models import NodeInfo

#: Seconds to wait for an agent that does not answer (logs that follow never time out).
TIMEOUT = 10.0


class AgentError(Exception):
    """A call to an agent endpoint failed; the message names the node."""


class AgentUnreachable(AgentError):
    pass


class AgentNotFound(AgentError):
    pass


class AgentUnsupported(AgentError):
    pass


class AgentClient:
    def __init__(self, node: NodeInfo | None, *, node_id: str, timeout: float = TIMEOUT) -> None:
        self.node_id = node_id
        if node is None:
            raise AgentUnreachable(f"node {node_id} is down")
        if not node.agent_api or not node.agent_secret:
            raise AgentUnreachable(f"node {node.hostname} ({node_id}) serves no agent endpoint")
        self._base = node.agent_api.rstrip("/")
        self._headers = {"Authorization": f"Bearer {node.agent_secret}"}
        self._timeout = timeout
        self._name = f"node {node.hostname} ({node_id})"

    def _client(self, *, read: float | None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self._base,
            headers=self._headers,
            timeout=httpx.Timeout(self._timeout, read=read),
        )

    async def _call(self, method: str, path: str, **params: Any) -> httpx.Response:
        try:
            async with self._client(read=self._timeout) as client:
                response = await client.request(method, path, params=params or None)
        except httpx.HTTPError as exc:
            raise AgentUnreachable(f"{self._name} did not answer: {exc!r}") from None
        self._check(response.status_code, response.content)
        return response

    def _check(self, status: int, body: bytes) -> None:
        if status < 300:
            return
        try:
            detail = str(json.loads(body).get("detail", ""))
        except (ValueError, AttributeError):
            detail = body.decode(errors="replace")[:200]
        if status == 404:
            raise AgentNotFound(f"{self._name}: {detail}")
        if status == 501:
            raise AgentUnsupported(f"{self._name}: {detail}")
        raise AgentUnreachable(f"{self._name} answered {status}: {detail}")

    async def inspect(self, task_id: str) -> dict[str, Any]:
        info: dict[str, Any] = (await self._call("GET", f"/tasks/{task_id}/inspect")).json()
        return info

    async def kill(self, task_id: str, *, signal: str) -> None:
        await self._call("POST", f"/tasks/{task_id}/kill", signal=signal)

    async def stop(self, task_id: str, *, grace: float) -> None:
        await self._call("POST", f"/tasks/{task_id}/stop", t=grace)

    async def images(self) -> list[dict[str, Any]]:
        images: list[dict[str, Any]] = (await self._call("GET", "/images")).json()
        return images

    async def logs(
        self, task_id: str, *, tail: int | None, timestamps: bool, follow: bool
    ) -> AsyncIterator[dict[str, Any]]:
        """`{"stream", "line", "time"}` objects; raises before the first one if the
        call fails, and `AgentUnreachable` if the connection breaks midway."""
        params = {
            "tail": "all" if tail is None else str(tail),
            "timestamps": str(timestamps).lower(),
            "follow": str(follow).lower(),
        }
        try:
            async with (
                self._client(read=None if follow else self._timeout) as client,
                client.stream("GET", f"/tasks/{task_id}/logs", params=params) as response,
            ):
                if response.status_code >= 300:
                    self._check(response.status_code, await response.aread())
                async for text in response.aiter_lines():
                    if text:
                        item: dict[str, Any] = json.loads(text)
                        yield item
        except httpx.HTTPError as exc:
            raise AgentUnreachable(f"{self._name} did not answer: {exc!r}") from None
