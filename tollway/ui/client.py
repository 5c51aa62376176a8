"""The admin UI's way to the management API: an in-process ASGI call, no network hop.

Every page reads and writes through the same `/api` routes a script would use, so the
UI inherits their validation, audit log, error shapes and live usage; the admin token
stays on the server (the browser only holds an opaque session cookie).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from tollway.api.principal import ACTING_TOKEN_SCOPE_KEY
from tollway.asgi import Message, Scope

log = logging.getLogger(__name__)
Params = Mapping[str, Any]
# The scoped admin token of the UI session being served (None: the bootstrap token). Set
# per UI request by `tollway.ui.app`; the API acts with that token's role and scope.
_acting: ContextVar[str | None] = ContextVar("tollway_ui_acting_token", default=None)


def act_as(token_id: str | None) -> None:
    """Make this request's API calls act as the scoped token ``token_id``."""
    _acting.set(token_id)


class ApiProblem(Exception):
    """A failed management API call, with the message the API gave a person to read."""

    def __init__(self, status: int, message: str, details: list[dict[str, str]] | None = None,
                 field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []
        self.field = field

    @property
    def fields(self) -> set[str]:
        """The body fields the API named as wrong."""
        named = {d["field"] for d in self.details if d.get("field")}
        return named | ({self.field} if self.field else set())


def path(*parts: str) -> str:
    """An API path with each dynamic segment percent-encoded (ids may hold any character)."""
    return "/".join(quote(part, safe="") if index else part for index, part in enumerate(parts))


def _query(params: Params | None) -> bytes:
    if not params:
        return b""
    pairs = []
    for name, value in params.items():
        if value is None or value == "":
            continue
        pairs.append((name, ("true" if value else "false") if isinstance(value, bool) else str(value)))
    return urlencode(pairs).encode()


class ManagementClient:
    """Calls the management ASGI app in-process with the admin token (server-side)."""

    def __init__(self, app: Any, token: str | None) -> None:
        self._app = app
        self._token = token

    async def get(self, route: str, params: Params | None = None) -> dict[str, Any]:
        return await self.request("GET", route, params)

    async def post(self, route: str, body: Any = None, params: Params | None = None) -> dict[str, Any]:
        return await self.request("POST", route, params, body)

    async def put(self, route: str, body: Any, params: Params | None = None) -> dict[str, Any]:
        return await self.request("PUT", route, params, body)

    async def delete(self, route: str, params: Params | None = None) -> dict[str, Any]:
        return await self.request("DELETE", route, params)

    async def request(self, method: str, route: str, params: Params | None = None, body: Any = None,
                      token: str | None = None) -> dict[str, Any]:
        """The JSON answer of ``method route``; raises `ApiProblem` for any error status.
        ``token`` overrides the configured admin token (the login check uses it)."""
        token = self._token if token is None else token
        payload = b"" if body is None else orjson.dumps(body)
        headers = [(b"host", b"tollway-ui"), (b"accept", b"application/json"),
                   (b"content-length", str(len(payload)).encode())]
        if body is not None:
            headers.append((b"content-type", b"application/json"))
        if token:
            headers.append((b"authorization", b"Bearer " + token.encode()))
        scope: Scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": route, "raw_path": route.encode(), "root_path": "",
            "query_string": _query(params), "headers": headers,
            "client": ("127.0.0.1", 0), "server": ("tollway-ui", 80),
        }
        acting = _acting.get()
        if acting is not None and token == self._token:  # only the server's own token may act as another
            scope[ACTING_TOKEN_SCOPE_KEY] = acting
        status, data = await _call(self._app, scope, payload)
        return _decode(method, route, status, data)


async def _call(app: Any, scope: Scope, payload: bytes) -> tuple[int, bytes]:
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    try:
        await app(scope, receive, send)
    except Exception:
        if not status:
            log.exception("admin UI: management API call %s %s failed", scope["method"], scope["path"])
            return 500, b""
    return status, b"".join(chunks)


def _decode(method: str, route: str, status: int, data: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(data) if data else {}  # reports run to thousands of rows: the fast decoder
    except ValueError:  # orjson's decode error is one
        body = None
    if 200 <= status < 300 and isinstance(body, dict):
        return body
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return _raise(status, error)
    if 200 <= status < 300:
        raise ApiProblem(500, f"the management API answered {method} {route} with something that is not JSON")
    raise ApiProblem(status or 500, f"the management API failed on {method} {route} (HTTP {status or 500}); "
                                    "see the gateway's log")


def _raise(status: int, error: dict[str, Any]) -> dict[str, Any]:
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    raise ApiProblem(status, error["message"], details, error.get("field"))
