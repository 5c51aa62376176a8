"""Errors of the management API: one JSON shape for every failure.

``{"error": {"type": "not_found", "message": "virtual key 'x' not found", "field": null}}``
(``details`` lists every problem when a body has several). Statuses: 400 for a malformed
request (JSON syntax, query parameters), 401/403 for auth, 404 for the entity named in the
path, 409 for duplicates, deletes that would orphan and changes to what the config file
manages (``type: managed_by_config``), 422 for an invalid body field or a reference to an
unknown id (``field`` names it), 503 when the API or the database is down.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from tollway.store.database import DatabaseUnavailable, describe_error
from tollway.store.entities import EntityError

log = logging.getLogger(__name__)

_TYPES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 422: "invalid_field", 500: "internal_error", 503: "unavailable"}


class ApiError(Exception):
    """An error response with a message a person can act on."""

    def __init__(self, status: int, message: str, *, field: str | None = None,
                 details: list[dict[str, str]] | None = None, headers: Mapping[str, str] | None = None,
                 kind: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind  # the body's ``type`` when more precise than the status's
        self.message = message
        self.field = field
        self.details = details
        self.headers = dict(headers or {})


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, f"{what} {ident!r} not found")


def conflict(message: str) -> ApiError:
    return ApiError(409, message)


def invalid(field: str, message: str) -> ApiError:
    """422 for one body field: ``field`` is its dotted path."""
    return ApiError(422, f"{field}: {message}", field=field, details=[{"field": field, "message": message}])


def bad_request(message: str, field: str | None = None) -> ApiError:
    return ApiError(400, message, field=field)


def from_validation(exc: ValidationError | RequestValidationError, prefix: str = "") -> ApiError:
    """422 naming every invalid field (``prefix`` is prepended to each path)."""
    details = _details(exc.errors(), prefix)
    return _problems(422, details)


def error_response(error: ApiError) -> JSONResponse:
    kind = error.kind or _TYPES.get(error.status, "error")
    body: dict[str, Any] = {"type": kind, "message": error.message, "field": error.field}
    if error.details:
        body["details"] = error.details
    return JSONResponse({"error": body}, status_code=error.status, headers=error.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Render every failure (ours, FastAPI's, the database's) in the one error shape."""

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def request_invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(bad_request("the request body is not valid JSON"))
        in_body = [e for e in errors if tuple(e.get("loc", ()))[:1] == ("body",)]
        if in_body:
            return error_response(_problems(422, _details(in_body, "")))
        return error_response(_problems(400, _details(errors, "")))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such management route: {request.method} {request.url.path} (see /api/docs)"
        return error_response(ApiError(exc.status_code, message, headers=exc.headers))

    async def entity_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, EntityError)
        if exc.field:
            return error_response(invalid(exc.field, exc.message))
        return error_response(ApiError(422, exc.message))

    async def integrity_error(request: Request, exc: Exception) -> JSONResponse:
        # Explicit checks give better messages; this catches the race they cannot see.
        return error_response(conflict(f"the change conflicts with existing data: {describe_error(exc)}"))

    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("management API: database unavailable: %s", exc)
        return error_response(ApiError(503, f"the config store is unavailable: {describe_error(exc)}"))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("management API: %s %s failed", request.method, request.url.path)
        return error_response(ApiError(500, f"internal error ({type(exc).__name__}); see the gateway's log"))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, request_invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(EntityError, entity_error)
    app.add_exception_handler(IntegrityError, integrity_error)
    app.add_exception_handler(OperationalError, database_down)
    app.add_exception_handler(DatabaseUnavailable, database_down)
    # A server that is down refuses the connection before the driver can wrap the error.
    for unreachable in (OSError, InterfaceError, PoolTimeout):
        app.add_exception_handler(unreachable, database_down)
    app.add_exception_handler(Exception, unexpected)


def _problems(status: int, details: list[dict[str, str]]) -> ApiError:
    summary = "; ".join(f"{d['field']}: {d['message']}" if d["field"] else d["message"] for d in details[:5])
    if len(details) > 5:
        summary += f"; and {len(details) - 5} more"
    field = details[0]["field"] if len(details) == 1 else None
    return ApiError(status, summary or "invalid request", field=field or None, details=details)


def _details(errors: Iterable[Any], prefix: str) -> list[dict[str, str]]:
    details = []
    for error in errors:
        loc = [part for part in error.get("loc", ()) if part not in ("body", "query", "path", "header")]
        field = _path([*([prefix] if prefix else []), *loc])
        details.append({"field": field, "message": _message(error)})
    return details


def _path(parts: list[Any]) -> str:
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not str(part).startswith(("function-", "model-")):  # pydantic's internal steps
            path = f"{path}.{part}" if path else str(part)
    return path


def _message(error: Mapping[str, Any]) -> str:
    if error.get("type") == "extra_forbidden":
        return "unknown field (check the spelling)"
    if error.get("type") == "missing":
        return "required"
    message = str(error.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message
