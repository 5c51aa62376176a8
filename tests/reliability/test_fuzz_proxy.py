"""The proxy routes fuzzed with hypothesis: malformed and hostile bodies, headers and
model names (unicode, huge numbers, negative limits, nested garbage, duplicate keys).

Whatever comes in, the answer is a 2xx or a 4xx with a clear message in the API's error
shape, never a 5xx; and a request that is not answered 2xx charges nothing and leaves
nothing reserved ("no partial writes").
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.api.support import MockThread
from tests.support.gateway import RunningGateway, mock_providers, start_gateway
from tollway.governance.engine import hash_key

VK = "tw-reliability-fuzz-proxy-0123456789"
ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages")
EXAMPLES = int(os.environ.get("TOLLWAY_FUZZ_EXAMPLES", "120"))  # per test; raise it for a longer hunt
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))

huge = st.one_of(st.integers(min_value=-(10**40), max_value=10**40), st.sampled_from([2**63, 2**64, -(2**63) - 1]))
text = st.text(st.characters(codec="utf-8"), max_size=40)
hostile_text = st.one_of(text, st.sampled_from(["", " ", "\x00", "💥" * 50, "a" * 20_000, "openai/", "/gpt", "openai//x",
                                                 "openai/gpt-4o-mini\n", "../../etc/passwd", "%00", "ｏｐｅｎａｉ/ｇｐｔ"]))
scalars = st.one_of(st.none(), st.booleans(), huge, st.floats(allow_nan=False, allow_infinity=False), hostile_text)
garbage = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(text, inner, max_size=4)), max_leaves=12)
valid_models = st.sampled_from(["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest", "fast", "azure/gpt-4o-mini"])
models = st.one_of(valid_models, valid_models, hostile_text, garbage)
messages = st.one_of(
    st.just([{"role": "user", "content": "hi"}]),
    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": text}), min_size=1, max_size=3),
    st.lists(st.fixed_dictionaries({"role": st.one_of(st.sampled_from(["user", "assistant", "system", "tool"]), garbage),
                                    "content": garbage}), max_size=3),
    garbage,
)
bodies = st.fixed_dictionaries(
    {"model": models},
    optional={"messages": messages, "prompt": st.one_of(text, garbage), "input": st.one_of(text, garbage),
              "stream": st.one_of(st.booleans(), st.booleans(), garbage), "stream_options": garbage,
              "max_tokens": st.one_of(st.integers(1, 64), huge, garbage), "max_completion_tokens": huge,
              "temperature": garbage, "tools": garbage, "n": huge, "extra": garbage},
)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=60).map(str.strip)
headers = st.fixed_dictionaries({}, optional={
    "x-tollway-vk": st.one_of(header_values, st.just(VK)), "x-bf-vk": header_values,
    "authorization": st.one_of(header_values, st.just(f"Bearer {VK}"), st.builds("Bearer tw-{}".format, header_values)),
    "x-api-key": header_values, "content-type": st.one_of(header_values, st.just("application/json")),
    "anthropic-version": header_values,
})


def _raw_json(draw_pairs: list[tuple[str, Any]]) -> bytes:
    """A JSON object written by hand, so that keys may repeat."""
    return ("{" + ",".join(f"{json.dumps(key)}:{json.dumps(value)}" for key, value in draw_pairs) + "}").encode()


duplicate_keys = st.lists(st.tuples(st.sampled_from(["model", "messages", "stream", "max_tokens", "prompt", "input"]),
                                    st.one_of(garbage, st.just("openai/gpt-4o-mini"),
                                              st.just([{"role": "user", "content": "x"}]))),
                          min_size=2, max_size=8).map(_raw_json)
malformed = st.one_of(st.binary(max_size=200), st.sampled_from([
    b"", b"{", b"[]", b"null", b"1e999999", b'{"model": "openai/gpt-4o-mini", "messages": [}', b"\xff\xfe{}",
    b'{"model": "\\ud800", "messages": []}', b'{"model": 1' + b"0" * 5000 + b"}", b"[" * 10_000 + b"]" * 10_000,
    b'{"a":' * 2000 + b"1" + b"}" * 2000,
]))


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, MockThread]]:
    root: Path = tmp_path_factory.mktemp("fuzz-proxy")
    mock = MockThread().start()
    limits = {"request_max_limit": 10**9, "request_reset_duration": "1h", "token_max_limit": 10**15,
              "token_reset_duration": "1h"}
    running = start_gateway({
        "database_url": f"sqlite:///{root}/fuzz.db", "providers": mock_providers(mock.url), "max_body_bytes": 65536,
        "model_aliases": {"fast": "openai/gpt-4o-mini"},
        "governance": {"virtual_keys": [{"id": "vk-fuzz", "name": "fuzz", "value": VK, "rate_limit": limits}]}})
    yield running, mock
    running.stop()
    mock.stop()


class _Checker:
    """Sends one fuzzed request and checks the answer and what it left behind."""

    def __init__(self, gateway: RunningGateway) -> None:
        self.gateway = gateway
        self.client = httpx2.Client(timeout=15)
        self.sent = 0
        self.statuses: dict[int, int] = {}

    def _charged(self) -> int:
        limit = self.gateway.runtime.snapshot.keys_by_hash[hash_key(VK)].limits.rate_limit
        counters = self.gateway.counters()
        return sum(state.used for key, state in counters.items() if key.endswith(limit.id))

    def check(self, route: str, content: bytes, sent_headers: dict[str, str]) -> None:
        before = self._charged()
        response = self.client.post(self.gateway.url + route, content=content, headers=sent_headers)
        self.sent += 1
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (route, content[:300], sent_headers, response.status_code, response.text[:500])
        charged = self._charged()  # once settled: a stream settles a moment after its last byte
        assert self.gateway.runtime.enforcer.reservations_in_flight == 0
        if response.status_code < 400:
            return
        assert charged == before, (route, content[:300], response.text[:300])  # nothing written
        body = orjson.loads(response.content)
        error = body["error"]
        message = error["message"]
        if route == "/v1/messages" and "type" in body:
            assert body["type"] == "error"
        assert isinstance(message, str) and message.strip(), response.text
        assert "Traceback" not in message and " object at 0x" not in message, message


@pytest.fixture(scope="module")
def checker(proxy) -> Iterator[_Checker]:
    checking = _Checker(proxy[0])
    yield checking
    print(f"\nproxy fuzzing: {checking.sent} requests; statuses {dict(sorted(checking.statuses.items()))}")
    checking.client.close()


HI = [{"role": "user", "content": "hi"}]


@SETTINGS
@given(route=st.sampled_from(ROUTES), body=bodies, sent_headers=headers)
@example(route="/v1/chat/completions", body={"model": "openai/gpt-4o-mini", "messages": HI, "max_tokens": 2**64 - 1},
         sent_headers={"x-tollway-vk": VK})
@example(route="/v1/messages", body={"model": "openai/gpt-4o-mini", "messages": HI, "max_tokens": 2**63, "stream": True},
         sent_headers={"x-tollway-vk": VK})
@example(route="/v1/chat/completions", body={"model": "openai/gpt-4o-mini", "messages": HI, "max_tokens": -1},
         sent_headers={})
@example(route="/v1/chat/completions", body={"model": "openai/💥", "messages": HI, "stream": True}, sent_headers={})
@example(route="/v1/messages", body={"model": "anthropic/x", "messages": [{"role": "user", "content": [{"type": "image"}]}],
                                     "max_tokens": 5}, sent_headers={})
@example(route="/v1/chat/completions", body={"model": "anthropic/x", "messages": [{"role": "tool", "content": None}],
                                             "tools": [{"type": "function"}]}, sent_headers={})
def test_structured_garbage_gets_a_clear_4xx_or_a_real_answer(checker: _Checker, route: str, body: dict[str, Any],
                                                               sent_headers: dict[str, str]) -> None:
    checker.check(route, _encode(body), sent_headers)


nearly_valid = st.fixed_dictionaries(
    {"model": valid_models, "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]),
                                                                        "content": hostile_text}), min_size=1, max_size=3),
     "prompt": hostile_text, "input": hostile_text, "max_tokens": st.one_of(st.integers(1, 32), st.just(2**64 - 1)),
     "stream": st.booleans()},
    optional={"stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}), "user": hostile_text,
              "metadata": garbage, "temperature": st.floats(0, 2), "n": st.integers(1, 2)},
)


@settings(SETTINGS, max_examples=max(1, EXAMPLES // 2))
@given(route=st.sampled_from(ROUTES), body=nearly_valid)
def test_valid_requests_with_hostile_values_are_served_or_refused_cleanly(checker: _Checker, route: str,
                                                                         body: dict[str, Any]) -> None:
    checker.check(route, _encode(body), {"x-tollway-vk": VK})


@SETTINGS
@given(route=st.sampled_from(ROUTES), content=st.one_of(malformed, duplicate_keys), sent_headers=headers)
def test_malformed_bodies_and_duplicate_keys_get_a_clear_4xx(checker: _Checker, route: str, content: bytes,
                                                             sent_headers: dict[str, str]) -> None:
    checker.check(route, content, sent_headers)


def _encode(body: dict[str, Any]) -> bytes:
    """JSON text of ``body``; the standard library writes the integers beyond 64 bits orjson refuses."""
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
