"""Files and batches of the mock upstream: OpenAI's `/v1/files` and `/v1/batches` (also under
`/openai`, Azure's form: `?api-version=` and an `api-key` header) and Anthropic's
`/v1/messages/batches`.

A batch stays `in_progress` until a test completes it through the control route
`POST /_mock/batches/{id}/complete` with an optional JSON body:

- ``status``: the end state (OpenAI: ``completed`` (default), ``failed``, ``expired``;
  Anthropic batches always end as ``ended``);
- ``succeeded``: how many requests (the first ones) produced an answer (default: all);
- ``prompt_tokens`` / ``completion_tokens``: the usage of each answer (default 10 and
  the request's output cap, at most 5).

A cancelled batch ends at once with the requests not yet answered cancelled. Output files
(OpenAI) and results (Anthropic) carry each answer's `usage` like the real APIs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tollway.testing.mock_http import MockCall, bearer_token, endpoint, error_response, send_json
from tollway.testing.mock_media import parse_form

_OPENAI_TERMINAL = ("completed", "failed", "expired", "cancelled")


@dataclass
class _File:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.content), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed"}


@dataclass
class _Batch:
    id: str
    flavor: str  # openai or anthropic
    requests: list[dict[str, Any]]  # OpenAI: the file's lines; Anthropic: the requests
    body: dict[str, Any]
    created_at: int
    status: str = "in_progress"
    answers: list[dict[str, Any] | None] = field(default_factory=list)  # per request, once ended
    output_file_id: str | None = None
    error_file_id: str | None = None
    ended_at: int | None = None


@dataclass
class _Store:
    files: dict[str, _File] = field(default_factory=dict)
    batches: dict[str, _Batch] = field(default_factory=dict)
    ids: int = 0

    def next_id(self, prefix: str) -> str:
        self.ids += 1
        return f"{prefix}{self.ids:06d}"


STORE_KEY: web.AppKey[_Store] = web.AppKey("tollway_mock_batches", _Store)


def add_batch_routes(app: web.Application) -> None:
    app[STORE_KEY] = _Store()
    router = app.router
    for prefix in ("/v1", "/openai"):
        router.add_post(f"{prefix}/files", endpoint(create_file, "openai"))
        router.add_get(f"{prefix}/files/{{id}}", endpoint(retrieve_file, "openai"))
        router.add_get(f"{prefix}/files/{{id}}/content", endpoint(file_content, "openai"))
        router.add_delete(f"{prefix}/files/{{id}}", endpoint(delete_file, "openai"))
        router.add_post(f"{prefix}/batches", endpoint(create_batch, "openai"))
        router.add_get(f"{prefix}/batches", endpoint(list_batches, "openai"))
        router.add_get(f"{prefix}/batches/{{id}}", endpoint(retrieve_batch, "openai"))
        router.add_post(f"{prefix}/batches/{{id}}/cancel", endpoint(cancel_batch, "openai"))
    router.add_post("/v1/messages/batches", endpoint(create_message_batch, "anthropic"))
    router.add_get("/v1/messages/batches", endpoint(list_message_batches, "anthropic"))
    router.add_get("/v1/messages/batches/{id}", endpoint(retrieve_message_batch, "anthropic"))
    router.add_delete("/v1/messages/batches/{id}", endpoint(delete_message_batch, "anthropic"))
    router.add_post("/v1/messages/batches/{id}/cancel", endpoint(cancel_message_batch, "anthropic"))
    router.add_get("/v1/messages/batches/{id}/results", endpoint(message_batch_results, "anthropic"))
    router.add_post("/_mock/batches/{id}/complete", complete)


def _store(call: MockCall) -> _Store:
    return call.request.app[STORE_KEY]


def _openai_error(status: int, message: str, param: str | None = None) -> web.Response:
    return error_response("openai", status, message, param=param)


def _anthropic_error(status: int, message: str) -> web.Response:
    return error_response("anthropic", status, message)


def _openai_auth(call: MockCall) -> web.Response | None:
    if call.request.path.startswith("/openai/"):
        if not (call.header("api-key") or bearer_token(call)):
            return _openai_error(401, "Access denied due to missing subscription key.")
        if not call.request.query.get("api-version"):
            return _openai_error(400, "The api-version query parameter (?api-version=) is required.", "api-version")
        return None
    return None if bearer_token(call) else _openai_error(401, "You didn't provide an API key.")


def _anthropic_auth(call: MockCall) -> web.Response | None:
    if not call.header("x-api-key"):
        return _anthropic_error(401, "x-api-key header is required")
    return None


# -- OpenAI files ------------------------------------------------------------------------------


async def create_file(call: MockCall) -> web.StreamResponse:
    problem = _openai_auth(call)
    if problem is not None:
        return problem
    fields, files = parse_form(call)
    if "file" not in files:
        return _openai_error(400, "Missing required parameter: 'file'.", "file")
    if fields.get("purpose") not in ("batch", "assistants", "fine-tune", "user_data", "vision", "evals"):
        return _openai_error(400, "Invalid value for 'purpose'.", "purpose")
    store = _store(call)
    stored = _File(store.next_id("file-"), "upload.jsonl", fields["purpose"], files["file"], int(time.time()))
    store.files[stored.id] = stored
    return await send_json(call, stored.to_dict())


def _file(call: MockCall) -> _File | web.Response:
    found = _store(call).files.get(call.request.match_info["id"])
    if found is None:
        return _openai_error(404, f"No such File object: {call.request.match_info['id']}", "id")
    return found


async def retrieve_file(call: MockCall) -> web.StreamResponse:
    found = _openai_auth(call) or _file(call)
    return found if isinstance(found, web.Response) else await send_json(call, found.to_dict())


async def file_content(call: MockCall) -> web.StreamResponse:
    found = _openai_auth(call) or _file(call)
    if isinstance(found, web.Response):
        return found
    return web.Response(body=found.content, content_type="application/octet-stream")


async def delete_file(call: MockCall) -> web.StreamResponse:
    found = _openai_auth(call) or _file(call)
    if isinstance(found, web.Response):
        return found
    del _store(call).files[found.id]
    return await send_json(call, {"id": found.id, "object": "file", "deleted": True})


# -- OpenAI batches ----------------------------------------------------------------------------


async def create_batch(call: MockCall) -> web.StreamResponse:
    problem = _openai_auth(call)
    if problem is not None:
        return problem
    body = call.body if isinstance(call.body, dict) else {}
    store = _store(call)
    source = store.files.get(str(body.get("input_file_id")))
    if source is None:
        return _openai_error(400, "Invalid 'input_file_id'.", "input_file_id")
    lines = [orjson.loads(line) for line in source.content.splitlines() if line.strip()]
    if any(line.get("url") != body.get("endpoint") for line in lines):
        return _openai_error(400, "The endpoint of every line must match the batch's 'endpoint'.", "endpoint")
    batch = _Batch(store.next_id("batch_"), "openai", lines, body, int(time.time()))
    store.batches[batch.id] = batch
    return await send_json(call, _openai_batch(batch))


def _openai_batch(batch: _Batch) -> dict[str, Any]:
    done = sum(1 for answer in batch.answers if answer is not None)
    ended = batch.status in _OPENAI_TERMINAL
    return {
        "id": batch.id, "object": "batch", "endpoint": batch.body.get("endpoint"), "errors": None,
        "input_file_id": batch.body.get("input_file_id"), "completion_window": batch.body.get("completion_window"),
        "status": batch.status, "output_file_id": batch.output_file_id, "error_file_id": batch.error_file_id,
        "created_at": batch.created_at, "in_progress_at": batch.created_at, "expires_at": batch.created_at + 86400,
        "completed_at": batch.ended_at if batch.status == "completed" else None,
        "failed_at": batch.ended_at if batch.status == "failed" else None,
        "expired_at": batch.ended_at if batch.status == "expired" else None,
        "cancelled_at": batch.ended_at if batch.status == "cancelled" else None,
        "request_counts": {"total": len(batch.requests), "completed": done,
                           "failed": len(batch.requests) - done if ended else 0},
        "metadata": batch.body.get("metadata"),
    }


def _batch(call: MockCall, flavor: str) -> _Batch | web.Response:
    found = _store(call).batches.get(call.request.match_info["id"])
    if found is None or found.flavor != flavor:
        name = call.request.match_info["id"]
        return (_openai_error(404, f"No batch found with id '{name}'.") if flavor == "openai"
                else _anthropic_error(404, f"No message batch with id '{name}'."))
    return found


async def retrieve_batch(call: MockCall) -> web.StreamResponse:
    found = _openai_auth(call) or _batch(call, "openai")
    return found if isinstance(found, web.Response) else await send_json(call, _openai_batch(found))


async def list_batches(call: MockCall) -> web.StreamResponse:
    problem = _openai_auth(call)
    if problem is not None:
        return problem
    batches = [b for b in reversed(_store(call).batches.values()) if b.flavor == "openai"]
    after = call.request.query.get("after")
    if after:
        ids = [b.id for b in batches]
        batches = batches[ids.index(after) + 1:] if after in ids else []
    limit = int(call.request.query.get("limit", "20"))
    page = batches[:limit]
    return await send_json(call, {"object": "list", "data": [_openai_batch(b) for b in page],
                                  "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None,
                                  "has_more": len(batches) > limit})


async def cancel_batch(call: MockCall) -> web.StreamResponse:
    found = _openai_auth(call) or _batch(call, "openai")
    if isinstance(found, web.Response):
        return found
    if found.status in _OPENAI_TERMINAL:
        return _openai_error(409, f"Cannot cancel a batch with status '{found.status}'.")
    _end(_store(call), found, "cancelled", {"succeeded": 0})
    return await send_json(call, _openai_batch(found))


# -- Anthropic message batches -----------------------------------------------------------------


async def create_message_batch(call: MockCall) -> web.StreamResponse:
    problem = _anthropic_auth(call)
    if problem is not None:
        return problem
    body = call.body if isinstance(call.body, dict) else {}
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        return _anthropic_error(400, "requests: Field required")
    store = _store(call)
    batch = _Batch(store.next_id("msgbatch_"), "anthropic", requests, body, int(time.time()))
    store.batches[batch.id] = batch
    return await send_json(call, _anthropic_batch(batch, call))


def _iso(seconds: int | None) -> str | None:
    return None if seconds is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _anthropic_batch(batch: _Batch, call: MockCall) -> dict[str, Any]:
    ended = batch.status == "ended"
    kinds = [(answer or {}).get("type", "canceled") for answer in batch.answers] if ended else []
    counts = {"processing": 0 if ended else len(batch.requests), "succeeded": kinds.count("succeeded"),
              "errored": kinds.count("errored"), "canceled": kinds.count("canceled"), "expired": kinds.count("expired")}
    results = f"{call.request.scheme}://{call.request.host}/v1/messages/batches/{batch.id}/results"
    return {"id": batch.id, "type": "message_batch", "processing_status": batch.status, "request_counts": counts,
            "ended_at": _iso(batch.ended_at), "created_at": _iso(batch.created_at),
            "expires_at": _iso(batch.created_at + 86400), "archived_at": None,
            "cancel_initiated_at": _iso(batch.ended_at) if "canceled" in kinds else None,
            "results_url": results if ended else None}


async def retrieve_message_batch(call: MockCall) -> web.StreamResponse:
    found = _anthropic_auth(call) or _batch(call, "anthropic")
    return found if isinstance(found, web.Response) else await send_json(call, _anthropic_batch(found, call))


async def list_message_batches(call: MockCall) -> web.StreamResponse:
    problem = _anthropic_auth(call)
    if problem is not None:
        return problem
    batches = [b for b in reversed(_store(call).batches.values()) if b.flavor == "anthropic"]
    data = [_anthropic_batch(b, call) for b in batches[:int(call.request.query.get("limit", "20"))]]
    return await send_json(call, {"data": data, "has_more": len(data) < len(batches),
                                  "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None})


async def cancel_message_batch(call: MockCall) -> web.StreamResponse:
    found = _anthropic_auth(call) or _batch(call, "anthropic")
    if isinstance(found, web.Response):
        return found
    if found.status != "ended":
        _end(_store(call), found, "ended", {"succeeded": 0})
    return await send_json(call, _anthropic_batch(found, call))


async def delete_message_batch(call: MockCall) -> web.StreamResponse:
    found = _anthropic_auth(call) or _batch(call, "anthropic")
    if isinstance(found, web.Response):
        return found
    if found.status != "ended":
        return _anthropic_error(400, "Batch must be ended before it can be deleted.")
    del _store(call).batches[found.id]
    return await send_json(call, {"id": found.id, "type": "message_batch_deleted"})


async def message_batch_results(call: MockCall) -> web.StreamResponse:
    found = _anthropic_auth(call) or _batch(call, "anthropic")
    if isinstance(found, web.Response):
        return found
    if found.status != "ended":
        return _anthropic_error(400, "Batch has not ended yet.")
    lines = [orjson.dumps({"custom_id": request.get("custom_id"), "result": answer or {"type": "canceled"}})
             for request, answer in zip(found.requests, found.answers)]
    return web.Response(body=b"\n".join(lines) + b"\n", content_type="application/binary")


# -- completing a batch ------------------------------------------------------------------------


async def complete(request: web.Request) -> web.Response:
    """`POST /_mock/batches/{id}/complete`: end a batch (see the module's docstring)."""
    store = request.app[STORE_KEY]
    batch = store.batches.get(request.match_info["id"])
    if batch is None:
        return web.json_response({"error": "no such batch"}, status=404)
    options = orjson.loads(await request.read() or b"{}")
    status = options.get("status") or ("completed" if batch.flavor == "openai" else "ended")
    _end(store, batch, status, options)
    return web.json_response({"id": batch.id, "status": batch.status})


def _end(store: _Store, batch: _Batch, status: str, options: dict[str, Any]) -> None:
    succeeded = options.get("succeeded", len(batch.requests) if status in ("completed", "ended") else 0)
    prompt = int(options.get("prompt_tokens", 10))
    batch.answers = [_answer(batch, item, prompt, options.get("completion_tokens")) if index < succeeded else None
                     for index, item in enumerate(batch.requests)]
    batch.status, batch.ended_at = status, int(time.time())
    if batch.flavor == "openai":
        lines = [orjson.dumps({"id": f"batch_req_{index}", "custom_id": item.get("custom_id"), "response": answer,
                               "error": None}) for index, (item, answer) in enumerate(zip(batch.requests, batch.answers))
                 if answer is not None]
        if lines:
            output = _File(store.next_id("file-"), "batch_output.jsonl", "batch_output", b"\n".join(lines) + b"\n",
                           batch.ended_at)
            store.files[output.id] = output
            batch.output_file_id = output.id


def _answer(batch: _Batch, item: dict[str, Any], prompt: int, completion: Any) -> dict[str, Any]:
    body = item.get("body" if batch.flavor == "openai" else "params") or {}
    cap = body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens") or 5
    output = int(completion) if completion is not None else min(int(cap), 5)
    if batch.flavor == "anthropic":
        return {"type": "succeeded", "message": {
            "id": f"msg_{batch.id}", "type": "message", "role": "assistant", "model": body.get("model"),
            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": output}}}
    url = item.get("url")
    if url == "/v1/embeddings":
        usage: dict[str, Any] = {"prompt_tokens": prompt, "total_tokens": prompt}
    elif url == "/v1/responses":
        usage = {"input_tokens": prompt, "output_tokens": output, "total_tokens": prompt + output}
    else:
        usage = {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}
    return {"status_code": 200, "request_id": f"req_{batch.id}",
            "body": {"id": f"chatcmpl-{batch.id}", "object": "chat.completion", "model": body.get("model"),
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                  "finish_reason": "stop"}], "usage": usage}}
