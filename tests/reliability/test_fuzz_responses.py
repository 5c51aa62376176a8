"""`/v1/responses`, its stored-response routes, `/v1/responses/input_tokens` and
`/v1/messages/count_tokens` fuzzed like
the other proxy routes (test_fuzz_proxy): whatever comes in, a 2xx or a clear 4xx, never a
5xx, and nothing charged or left reserved by a request that is refused."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.reliability import test_fuzz_proxy as fuzz
from tests.reliability.test_fuzz_proxy import (
    SETTINGS,
    VK,
    _Checker,
    _encode,
    garbage,
    headers,
    hostile_text,
    huge,
    messages,
    text,
    valid_models,
)

proxy = fuzz.proxy  # the same module-scoped gateway fixtures, one gateway for this module
checker = fuzz.checker

models = st.one_of(valid_models, valid_models, hostile_text, garbage)
items = st.lists(st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "developer", "system"]), "content": text}),
    st.fixed_dictionaries({"type": st.sampled_from(["function_call", "function_call_output", "reasoning", "item_reference",
                                                    "message", "web_search_call"])},
                          optional={"call_id": garbage, "name": garbage, "arguments": garbage, "output": garbage,
                                    "role": garbage, "content": garbage, "id": garbage}),
    garbage), max_size=4)
tools = st.one_of(garbage, st.lists(st.one_of(
    st.fixed_dictionaries({"type": st.just("function"), "name": st.one_of(text, garbage)},
                          optional={"parameters": garbage, "strict": garbage, "description": garbage}),
    st.fixed_dictionaries({"type": st.sampled_from(["web_search", "file_search", "code_interpreter", "custom"])}),
    garbage), max_size=3))
text_format = st.one_of(garbage, st.fixed_dictionaries({"format": st.one_of(garbage, st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "json_object", "json_schema", "xml"])},
    optional={"name": st.one_of(text, garbage), "schema": garbage, "strict": garbage}))}))
responses_bodies = st.fixed_dictionaries(
    {"model": models},
    optional={"input": st.one_of(text, items, garbage), "instructions": st.one_of(text, garbage), "tools": tools,
              "tool_choice": st.one_of(st.sampled_from(["auto", "none", "required"]), garbage),
              "text": text_format, "reasoning": st.one_of(st.fixed_dictionaries(
                  {"effort": st.one_of(st.sampled_from(["low", "medium", "high", "minimal"]), garbage)}), garbage),
              "max_output_tokens": st.one_of(st.integers(1, 64), st.integers(1000, 5000), huge, garbage),
              "previous_response_id": st.one_of(text, garbage), "store": garbage, "background": garbage,
              "stream": st.one_of(st.booleans(), st.booleans(), garbage), "parallel_tool_calls": garbage,
              "temperature": garbage},
)
count_bodies = st.fixed_dictionaries(
    {"model": models}, optional={"messages": messages, "system": st.one_of(text, garbage), "tools": garbage})
HI = [{"role": "user", "content": "hi"}]


@settings(SETTINGS)
@given(body=responses_bodies, sent_headers=headers)
@example(body={"model": "anthropic/claude-3-5-haiku-latest", "input": [{"type": "function_call"}]},
         sent_headers={"x-tollway-vk": VK})
@example(body={"model": "anthropic/claude-3-5-haiku-latest", "input": "x", "reasoning": {"effort": "high"},
               "max_output_tokens": 2**64}, sent_headers={})
@example(body={"model": "openai/gpt-4o-mini", "input": "x", "previous_response_id": "resp_nope", "stream": True},
         sent_headers={})
def test_responses_garbage_gets_a_clear_4xx_or_a_real_answer(checker: _Checker, body: dict[str, Any],
                                                              sent_headers: dict[str, str]) -> None:
    checker.check("/v1/responses", _encode(body), sent_headers)


@settings(SETTINGS)
@given(body=responses_bodies, sent_headers=headers)
def test_responses_input_tokens_garbage_gets_a_clear_4xx_or_a_count(checker: _Checker, body: dict[str, Any],
                                                                    sent_headers: dict[str, str]) -> None:
    checker.check("/v1/responses/input_tokens", _encode(body), sent_headers)


@settings(SETTINGS)
@given(body=count_bodies, sent_headers=headers)
@example(body={"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "image"}, 1]}]},
         sent_headers={})
def test_count_tokens_garbage_gets_a_clear_4xx_or_a_count(checker: _Checker, body: dict[str, Any],
                                                          sent_headers: dict[str, str]) -> None:
    checker.check("/v1/messages/count_tokens", _encode(body), sent_headers)


@settings(SETTINGS)
@given(path=st.one_of(hostile_text, st.sampled_from(["resp_x", "resp_x/cancel", "resp_x/input_items", "resp_x/a/b", ""])),
       method=st.sampled_from(["GET", "DELETE", "POST", "PUT"]))
def test_stored_routes_with_hostile_ids_get_a_clear_4xx(checker: _Checker, path: str, method: str) -> None:
    url = checker.gateway.url + "/v1/responses/" + path.replace("\n", "").replace("\r", "")
    try:
        response = checker.client.request(method, url, headers={"x-tollway-vk": VK})
    except Exception:
        return
    assert response.status_code < 500 and response.status_code in (404, 405), (method, path, response.text[:300])
    assert checker.gateway.runtime.enforcer.reservations_in_flight == 0
