"""The Docker API app: version prefixes, Docker's error shape, and the rest refused.

Paths are served unversioned and under `/v1.24/` .. `/v1.41/`, as the Engine does; a
client that asks for a newer version than 1.41 is told so (400), which is what makes
the docker CLI negotiate down after its `/_ping` (its `Api-Version` header says 1.41).
Every answer carries `Api-Version` and `Server`. Any other path or method answers 501
`{"message": "<METHOD> <path> is not supported by shoal"}`.
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controlplane.api.context import ApiContext
from controlplane.dockerapi import containers, errors, images, system
from controlplane.version import __version__

_VERSIONED = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")
MIN_MINOR = 24
MAX_MINOR = 41

#: What each unsupported family of calls is, in the message the docker CLI prints.
UNSUPPORTED = (
    ("/containers/", "/exec", "docker exec"),
    ("/containers/", "/attach", "attaching to a container (docker run without -d, docker attach)"),
    ("/exec/", "", "docker exec"),
    ("/build", "", "docker build"),
    ("/images/", "/push", "docker push"),
    ("/networks", "", "the networks API (docker network)"),
    ("/volumes", "", "the volumes API (docker volume)"),
    ("/swarm", "", "swarm mode's API (use the shoal CLI)"),
    ("/services", "", "swarm mode's API (use the shoal CLI)"),
    ("/nodes", "", "swarm mode's API (use the shoal CLI)"),
)


class VersionPrefix:
    """Strips `/v1.NN` from the path; refuses versions outside 1.24..1.41 the Engine's way."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            match = _VERSIONED.match(scope["path"])
            if match:
                major, minor = int(match.group(1)), int(match.group(2))
                if major != 1 or minor > MAX_MINOR:
                    await _refuse(
                        send,
                        f"client version {major}.{minor} is too new. Maximum supported API "
                        f"version is 1.{MAX_MINOR}",
                    )
                    return
                if minor < MIN_MINOR:
                    await _refuse(
                        send,
                        f"client version {major}.{minor} is too old. Minimum supported API "
                        f"version is 1.{MIN_MINOR}, please upgrade your client to a newer version",
                    )
                    return
                scope = {**scope, "path": match.group(3), "raw_path": match.group(3).encode()}

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"api-version", f"1.{MAX_MINOR}".encode()))
                headers.append((b"server", f"shoal/{__version__}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


async def _refuse(send: Send, message: str) -> None:
    response = JSONResponse({"message": message}, status_code=400)
    await send({"type": "http.response.start", "status": 400, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def _unsupported_what(method: str, path: str) -> str:
    for start, end, what in UNSUPPORTED:
        if path.startswith(start) and path.endswith(end):
            return what
    return f"{method} {path}"


def create_docker_app(context: ApiContext) -> FastAPI:
    app = FastAPI(title="shoal Docker API", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.context = context
    errors.install(app)
    for router in (system.router, containers.router, images.router):
        app.include_router(router)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"])
    async def unsupported(request: Request, path: str) -> None:
        raise errors.not_supported(_unsupported_what(request.method, f"/{path}"))

    app.add_middleware(VersionPrefix)
    return app
