"""No route is ungoverned by accident: every route the server answers (from its routing
tables: the hot-path table, the prefix-matched routes, the management API's and the UI's)
is either governed or listed in `tollway.server.route_policy.EXEMPTIONS`, and governance
is checked by behaviour, not by name:

- model routes: no key → 401 (identity); a key's request limit holds (limits); a
  request-log row names the route and the key, and the key's counter moved (accounting);
- management API routes: no admin token → 401;
- UI routes: no session → to the login page.

A new route without a sample request here and without an exemption fails the first test.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from tests.integration.test_governance import key, key_limits
from tests.integration.test_media_routes import wav
from tests.support.gateway import RunningGateway, mock_providers
from tollway.governance.model import request_counter
from tollway.server.route_policy import EXEMPT_ROUTES, EXEMPTIONS, IDENTITY
from tollway.store.tables import RequestLog
from tollway.testing.mock_bedrock_auth import MOCK_ACCESS_KEY_ID, MOCK_SECRET_ACCESS_KEY

HELLO = [{"role": "user", "content": "Hello"}]
ANTHROPIC = {"anthropic-version": "2023-06-01"}
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
ADMIN_TOKEN = "admin-token-routes-0123456789abcdef"
GEMINI_MODEL = "gemini/gemini-2.0-flash"
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
BEDROCK_MODEL = "bedrock%2Fus.anthropic.claude-3-5-haiku-20241022-v1%3A0"  # quoted whole, as the AWS SDKs do
BEDROCK_BODY = {"messages": [{"role": "user", "content": [{"text": "Hi"}]}], "inferenceConfig": {"maxTokens": 5}}


@dataclass(frozen=True)
class Sample:
    """A request that the route must govern; ``logged``: its route in the request log."""

    logged: str
    json: dict[str, Any] | None = None
    form: dict[str, Any] | None = None  # a file is a (filename, bytes) tuple
    headers: dict[str, str] = field(default_factory=dict)
    stored: bool = False  # on a stored response: `{id}` is a response the key made first
    # on a batch or file: `{id}` is one the key made first ("file", "batch", "message_batch")
    made: str | None = None

    @property
    def setup_requests(self) -> int:
        """Requests the key spends making its `{id}` (uploading a file, submitting a 1-line batch)."""
        return 1 if self.stored or self.made in ("file", "message_batch") else 2 if self.made == "batch" else 0


BATCH_LINE = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "openai/gpt-4o-mini", "messages": HELLO, "max_tokens": 5}}
BATCH_FILE = ("batch.jsonl", json.dumps(BATCH_LINE).encode())
MESSAGE_BATCH = {"requests": [{"custom_id": "a", "params": {"model": "anthropic/claude-sonnet-4-5", "max_tokens": 5,
                                                          "messages": HELLO}}]}


def _audio_form(model: str) -> dict[str, Any]:
    return {"model": model, "file": ("a.wav", wav(1.0))}


SAMPLES: dict[str, Sample] = {
    "POST /v1/chat/completions": Sample("chat", {"model": "openai/gpt-4o-mini", "messages": HELLO}),
    "POST /chat/completions": Sample("chat", {"model": "openai/gpt-4o-mini", "messages": HELLO}),
    "POST /v1/completions": Sample("completions", {"model": "openai/gpt-3.5-turbo-instruct", "prompt": "Hi",
                                                   "max_tokens": 5}),
    "POST /v1/embeddings": Sample("embeddings", {"model": "openai/text-embedding-3-small", "input": "Hi"}),
    "POST /v1/messages": Sample("messages", {"model": "anthropic/claude-sonnet-4-5", "max_tokens": 10,
                                             "messages": HELLO}, headers=ANTHROPIC),
    "POST /v1/messages/count_tokens": Sample("count_tokens", {"model": "anthropic/claude-sonnet-4-5",
                                                              "messages": HELLO}, headers=ANTHROPIC),
    "POST /v1/responses": Sample("responses", {"model": "openai/gpt-4o-mini", "input": "Hi"}),
    "POST /v1/responses/input_tokens": Sample("responses_input_tokens", {"model": "openai/gpt-4o-mini", "input": "Hi"}),
    "GET /v1/responses/{id}": Sample("responses.get", stored=True),
    "DELETE /v1/responses/{id}": Sample("responses.delete", stored=True),
    "POST /v1/responses/{id}/cancel": Sample("responses.cancel", stored=True),
    "GET /v1/responses/{id}/input_items": Sample("responses.input_items", stored=True),
    "POST /v1/images/generations": Sample("images.generations", {"model": "openai/dall-e-3", "prompt": "a"}),
    "POST /v1/images/edits": Sample("images.edits", form={"model": "openai/gpt-image-1", "prompt": "a",
                                                          "image": ("a.png", PNG)}),
    "POST /v1/audio/transcriptions": Sample("audio.transcriptions", form=_audio_form("openai/whisper-1")),
    "POST /v1/audio/translations": Sample("audio.translations", form=_audio_form("openai/whisper-1")),
    "POST /v1/audio/speech": Sample("audio.speech", {"model": "openai/tts-1", "voice": "alloy", "input": "Hi"}),
    "POST /v1/moderations": Sample("moderations", {"model": "openai/omni-moderation-latest", "input": "Hi"}),
    "POST /v1/files": Sample("files", form={"purpose": "batch", "file": BATCH_FILE}),
    "GET /v1/files/{id}": Sample("files.get", made="file"),
    "GET /v1/files/{id}/content": Sample("files.content", made="file"),
    "DELETE /v1/files/{id}": Sample("files.delete", made="file"),
    "POST /v1/batches": Sample("batches", {"input_file_id": "{file}", "endpoint": "/v1/chat/completions",
                                           "completion_window": "24h"}, made="file"),
    "GET /v1/batches": Sample("batches.list"),
    "GET /v1/batches/{id}": Sample("batches.get", made="batch"),
    "POST /v1/batches/{id}/cancel": Sample("batches.cancel", made="batch"),
    "POST /v1/messages/batches": Sample("batches", MESSAGE_BATCH, headers=ANTHROPIC),
    "GET /v1/messages/batches": Sample("batches.list", headers=ANTHROPIC),
    "GET /v1/messages/batches/{id}": Sample("batches.get", headers=ANTHROPIC, made="message_batch"),
    "GET /v1/messages/batches/{id}/results": Sample("batches.results", headers=ANTHROPIC, made="message_batch"),
    "POST /v1/messages/batches/{id}/cancel": Sample("batches.cancel", headers=ANTHROPIC, made="message_batch"),
    "DELETE /v1/messages/batches/{id}": Sample("batches.delete", headers=ANTHROPIC, made="message_batch"),
    # Google's own routes; {model} is the path's model, on the gemini provider.
    "POST /v1beta/models/{model}:generateContent": Sample("generate_content", GEMINI_BODY),
    "POST /v1beta/models/{model}:streamGenerateContent": Sample("generate_content", GEMINI_BODY),
    "POST /v1/models/{model}:generateContent": Sample("generate_content", GEMINI_BODY),
    "POST /v1/models/{model}:streamGenerateContent": Sample("generate_content", GEMINI_BODY),
    # Bedrock's own routes; {modelId} is the path's model, on the bedrock provider.
    "POST /model/{modelId}/converse": Sample("converse", BEDROCK_BODY),
    "POST /model/{modelId}/converse-stream": Sample("converse", BEDROCK_BODY),
}


def _area(route: str) -> str:
    path = route.split(" ", 1)[1]
    return "api" if path.startswith("/api") else "ui" if path == "/ui" or path.startswith("/ui/") else "model"


def _key_value(index: int) -> str:
    return f"tw-route-{index:02d}-0123456789abcdefghijklmnop"


@pytest.fixture
def governed(gateway, mock) -> RunningGateway:
    """Keys enforced; one key per sampled route, allowed one request more than its setup takes."""
    keys = [key(_key_value(i), id=f"route-{i:02d}", rate_limit={
        "request_max_limit": _allowed(route, sample), "request_reset_duration": "1h"})
        for i, (route, sample) in enumerate(SAMPLES.items())]
    providers = mock_providers(mock.url, gemini={"type": "gemini", "base_url": mock.url,
                                                 "keys": [{"value": "AIza-test-gemini"}]},
                               bedrock={"type": "bedrock", "base_url": mock.url, "region": "us-east-1",
                                        "aws_access_key_id": MOCK_ACCESS_KEY_ID,
                                        "aws_secret_access_key": MOCK_SECRET_ACCESS_KEY})
    return gateway({"providers": providers, "enforce_virtual_keys": True, "admin_token": ADMIN_TOKEN,
                    "governance": {"virtual_keys": keys}})


def _allowed(route: str, sample: Sample) -> int:
    """The key's request limit: its setup, one request admitted (a deleted file is gone: a
    second is made for the last request), so that the last request meets the limit."""
    twice = route.startswith("DELETE") and (sample.stored or sample.made == "file")
    return sample.setup_requests * (2 if twice else 1) + 1


def test_every_route_is_governed_or_exempt(governed) -> None:
    served = governed.app.served_routes()
    assert len(served) == len(set(served)), "a route is listed twice"
    unaccounted = [route for route in served if _area(route) == "model" and route not in SAMPLES
                   and route not in EXEMPT_ROUTES]
    assert not unaccounted, (f"routes with no governance check here and no exemption in "
                             f"tollway.server.route_policy.EXEMPTIONS: {unaccounted}")
    assert not set(SAMPLES) - set(served), "samples of routes the server does not answer"
    assert not EXEMPT_ROUTES - set(served), "exemptions of routes the server does not answer"
    assert {"POST /api/governance/virtual-keys", "GET /ui/logs"} <= set(served)  # the mounted apps are enumerated


async def _send(session: aiohttp.ClientSession, running: RunningGateway, route: str, sample: Sample | None,
                key_value: str | None, response_id: str = "x") -> tuple[int, Any]:
    method, path = route.split(" ", 1)
    headers = dict(sample.headers) if sample else {}
    if key_value:
        headers["Authorization"] = f"Bearer {key_value}"
    data: Any = None
    if sample is not None and sample.form is not None:
        data = aiohttp.FormData()
        for name, value in sample.form.items():
            if isinstance(value, tuple):
                data.add_field(name, value[1], filename=value[0])
            else:
                data.add_field(name, value)
    url = running.url + path.replace("{id}", response_id).replace("{model}", GEMINI_MODEL).replace(
        "{modelId}", BEDROCK_MODEL)
    body = sample.json if sample is not None else None
    if body is not None and body.get("input_file_id") == "{file}":
        body = {**body, "input_file_id": response_id}
    async with session.request(method, url, json=body, data=data, headers=headers, allow_redirects=False) as response:
        text = await response.read()
        return response.status, text


async def _make(session: aiohttp.ClientSession, running: RunningGateway, sample: Sample, key_value: str) -> str:
    """The `{id}` of the sample's request: a response, file or batch the key made first."""
    if sample.stored:
        return await _create_response(session, running, key_value)
    if sample.made is None:
        return "x"
    auth = {"Authorization": f"Bearer {key_value}"}
    if sample.made == "message_batch":
        async with session.post(running.v1 + "/messages/batches", json=MESSAGE_BATCH,
                                headers={**auth, **ANTHROPIC}) as response:
            assert response.status == 200, await response.text()
            return (await response.json())["id"]
    form = aiohttp.FormData()
    form.add_field("purpose", "batch")
    form.add_field("file", BATCH_FILE[1], filename=BATCH_FILE[0])
    async with session.post(running.v1 + "/files", data=form, headers=auth) as response:
        assert response.status == 200, await response.text()
        file_id = (await response.json())["id"]
    if sample.made == "file":
        return file_id
    async with session.post(running.v1 + "/batches", json={"input_file_id": file_id, "endpoint":
                            "/v1/chat/completions", "completion_window": "24h"}, headers=auth) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["id"]


async def _create_response(session: aiohttp.ClientSession, running: RunningGateway, key_value: str) -> str:
    async with session.post(running.v1 + "/responses", json={"model": "openai/gpt-4o-mini", "input": "Hi"},
                            headers={"Authorization": f"Bearer {key_value}"}) as response:
        assert response.status == 200
        return (await response.json())["id"]


async def test_model_routes_check_identity_hold_limits_and_account(governed) -> None:
    running = governed
    async with aiohttp.ClientSession() as session:
        for index, (route, sample) in enumerate(SAMPLES.items()):
            value = _key_value(index)
            twice = route.startswith("DELETE") and (sample.stored or sample.made == "file")
            ids = [await _make(session, running, sample, value) for _ in range(2 if twice else 1)]
            status, body = await _send(session, running, route, sample, None, ids[0])
            assert status == 401 and b"virtual_key_required" in body, (route, status, body)
            status, body = await _send(session, running, route, sample, value, ids[0])
            assert status not in (401, 402, 403, 429) and status < 500, (route, status, body)
            status, body = await _send(session, running, route, sample, value, ids[-1])
            assert status == 429 and b"request_limited" in body, (route, status, body)
            limits = key_limits(running, value)
            assert running.counters()[request_counter(limits.rate_limit.id)].used == limits.rate_limit.request_max_limit

    async def logged() -> list[tuple[str | None, str | None, int]]:
        await running.runtime.log_writer.flush()
        async with running.runtime.db.session() as session:
            rows = await session.scalars(select(RequestLog).where(RequestLog.virtual_key_id.is_not(None)))
            return [(row.virtual_key_id, row.route, row.status) for row in rows]

    rows = running.call(logged())
    for index, (route, sample) in enumerate(SAMPLES.items()):
        mine = [(name, status) for key_id, name, status in rows if key_id == f"route-{index:02d}"]
        assert (sample.logged, 429) in mine, (route, mine)
        # Admitted and logged (a cancel of a finished response is the provider's 400, still counted).
        assert any(name == sample.logged and status not in (401, 402, 403, 429) for name, status in mine), (route, mine)


async def test_exempt_model_routes_that_keep_identity_refuse_a_missing_key(governed) -> None:
    async with aiohttp.ClientSession() as session:
        for exemption in EXEMPTIONS:
            if _area(exemption.route) != "model" or IDENTITY in exemption.skips:
                continue
            status, body = await _send(session, governed, exemption.route, None, None)
            assert status == 401, (exemption.route, status, body)


async def test_every_management_route_needs_the_admin_token(governed) -> None:
    routes = [route for route in governed.app.served_routes() if _area(route) == "api" and route not in EXEMPT_ROUTES]
    assert len(routes) > 20
    async with aiohttp.ClientSession() as session:
        for route in routes:
            method, path = route.split(" ", 1)
            url = governed.url + "".join(part if not part.startswith("{") else "x" for part in _segments(path))
            body = {} if method in ("POST", "PUT", "PATCH") else None
            async with session.request(method, url, json=body) as response:
                assert response.status == 401, (route, response.status, await response.text())


async def test_every_ui_page_needs_a_session(governed) -> None:
    routes = [route for route in governed.app.served_routes() if _area(route) == "ui" and route not in EXEMPT_ROUTES]
    assert len(routes) > 10
    async with aiohttp.ClientSession() as session:
        for route in routes:
            method, path = route.split(" ", 1)
            url = governed.url + "".join(part if not part.startswith("{") else "1" for part in _segments(path))
            async with session.request(method, url, allow_redirects=False) as response:
                assert response.status == 303, (route, response.status)
                assert response.headers["location"].startswith("/ui/login"), route


def _segments(path: str) -> list[str]:
    """``path`` cut so that each ``{param}`` (with a ``:type``) is a piece of its own."""
    pieces: list[str] = []
    rest = path
    while "{" in rest:
        before, _, after = rest.partition("{")
        name, _, rest = after.partition("}")
        pieces += [before, "{" + name + "}"]
    return [*pieces, rest]
