"""The explain API prices a request as the proxy does (`tollway.proxy.estimate.demand_of`):
from the body a client would send, generations and the honoured cap included, and under
strict limits it answers what the gateway answers: refused, or clamped to the very cap the
gateway then forwards. Real server, real SQLite file, mock upstream, the official openai SDK."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

from tests.api.support import MockThread, gateway_config, unique
from tests.support.gateway import RunningGateway, start_gateway

KEYS = "/api/governance/virtual-keys"
EXPLAIN = "/api/governance/explain"
MODEL = "openai/gpt-4o-mini"
HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: MockThread) -> Iterator[RunningGateway]:
    url = f"sqlite:///{tmp_path_factory.mktemp('explain-demand')}/tollway.db"
    running = start_gateway(gateway_config(url, upstream.url))
    yield running
    running.stop()


def token_key(api: httpx2.Client, tokens: int, on_insufficient: str) -> dict[str, Any]:
    body = {"id": unique("vk"), "name": "strict tokens", "rate_limit": {
        "token_max_limit": tokens, "token_reset_duration": "1d", "enforcement": "strict", "on_insufficient": on_insufficient}}
    response = api.post(KEYS, json=body)
    assert response.status_code == 201, response.text
    return response.json()["virtual_key"]


def explain(http: httpx2.Client, **ask: Any) -> dict[str, Any]:
    response = http.post(EXPLAIN, json=ask)
    assert response.status_code == 200, response.text
    return response.json()


def client(gateway: RunningGateway, key: dict[str, Any]) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=key["value"], max_retries=0)


def test_a_strict_refusal_is_explained_as_the_gateway_answers_it(gateway, api) -> None:
    key = token_key(api, 1_000, "refuse")
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 5_000}

    predicted = explain(api, virtual_key=key["value"], body=body)
    with pytest.raises(openai.APIStatusError) as caught:
        client(gateway, key).chat.completions.create(**body)
    fits = explain(api, virtual_key=key["value"], body={**body, "max_tokens": 100})

    assert caught.value.status_code == predicted["status"] == 429
    assert caught.value.body["type"] == predicted["decision"] == "token_limited"
    [limit] = predicted["limits"]
    assert (limit["enforcement"], limit["on_insufficient"]) == ("strict", "refuse")
    assert limit["requested"] == predicted["worst_case_tokens"] > 5_000 > predicted["estimated_tokens"] - 5_000
    assert predicted["max_tokens"] == 5_000 and predicted["clamped_max_tokens"] is None
    assert fits["allowed"] and fits["limits"][0]["requested"] == fits["worst_case_tokens"] < 1_000


def test_a_clamp_is_explained_with_the_cap_the_gateway_then_forwards(gateway, api) -> None:
    key = token_key(api, 1_000, "clamp")
    body = {"model": MODEL, "messages": HELLO, "max_completion_tokens": 5_000}

    predicted = explain(api, virtual_key=key["value"], body=body)
    raw = client(gateway, key).chat.completions.with_raw_response.create(**body)

    assert predicted["allowed"] and predicted["status"] == 200
    assert 0 < predicted["clamped_max_tokens"] < 1_000
    assert int(raw.headers["x-tollway-clamped-max-tokens"]) == predicted["clamped_max_tokens"]  # one computation
    assert predicted["limits"][0]["requested"] <= 1_000  # at the clamped cap


def test_generations_and_the_honoured_cap_come_from_the_body(api) -> None:
    one = explain(api, model=MODEL, body={"messages": HELLO, "max_tokens": 10})
    three = explain(api, model=MODEL, body={"messages": HELLO, "max_tokens": 10, "n": 3})
    translated = explain(api, model=MODEL, api="messages", body={"messages": HELLO, "max_tokens": 10})

    assert three["estimated_tokens"] - one["estimated_tokens"] == 20  # two more generations of 10
    assert three["worst_case_tokens"] - one["worst_case_tokens"] == 20
    assert one["estimated_tokens"] < one["worst_case_tokens"]
    assert translated["max_tokens"] == 10 and translated["worst_case_tokens"] > 10  # sent upstream as chat


def test_token_counts_without_a_cap_reserve_the_injected_cap_on_strict_limits(api) -> None:
    key = token_key(api, 10_000, "refuse")
    uncapped = explain(api, virtual_key=key["value"], model=MODEL, prompt_tokens=100)
    capped = explain(api, virtual_key=key["value"], model=MODEL, prompt_tokens=100, completion_tokens=50)

    assert uncapped["max_tokens"] == 4_096 and uncapped["worst_case_tokens"] == 4_196
    assert uncapped["estimated_tokens"] == 356  # the default completion estimate, 256
    assert uncapped["limits"][0]["requested"] == 4_196  # strict: the worst case
    assert (capped["estimated_tokens"], capped["worst_case_tokens"]) == (150, 150)


def test_a_body_the_proxy_would_refuse_is_a_422_naming_its_field(api) -> None:
    conflicting = api.post(EXPLAIN, json={"model": MODEL, "body": {"messages": HELLO, "max_tokens": 5,
                                                                   "max_completion_tokens": 5}})
    both = api.post(EXPLAIN, json={"model": MODEL, "prompt_tokens": 5, "body": {"messages": HELLO}})
    no_messages = api.post(EXPLAIN, json={"model": MODEL, "body": {}})
    no_model = api.post(EXPLAIN, json={"body": {"messages": HELLO}})

    assert conflicting.status_code == 422 and conflicting.json()["error"]["field"] == "body.max_completion_tokens"
    assert both.status_code == 422 and both.json()["error"]["field"] == "body"
    assert no_messages.status_code == 422 and no_messages.json()["error"]["field"] == "body.messages"
    assert no_model.status_code == 400 and no_model.json()["error"]["field"] == "model"
    by_body = explain(api, body={"model": MODEL, "messages": HELLO})
    assert by_body["model"] == "gpt-4o-mini"  # the body's model when none is given beside it
