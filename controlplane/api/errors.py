"""How refusals become HTTP answers: one table from control errors to status codes.

Every 4xx body is `{"detail": ...}`. A refused field (ours or pydantic's) is a 422 whose
detail lists `{"loc", "msg", "type"}` entries, the same shape FastAPI gives for a
schema error, so a client reads both the same way. A store that does not answer is a
503 (nothing was written; retry), never a 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from controlplane.api.control.errors import (
    Ambiguous,
    Conflict,
    ControlError,
    Invalid,
    NotFound,
    StoreDown,
    Unauthorized,
)
from discovery import InvalidArgument, StoreUnavailable

STATUS: dict[type[ControlError], int] = {
    NotFound: status.HTTP_404_NOT_FOUND,
    Ambiguous: status.HTTP_400_BAD_REQUEST,
    Conflict: status.HTTP_409_CONFLICT,
    Unauthorized: status.HTTP_401_UNAUTHORIZED,
    StoreDown: status.HTTP_503_SERVICE_UNAVAILABLE,
}


def _control_error(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, Invalid):
        detail = [{"loc": list(exc.loc), "msg": exc.message, "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422)
    code = next(
        (code for kind, code in STATUS.items() if isinstance(exc, kind)),
        status.HTTP_400_BAD_REQUEST,
    )
    headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
    return JSONResponse({"detail": str(exc)}, status_code=code, headers=headers)


def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 without the rejected input echoed back (it may be a token), and a
    sentence, not a parser's words, when the body as a whole is not a JSON object."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {
            "loc": list(error.get("loc", ())),
            "msg": _body_message(error, request) or error.get("msg", ""),
            "type": error.get("type", ""),
        }
        for error in errors
    ]
    return JSONResponse({"detail": detail}, status_code=422)


#: JSON's names for what a body was instead of an object.
_JSON_KINDS = {
    list: "an array",
    str: "a string",
    bool: "true or false",
    int: "a number",
    float: "a number",
}


def _body_message(error: Mapping[str, Any], request: Request) -> str | None:
    """What is wrong with a body that is not a JSON object; None for a field's error."""
    loc = tuple(error.get("loc", ()))
    if not loc or loc[0] != "body":
        return None
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error") or "it does not parse"
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        return f"the body is not valid JSON: {reason}{where}"
    if len(loc) == 1 and error.get("type") == "missing":
        return "the body is missing: send a JSON object with Content-Type: application/json"
    if len(loc) == 1 and error.get("type") in ("model_attributes_type", "dict_type"):
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            sent = f"not {media}" if media else "it had none"
            return f"send the body as a JSON object with Content-Type: application/json ({sent})"
        given = error.get("input")
        kind = next((name for t, name in _JSON_KINDS.items() if isinstance(given, t)), None)
        return f"the body must be a JSON object{f', not {kind}' if kind else ''}"
    return None


def _store_unavailable(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": f"the discovery store did not answer ({exc}); nothing was written, retry"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
    )


def _store_refused(_: Request, exc: Exception) -> JSONResponse:
    detail = [
        {"loc": ["body"], "msg": f"the store refuses this value: {exc}", "type": "value_error"}
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ControlError, _control_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(InvalidArgument, _store_refused)
