"""Control API of the mock upstream (`/_mock/...`), used by tests directly, never through
the gateway. Control requests are neither recorded, counted nor subject to faults.

- `GET|POST /_mock/settings`: read / merge settings (unknown fields are a 400).
- `GET|POST|DELETE /_mock/faults`: list / enqueue one fault (or a list of them) / clear.
- `GET /_mock/requests`: the last 1000 API requests, oldest first (`?path=` filters by
  substring); header names are lower-cased.
- `GET /_mock/stats`: counters (see `MockStats`) and `open_connections`, which includes
  the connection asking.
- `POST /_mock/reset`: clear faults, requests and counters; restore the start settings.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from tollway.testing.mock_http import STATE_KEY
from tollway.testing.mock_state import Fault, MockConfigError


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


def _problem(message: str) -> web.Response:
    return _json({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}, 400)


async def _read_json(request: web.Request) -> Any:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise MockConfigError("the body is not valid JSON") from exc


async def get_settings(request: web.Request) -> web.Response:
    return _json(request.app[STATE_KEY].settings.to_dict())


async def update_settings(request: web.Request) -> web.Response:
    settings = request.app[STATE_KEY].settings
    try:
        changes = await _read_json(request)
        if not isinstance(changes, dict):
            raise MockConfigError("settings must be a JSON object")
        settings.merge(changes)
    except MockConfigError as exc:
        return _problem(str(exc))
    return _json(settings.to_dict())


async def list_faults(request: web.Request) -> web.Response:
    return _json([fault.to_dict() for fault in request.app[STATE_KEY].faults])


async def add_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        data = await _read_json(request)
        faults = [Fault.from_json(item) for item in (data if isinstance(data, list) else [data])]
    except (MockConfigError, TypeError) as exc:
        return _problem(str(exc))
    state.faults.extend(faults)
    return _json([fault.to_dict() for fault in state.faults])


async def clear_faults(request: web.Request) -> web.Response:
    request.app[STATE_KEY].faults.clear()
    return _json([])


async def list_requests(request: web.Request) -> web.Response:
    recorded = request.app[STATE_KEY].requests
    path = request.query.get("path")
    return _json([r for r in recorded if path is None or path in r["path"]])


async def get_stats(request: web.Request) -> web.Response:
    return _json(request.app[STATE_KEY].stats_dict())


async def reset(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.reset()
    return _json({"settings": state.settings.to_dict()})


def add_control_routes(app: web.Application) -> None:
    """Register the `/_mock/...` routes on `app`."""
    app.router.add_get("/_mock/settings", get_settings)
    app.router.add_post("/_mock/settings", update_settings)
    app.router.add_get("/_mock/faults", list_faults)
    app.router.add_post("/_mock/faults", add_faults)
    app.router.add_delete("/_mock/faults", clear_faults)
    app.router.add_get("/_mock/requests", list_requests)
    app.router.add_get("/_mock/stats", get_stats)
    app.router.add_post("/_mock/reset", reset)
