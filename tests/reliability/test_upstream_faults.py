"""Upstream faults through the real gateway (mock upstream fault injection): timeouts,
retries with back-off, fallbacks, streams cut mid-way, bodies cut mid-way."""

from __future__ import annotations

import time
from typing import Any

import httpx2
import orjson
import pytest

from tests.reliability.harness import HELLO, control, eventually, prompt_estimate
from tests.support.gateway import RunningGateway, mock_providers
from tollway.governance.engine import hash_key
from tollway.governance.model import request_counter, token_counter
from tollway.providers.client import Api

VK = "tw-reliability-upstream-0123456789ab"
PRICING = {"openai/gpt-4o-mini": {"input": 1, "output": 2}}


def _config(mock_url: str, **openai: Any) -> dict[str, Any]:
    limits = {"token_max_limit": 1_000_000, "token_reset_duration": "1h",
              "request_max_limit": 1000, "request_reset_duration": "1h"}
    return {"providers": mock_providers(mock_url, openai=openai), "pricing": PRICING,
            "model_aliases": {"main": "openai/gpt-4o-mini"},
            "fallbacks": {"main": ["anthropic/claude-3-5-haiku-latest"]},
            "governance": {"virtual_keys": [{"id": "vk-rel", "name": "rel", "value": VK, "rate_limit": limits}]}}


def _post(gateway: RunningGateway, body: dict[str, Any], path: str = "/chat/completions",
          timeout_s: float = 20) -> httpx2.Response:
    headers = {"x-tollway-vk": VK}
    if path == "/messages":
        headers["anthropic-version"] = "2023-06-01"
    return httpx2.post(gateway.v1 + path, json=body, headers=headers, timeout=timeout_s)


def _events(text: str) -> list[bytes]:
    """The data of each SSE event, in order."""
    return [line[6:].encode() for line in text.splitlines() if line.startswith("data: ")]


def _key_usage(gateway: RunningGateway) -> tuple[int, int]:
    """(tokens, requests) charged to the test key's rate limit, once nothing is in flight."""
    limit = gateway.runtime.snapshot.keys_by_hash[hash_key(VK)].limits.rate_limit
    counters = gateway.counters()
    return counters[token_counter(limit.id)].used, counters[request_counter(limit.id)].used


def test_a_slow_upstream_within_the_timeout_is_served(gateway, mock) -> None:
    running = gateway(_config(mock.url, timeout="2s"))
    control(mock.url, "POST", "/_mock/faults", {"delay_ms": 400, "count": 1})
    started = time.monotonic()
    response = _post(running, {"model": "openai/gpt-4o-mini", "messages": HELLO, "max_tokens": 3})
    assert response.status_code == 200, response.text
    assert 0.4 <= time.monotonic() - started < 2


@pytest.mark.parametrize("stream", [False, True])
def test_a_hanging_upstream_times_out_with_504_and_is_dropped(gateway, mock, stream: bool) -> None:
    running = gateway(_config(mock.url, timeout="1s"))
    control(mock.url, "POST", "/_mock/faults", {"delay_ms": 10_000, "count": 1})
    started = time.monotonic()
    response = _post(running, {"model": "openai/gpt-4o-mini", "messages": HELLO, "stream": stream})
    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert response.json()["error"]["type"] == "upstream_timeout"
    assert 1 <= elapsed < 4
    # The gateway hung up on the upstream: its handler was cancelled, nothing is left in flight.
    stats = eventually(lambda: control(mock.url, "GET", "/_mock/stats"), lambda s: s["in_flight"] == 0)
    assert stats["requests_cancelled"] == 1 and stats["in_flight"] == 0
    assert _key_usage(running) == (0, 0)  # a failed call charges nothing
    assert running.runtime.enforcer.reservations_in_flight == 0


def test_an_upstream_that_goes_silent_mid_stream_ends_the_stream_with_an_error_event(gateway, mock) -> None:
    running = gateway(_config(mock.url, timeout="1s"))
    control(mock.url, "POST", "/_mock/settings", {"chunk_delay_ms": 5_000})
    started = time.monotonic()
    response = _post(running, {"model": "openai/gpt-4o-mini", "messages": HELLO, "stream": True, "max_tokens": 50})
    assert time.monotonic() - started < 4
    assert response.status_code == 200
    events = _events(response.text)
    last = orjson.loads(events[-1])
    assert last["error"]["code"] == "stream_interrupted" and "timed out" in last["error"]["message"]
    assert b"[DONE]" not in events
    stats = eventually(lambda: control(mock.url, "GET", "/_mock/stats"), lambda s: s["streams_cancelled"] == 1)
    assert stats["streams_cancelled"] == 1
    tokens, requests = _key_usage(running)
    assert requests == 1 and 1 <= tokens < 50  # the prompt estimate and what was produced, not the 50 reserved
    assert running.runtime.enforcer.reservations_in_flight == 0


def test_5xx_and_429_are_retried_with_backoff_then_fall_back(gateway, mock) -> None:
    running = gateway(_config(mock.url, max_retries=2, retry_backoff=0.1))
    control(mock.url, "POST", "/_mock/faults", [
        {"status": 429, "retry_after": 0.3, "count": 1, "path": "/v1/chat/completions"},
        {"status": 503, "count": 2, "path": "/v1/chat/completions"},
    ])
    started = time.monotonic()
    response = _post(running, {"model": "main", "messages": HELLO, "max_tokens": 4})
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == 4
    paths = [r["path"] for r in control(mock.url, "GET", "/_mock/requests")]
    assert paths == ["/v1/chat/completions"] * 3 + ["/v1/messages"]  # three tries, then the fallback
    assert elapsed >= 0.3 + 0.2  # Retry-After honoured (over the 0.1 s back-off), then 0.2 s
    tokens, requests = _key_usage(running)
    assert requests == 1  # only the call that answered is charged
    assert running.runtime.enforcer.reservations_in_flight == 0


def test_without_a_fallback_the_last_upstream_error_is_answered(gateway, mock) -> None:
    running = gateway(_config(mock.url, max_retries=1, retry_backoff=0.01))
    control(mock.url, "POST", "/_mock/faults", {"status": 500, "count": 2})
    response = _post(running, {"model": "openai/gpt-4o-mini", "messages": HELLO})
    assert response.status_code == 500
    assert response.json()["error"]["message"] == "mock fault: HTTP 500"
    assert _key_usage(running) == (0, 0)
    assert control(mock.url, "GET", "/_mock/stats")["requests"] == 2


@pytest.mark.parametrize("api", ["chat", "messages"])
def test_a_stream_dropped_mid_way_ends_with_an_error_event_and_charges_what_was_produced(gateway, mock, api: str) -> None:
    running = gateway(_config(mock.url))
    control(mock.url, "POST", "/_mock/faults", {"drop": "mid_stream", "after_chunks": 5, "count": 1})
    body = {"model": "openai/gpt-4o-mini", "messages": HELLO, "stream": True, "max_tokens": 200}
    response = _post(running, body, "/chat/completions" if api == "chat" else "/messages")
    assert response.status_code == 200
    if api == "chat":
        events = _events(response.text)
        assert orjson.loads(events[-1])["error"]["code"] == "stream_interrupted"
        assert b"[DONE]" not in events
    else:  # an Anthropic client of an OpenAI model: the error comes in Anthropic's shape
        assert "event: error" in response.text
        assert "message_stop" not in response.text
    tokens, requests = _key_usage(running)
    prompt = prompt_estimate(body, Api.CHAT if api == "chat" else Api.MESSAGES)
    assert requests == 1
    assert 4 <= tokens - prompt <= 5 + 1  # what was relayed, not the 200 reserved
    assert running.runtime.enforcer.reservations_in_flight == 0


def test_a_body_cut_mid_way_is_a_502_and_charges_nothing(gateway, mock) -> None:
    running = gateway(_config(mock.url))
    control(mock.url, "POST", "/_mock/faults", {"drop": "mid_stream", "count": 1, "path": "/v1/chat/completions"})
    response = _post(running, {"model": "openai/gpt-4o-mini", "messages": HELLO})
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["type"] == "upstream_unreachable" and "openai" in error["message"]
    assert _key_usage(running) == (0, 0)
    assert running.runtime.enforcer.reservations_in_flight == 0


def test_a_body_cut_mid_way_falls_back(gateway, mock) -> None:
    running = gateway(_config(mock.url))
    control(mock.url, "POST", "/_mock/faults", {"drop": "mid_stream", "count": 1, "path": "/v1/chat/completions"})
    response = _post(running, {"model": "main", "messages": HELLO, "max_tokens": 4})
    assert response.status_code == 200, response.text
    assert control(mock.url, "GET", "/_mock/requests")[-1]["path"] == "/v1/messages"
