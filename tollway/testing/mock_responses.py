"""The Responses API of the mock upstream: `POST /v1/responses` (JSON or typed SSE events),
`POST /v1/responses/input_tokens`, and the stored-response routes (`GET`/`DELETE /v1/responses/{id}`, `POST .../cancel`,
`GET .../input_items`), under `/v1` (OpenAI) and `/openai` (Azure: `?api-version=` and an
`api-key` header, the deployment named by the body's `model`).

Responses are stored unless `store: false` (the last 10,000); `previous_response_id` must name a stored one
(its turns count as input). A `background: true` response is stored `queued` and stays so
until cancelled. Content rules are in `mock_responses_build`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tollway.testing import mock_responses_build as build
from tollway.testing.mock_http import (
    MockCall,
    bearer_token,
    endpoint,
    error_response,
    send_json,
    send_sse,
)

STORE_KEY: web.AppKey[dict[str, dict[str, Any]]] = web.AppKey("tollway_mock_responses", dict)
"""Stored responses by id: {"response": ..., "input_items": [...]}."""
_STORED_MAX = 10_000  # the oldest go first: a mock serving a benchmark must not grow without end


def add_responses_routes(app: web.Application) -> None:
    app[STORE_KEY] = {}
    router = app.router
    for prefix in ("/v1", "/openai"):
        router.add_post(f"{prefix}/responses", endpoint(create, "openai"))
        router.add_post(f"{prefix}/responses/input_tokens", endpoint(count_input_tokens, "openai"))
        router.add_get(f"{prefix}/responses/{{id}}", endpoint(retrieve, "openai"))
        router.add_delete(f"{prefix}/responses/{{id}}", endpoint(delete, "openai"))
        router.add_post(f"{prefix}/responses/{{id}}/cancel", endpoint(cancel, "openai"))
        router.add_get(f"{prefix}/responses/{{id}}/input_items", endpoint(list_input_items, "openai"))


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> web.Response:
    return error_response("openai", status, message, param=param, code=code)


def _auth_problem(call: MockCall) -> web.Response | None:
    if call.request.path.startswith("/openai/"):
        if not (call.header("api-key") or bearer_token(call)):
            return _error(401, "Access denied due to missing subscription key.", code="401")
        if not call.request.query.get("api-version"):
            return _error(400, "The api-version query parameter (?api-version=) is required for all requests.",
                          param="api-version", code="MissingApiVersionParameter")
        return None
    if not bearer_token(call):
        return _error(401, "You didn't provide an API key.")
    return None


def _store(call: MockCall) -> dict[str, dict[str, Any]]:
    return call.request.app[STORE_KEY]


async def create(call: MockCall) -> web.StreamResponse:
    """`POST /v1/responses`."""
    problem = _auth_problem(call)
    if problem is not None:
        return problem
    body = call.body
    if call.body_invalid or not isinstance(body, dict):
        return _error(400, "We could not parse the JSON body of your request.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        return _error(400, "Missing required parameter: 'model'.", "model", "missing_required_parameter")
    invalid = _invalid(body)
    if invalid is not None:
        return _error(400, f"Invalid value for '{invalid[0]}': {invalid[1]}", invalid[0], "invalid_type")
    previous = body.get("previous_response_id")
    extra = 0
    if previous is not None:
        stored = _store(call).get(previous) if isinstance(previous, str) else None
        if stored is None:
            return _error(404, f"Previous response with id '{previous}' not found.", "previous_response_id",
                          "previous_response_not_found")
        extra = (stored["response"].get("usage") or {}).get("total_tokens", 0)
    settings = call.state.settings
    number = call.state.next_id()
    answer = build.answer(body, number, settings.completion_tokens, settings.cached_tokens, extra)
    headers = {"x-request-id": f"req_mock{number}"}
    if body.get("background") is True:
        queued = answer.response("queued", None, None)
        _keep(call, answer, queued)
        return await send_json(call, queued, headers)
    if body.get("store", True) is not False:
        _keep(call, answer, answer.final())
    if body.get("stream") is True:
        return await send_sse(call, build.stream_events(answer), headers)
    return await send_json(call, answer.final(), headers)


_FLAGS = ("store", "background", "stream", "parallel_tool_calls")
_EFFORTS = (None, "none", "minimal", "low", "medium", "high", "xhigh")


def _invalid(body: dict[str, Any]) -> tuple[str, str] | None:
    """(field, what is wrong) for a body the real API would refuse, as far as the mock reads it."""
    checks: list[tuple[str, bool, str]] = [
        ("input", _valid_input(body.get("input")), "expected a string or an array of input items"),
        ("instructions", body.get("instructions") is None or isinstance(body["instructions"], str), "expected a string"),
        ("tools", _valid_tools(body.get("tools")), "expected an array of tools, each with a type (and a function's name)"),
        ("tool_choice", body.get("tool_choice") in (None, "auto", "none", "required")
         or isinstance(body.get("tool_choice"), dict), "expected auto, none, required or an object"),
        ("text", _valid_text(body.get("text")),
         "expected an object whose format has a type (and a json_schema's name and schema)"),
        ("reasoning", body.get("reasoning") is None or (isinstance(body["reasoning"], dict)
                                                        and body["reasoning"].get("effort") in _EFFORTS),
         "expected an object with a valid effort"),
        ("max_output_tokens", body.get("max_output_tokens") is None or (_is_int(body["max_output_tokens"])
                                                                       and body["max_output_tokens"] >= 1),
         "expected a positive integer"),
        ("previous_response_id", body.get("previous_response_id") is None or isinstance(body["previous_response_id"], str),
         "expected a string"),
        ("temperature", body.get("temperature") is None or (isinstance(body["temperature"], (int, float))
                                                            and not isinstance(body["temperature"], bool)
                                                            and 0 <= body["temperature"] <= 2), "expected 0 to 2"),
        ("metadata", body.get("metadata") is None or isinstance(body["metadata"], dict), "expected an object"),
        ("user", body.get("user") is None or isinstance(body["user"], str), "expected a string"),
    ]
    checks += [(flag, body.get(flag) is None or isinstance(body[flag], bool), "expected a boolean") for flag in _FLAGS]
    return next(((name, why) for name, ok, why in checks if not ok), None)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_input(value: Any) -> bool:
    if isinstance(value, str):
        return True
    if not isinstance(value, list):
        return False
    return all(isinstance(item, dict) and isinstance(item.get("content", ""), (str, list))
               and isinstance(item.get("role", ""), str) and isinstance(item.get("type", ""), str) for item in value)


def _valid_tools(value: Any) -> bool:
    if value is None:
        return True
    return isinstance(value, list) and all(
        isinstance(tool, dict) and isinstance(tool.get("type"), str)
        and (tool["type"] != "function" or isinstance(tool.get("name"), str)) for tool in value)


def _valid_text(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, dict):
        return False
    fmt = value.get("format")
    if fmt is None:
        return True
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        return False
    return fmt["type"] != "json_schema" or (isinstance(fmt.get("name"), str) and isinstance(fmt.get("schema"), dict))


async def count_input_tokens(call: MockCall) -> web.StreamResponse:
    """`POST /v1/responses/input_tokens`: the input tokens a create request would report."""
    problem = _auth_problem(call)
    if problem is not None:
        return problem
    body = call.body
    if call.body_invalid or not isinstance(body, dict):
        return _error(400, "We could not parse the JSON body of your request.")
    invalid = _invalid(body)
    if invalid is not None:
        return _error(400, f"Invalid value for '{invalid[0]}': {invalid[1]}", invalid[0], "invalid_type")
    answer = build.answer(body, 0, 1, 0, 0)
    return await send_json(call, {"object": "response.input_tokens", "input_tokens": answer.input_tokens})


def _keep(call: MockCall, answer: build.Answer, response: dict[str, Any]) -> None:
    store = _store(call)
    store[answer.id] = {"response": response, "input_items": build.input_items(answer.body, answer.number)}
    if len(store) > _STORED_MAX:
        del store[next(iter(store))]


def _stored(call: MockCall) -> dict[str, Any] | web.Response:
    problem = _auth_problem(call)
    if problem is not None:
        return problem
    response_id = call.request.match_info["id"]
    stored = _store(call).get(response_id)
    if stored is None:
        return _error(404, f"Response with id '{response_id}' not found.", code="not_found")
    return stored


async def retrieve(call: MockCall) -> web.StreamResponse:
    stored = _stored(call)
    return stored if isinstance(stored, web.Response) else await send_json(call, stored["response"])


async def delete(call: MockCall) -> web.StreamResponse:
    stored = _stored(call)
    if isinstance(stored, web.Response):
        return stored
    response_id = stored["response"]["id"]
    del _store(call)[response_id]
    return await send_json(call, {"id": response_id, "object": "response", "deleted": True})


async def cancel(call: MockCall) -> web.StreamResponse:
    stored = _stored(call)
    if isinstance(stored, web.Response):
        return stored
    response = stored["response"]
    if not response.get("background"):
        return _error(400, "Only responses created with background=true can be cancelled.")
    if response["status"] in ("queued", "in_progress"):
        response["status"] = "cancelled"
    return await send_json(call, response)


async def list_input_items(call: MockCall) -> web.StreamResponse:
    stored = _stored(call)
    if isinstance(stored, web.Response):
        return stored
    items = stored["input_items"]
    if call.request.query.get("order", "desc") == "desc":
        items = list(reversed(items))
    return await send_json(call, {"object": "list", "data": items, "has_more": False,
                                  "first_id": items[0]["id"] if items else None,
                                  "last_id": items[-1]["id"] if items else None})
