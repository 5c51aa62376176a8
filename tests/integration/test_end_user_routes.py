"""End users on every model route, through the real gateway and the official SDKs: an end
user over their budget is refused on each route (not only chat), an end user's request
limit counts operations on their stored responses, a key that requires an end user refuses
a request without one on each route, and a batch is charged to its one end user.

The same request set runs for an end user with room (answered) and for one without
(402 naming them, nothing forwarded), so a route that forgot to read the end user fails
here instead of letting that user around their limits."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from typing import Any

import anthropic
import openai
import pytest

from tests.integration.test_batches import follow_up, jsonl
from tests.integration.test_batches_anthropic import request as batch_request
from tests.integration.test_governance import key
from tests.integration.test_media_routes import PRICING as MEDIA_PRICING
from tests.integration.test_media_routes import wav
from tests.support.gateway import RunningGateway, mock_providers
from tests.support.sdk_clients import anthropic_client, openai_client
from tollway.governance.counters.base import CounterState
from tollway.governance.end_users import end_user_counter, templates_of
from tollway.governance.engine import hash_key
from tollway.governance.model import budget_counter, request_counter
from tollway.server.services import Services

genai = pytest.importorskip("google.genai", reason="google-genai is a test extra")
from google.genai import errors as genai_errors  # noqa: E402
from google.genai import types as genai_types  # noqa: E402

KEY = "tw-eu-routes-0123456789abcdefghijkl"
STRICT = "tw-eu-strict-0123456789abcdefghijkl"
BODY_ONLY = "tw-eu-bodyonly-0123456789abcdefghij"
NOW = 1_790_000_000_000
CHAT, CLAUDE, GEMINI = "openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.0-flash"
PRICING = {**MEDIA_PRICING, CHAT: {"input": 1, "output": 2, "batch_ratio": 0.5},
           "openai/text-embedding-3-small": {"input": 0.02, "output": 0},
           CLAUDE: {"input": 3, "output": 15, "batch_ratio": 0.5}, GEMINI: {"input": 1, "output": 2}}
HELLO = [{"role": "user", "content": "Hello"}]
TEMPLATE = {"budget": {"max_limit": 5, "reset_duration": "1d"},
            "rate_limit": {"request_max_limit": 100, "request_reset_duration": "1h"}}


def end_user_gateway(gateway, mock, template: dict[str, Any] = TEMPLATE) -> RunningGateway:
    providers = mock_providers(mock.url, gemini={"type": "gemini", "base_url": mock.url,
                                                 "keys": [{"value": "AIza-test-gemini"}]})
    return gateway({"providers": providers, "pricing": PRICING, "governance": {
        "teams": [{"id": "t", "name": "Team", "end_user_limits": template}],
        "virtual_keys": [key(KEY, team_id="t"),
                         key(STRICT, id="strict", team_id="t", end_user={"source": ["header", "body"], "required": True}),
                         key(BODY_ONLY, id="body-only", team_id="t", end_user={"source": ["body"], "required": True})]}},
        Services(clock_ms=lambda: NOW))


def spend_budget(running: RunningGateway, end_user: str) -> None:
    """``end_user``'s budget used to its limit (as if spent earlier today)."""
    template = templates_of(running.runtime.snapshot, running.runtime.snapshot.keys_by_hash[hash_key(KEY)])[0]
    budget = template.limits.budget
    assert budget is not None
    counter = end_user_counter(budget_counter(budget.id), end_user)
    running.call(running.runtime.store.load({counter: CounterState(budget.max_limit_nano, NOW)}))


def used(running: RunningGateway, end_user: str, kind: str = "budget") -> int:
    template = templates_of(running.runtime.snapshot, running.runtime.snapshot.keys_by_hash[hash_key(KEY)])[0]
    limits = template.limits
    if kind == "budget":
        assert limits.budget is not None
        name = budget_counter(limits.budget.id)
    else:
        assert limits.rate_limit is not None
        name = request_counter(limits.rate_limit.id)
    state = running.counters().get(end_user_counter(name, end_user))
    return state.used if state else 0


def clients(running: RunningGateway, value: str = KEY, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"openai": openai_client(running.v1, value, default_headers=headers),
            "anthropic": anthropic_client(running.url, value,
                                                  default_headers=headers),
            "google": genai.Client(api_key=value, http_options=genai_types.HttpOptions(
                base_url=running.url, headers=headers or {}, retry_options=None))}


def header(user: str | None) -> dict[str, str]:
    return {"x-tollway-user": user} if user is not None else {}


# Every model route, naming the end user where its API does (in the header where it has no
# field); ``user`` None names none.
def _user(user: str | None) -> Any:
    return user if user is not None else openai.NOT_GIVEN


async def _chat(c: dict[str, Any], user: str | None) -> Any:
    return await c["openai"].chat.completions.create(model=CHAT, messages=HELLO, max_tokens=5, user=_user(user))


async def _embeddings(c: dict[str, Any], user: str | None) -> Any:
    return await c["openai"].embeddings.create(model="openai/text-embedding-3-small", input="hi", user=_user(user))


async def _messages(c: dict[str, Any], user: str | None) -> Any:
    metadata = {"user_id": user} if user is not None else anthropic.NOT_GIVEN
    return await c["anthropic"].messages.create(model=CLAUDE, max_tokens=5, messages=HELLO, metadata=metadata)


async def _responses(c: dict[str, Any], user: str | None) -> Any:
    return await c["openai"].responses.create(model=CHAT, input="Hi", max_output_tokens=16, user=_user(user))


async def _image(c: dict[str, Any], user: str | None) -> Any:
    return await c["openai"].images.generate(model="openai/dall-e-3", prompt="a", size="1024x1024", user=_user(user))


async def _image_edit(c: dict[str, Any], user: str | None) -> Any:  # `user`: a form field, before the file
    return await c["openai"].images.edit(model="openai/gpt-image-1", image=("in.png", b"\x89PNG", "image/png"),
                                         prompt="moon", quality="low", user=_user(user))


async def _transcription(c: dict[str, Any], user: str | None) -> Any:
    return await c["openai"].audio.transcriptions.create(model="openai/whisper-1", file=("a.wav", wav(1.0), "audio/wav"),
                                                         extra_headers=header(user))


async def _speech(c: dict[str, Any], user: str | None) -> Any:
    return await c["openai"].audio.speech.create(model="openai/tts-1", voice="alloy", input="hello",
                                                 extra_headers=header(user))


async def _moderation(c: dict[str, Any], user: str | None) -> Any:
    return await c["openai"].moderations.create(model="openai/omni-moderation-latest", input="hi",
                                                extra_headers=header(user))


async def _google(c: dict[str, Any], user: str | None) -> Any:
    return await c["google"].aio.models.generate_content(
        model=GEMINI, contents="Hi", config=genai_types.GenerateContentConfig(
            max_output_tokens=3, http_options=genai_types.HttpOptions(headers=header(user))))


async def _message_batch(c: dict[str, Any], user: str | None) -> Any:
    metadata = {"metadata": {"user_id": user}} if user is not None else {}
    requests = [batch_request(i, **metadata) for i in range(2)]
    return await c["anthropic"].messages.batches.create(requests=requests)  # type: ignore[arg-type]


async def _openai_batch(c: dict[str, Any], user: str | None) -> Any:
    line = {"custom_id": "r0", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": CHAT, "messages": HELLO, "max_tokens": 5}}
    uploaded = await c["openai"].files.create(file=("b.jsonl", io.BytesIO(jsonl([line]))), purpose="batch")
    return await c["openai"].batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                            completion_window="24h", extra_headers=header(user))


ROUTES: dict[str, Callable[[dict[str, Any], str | None], Awaitable[Any]]] = {
    "chat": _chat, "embeddings": _embeddings, "messages": _messages, "responses": _responses, "images": _image,
    "images.edits": _image_edit, "audio.transcriptions": _transcription, "audio.speech": _speech,
    "moderations": _moderation, "google": _google, "message_batches": _message_batch, "batches": _openai_batch}


def forwarded(mock, before: int) -> list[str]:
    """The paths the mock provider was sent since it had seen ``before`` requests."""
    return [request["path"] for request in list(mock.state.requests)[before:]]


def refusal(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """(status, the error body's fields) of a refusal in any SDK's shape."""
    if isinstance(exc, genai_errors.APIError):
        metadata = exc.details["error"]["details"][0]["metadata"]
        return exc.code, {"type": exc.details["error"]["status"], "scope": {"level": metadata.get("scope.level"),
                                                                              "id": metadata.get("scope.id")}}
    assert isinstance(exc, (openai.APIStatusError, anthropic.APIStatusError)), exc
    body = exc.body if isinstance(exc.body, dict) else {}
    return exc.status_code, body.get("error", body) if "error" in body and isinstance(body["error"], dict) else body


@pytest.mark.parametrize("route", list(ROUTES))
async def test_an_end_user_over_budget_is_refused_on_every_route(gateway, mock, route) -> None:
    running = end_user_gateway(gateway, mock)
    spend_budget(running, "alice")
    call = ROUTES[route]
    await call(clients(running), "bob")  # another end user of the same key: answered
    assert used(running, "bob") > 0, f"{route} charged nothing to bob"
    before = len(mock.state.requests)
    with pytest.raises((openai.APIStatusError, anthropic.APIStatusError, genai_errors.APIError)) as caught:
        await call(clients(running), "alice")
    status, error = refusal(caught.value)
    assert status == 402, error
    assert error["scope"]["level"] == "end_user" and error["scope"]["id"] == "alice"
    assert forwarded(mock, before) in ([], ["/v1/files"])  # an OpenAI batch's file upload is charged nothing


@pytest.mark.parametrize("route", list(ROUTES))
async def test_a_key_that_requires_an_end_user_refuses_a_request_without_one_on_every_route(gateway, mock,
                                                                                            route) -> None:
    running = end_user_gateway(gateway, mock)
    before = len(mock.state.requests)
    with pytest.raises((openai.BadRequestError, anthropic.BadRequestError, genai_errors.ClientError)) as caught:
        await ROUTES[route](clients(running, STRICT), None)
    message = str(caught.value)
    assert "requires an end user" in message, message
    assert forwarded(mock, before) in ([], ["/v1/files"])
    await ROUTES[route](clients(running, STRICT, header("dana")), "dana")  # named: answered
    assert used(running, "dana") > 0


async def test_a_key_that_trusts_only_the_body_explains_why_audio_cannot_name_an_end_user(gateway, mock) -> None:
    running = end_user_gateway(gateway, mock)
    with pytest.raises(openai.BadRequestError) as caught:
        await _speech(clients(running, BODY_ONLY), "erin")  # the header is not trusted by this key
    assert caught.value.body["param"] == "x-tollway-user"
    assert "audio.speech requests have no end-user field" in caught.value.body["message"]


async def test_operations_on_a_stored_response_count_against_its_end_user(gateway, mock) -> None:
    limit = {"rate_limit": {"request_max_limit": 3, "request_reset_duration": "1h"}}
    running = end_user_gateway(gateway, mock, limit)
    client = clients(running)["openai"]
    made = await _responses(clients(running), "frank")
    await client.responses.retrieve(made.id)  # no header: counted against frank, who made it
    await client.responses.input_items.list(made.id)
    assert used(running, "frank", "requests") == 3
    with pytest.raises(openai.RateLimitError) as caught:
        await client.responses.retrieve(made.id)
    assert caught.value.body["scope"] == {**caught.value.body["scope"], "level": "end_user", "id": "frank"}
    # The header names who asks: another end user's operation counts against them instead.
    await client.responses.retrieve(made.id, extra_headers=header("gina"))
    assert used(running, "gina", "requests") == 1


async def test_a_message_batch_is_charged_to_its_end_user_and_given_back_at_settlement(gateway, mock) -> None:
    running = end_user_gateway(gateway, mock)
    client = clients(running)["anthropic"]
    batch = await _message_batch(clients(running), "hana")
    charged = used(running, "hana")
    assert charged > 0
    await client.messages.batches.cancel(batch.id)
    await follow_up(running)
    assert used(running, "hana") == 0  # nothing ran: the worst case comes back to the end user too


async def test_a_batch_naming_several_end_users_is_refused_where_their_limits_apply(gateway, mock) -> None:
    running = end_user_gateway(gateway, mock)
    requests = [batch_request(0, metadata={"user_id": "ivan"}), batch_request(1, metadata={"user_id": "jo"})]
    before = len(mock.state.requests)
    with pytest.raises(anthropic.BadRequestError) as caught:
        await clients(running)["anthropic"].messages.batches.create(requests=requests)  # type: ignore[arg-type]
    assert "names 2 end users" in str(caught.value) and len(mock.state.requests) == before
    with pytest.raises(anthropic.BadRequestError):  # the header and the requests disagree
        await clients(running, KEY, header("kim"))["anthropic"].messages.batches.create(
            requests=[batch_request(0, metadata={"user_id": "ivan"})])  # type: ignore[list-item]
