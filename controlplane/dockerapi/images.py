"""`/images/json`, over every ready node; pulling, building and pushing are not built.

Each node's agent lists its engine's images; an image on several nodes is listed once
(by id), with the union of its tags. A node that does not answer is left out.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request

from controlplane.agent.api.client import AgentClient, AgentError
from controlplane.api.context import ApiContext
from controlplane.dockerapi.errors import DockerError

log = logging.getLogger(__name__)

router = APIRouter()


async def _node_images(context: ApiContext, node_id: str) -> list[dict[str, Any]]:
    try:
        client = AgentClient(context.view.nodes.get(node_id), node_id=node_id)
        return await client.images()
    except AgentError as exc:
        log.info("images of node %s left out: %s", node_id, exc)
        return []


@router.get("/images/json")
async def list_images(request: Request, all: bool = False) -> list[dict[str, Any]]:
    context: ApiContext = request.app.state.context
    node_ids = sorted(context.view.nodes)
    per_node = await asyncio.gather(*(_node_images(context, n) for n in node_ids))
    merged: dict[str, dict[str, Any]] = {}
    for images in per_node:
        for image in images:
            key = str(image.get("Id", ""))
            if key not in merged:
                merged[key] = dict(image)
                continue
            tags = list(merged[key].get("RepoTags") or [])
            tags += [t for t in image.get("RepoTags") or [] if t not in tags]
            merged[key]["RepoTags"] = tags
    return sorted(merged.values(), key=lambda i: -int(i.get("Created") or 0))


@router.post("/images/create")
async def pull_image(fromImage: str = "", tag: str = "") -> None:
    image = f"{fromImage}:{tag}" if tag else fromImage
    raise DockerError(
        501,
        f"pulling images (here {image!r}) is not supported by shoal: load the image on the "
        "nodes (docker load), then run it again",
    )
