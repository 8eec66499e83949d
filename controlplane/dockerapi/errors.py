"""Errors in Docker's shape: `{"message": "..."}` with the Engine's status codes.

The docker CLI prints `Error response from daemon: <message>` for any of them, so the
message is the whole user interface: it names the field, the object, or what shoal does
not support.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from controlplane.agent.api.client import AgentError, AgentNotFound, AgentUnsupported
from controlplane.api.control.errors import (
    Ambiguous,
    Conflict,
    ControlError,
    Invalid,
    NotFound,
)
from discovery import StoreUnavailable


class DockerError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def not_supported(what: str) -> DockerError:
    return DockerError(501, f"{what} is not supported by shoal")


def no_such_container(ref: str) -> DockerError:
    return DockerError(404, f"No such container: {ref}")


def _answer(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


def _docker(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DockerError)
    return _answer(exc.status, exc.message)


def _control(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, NotFound):
        return _answer(404, str(exc))
    if isinstance(exc, Conflict):
        return _answer(409, str(exc))
    if isinstance(exc, Invalid):
        field = ".".join(str(part) for part in exc.loc if part != "body")
        return _answer(400, f"{field}: {exc.message}" if field else exc.message)
    if isinstance(exc, Ambiguous):
        return _answer(400, str(exc))
    return _answer(400, str(exc))


def _agent(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, AgentNotFound):
        return _answer(404, str(exc))
    if isinstance(exc, AgentUnsupported):
        return _answer(501, f"{exc} (not supported by shoal for this node's runtime)")
    return _answer(503, f"cannot reach the container's node: {exc}")


def _validation(_: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    return _answer(400, "; ".join(parts) or "invalid request")


def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return _answer(exc.status_code, str(exc.detail))


def _store(_: Request, exc: Exception) -> JSONResponse:
    return _answer(503, f"the discovery store did not answer ({exc}); nothing was written, retry")


def install(app: FastAPI) -> None:
    app.add_exception_handler(DockerError, _docker)
    app.add_exception_handler(ControlError, _control)
    app.add_exception_handler(AgentError, _agent)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(StoreUnavailable, _store)
