"""The Gemini adapter's translators, both ways: chat → generateContent, and Gemini's
responses, streams, usage and errors → chat (and Google's error shape). Request pieces
and response fixtures are checked against Google's own SDK types (`google-genai`), which
refuse unknown fields, so a misspelt field name fails here."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tollway.errors import GatewayError
from tollway.providers._translate_common import TranslationError, UpstreamStreamError
from tollway.providers.adapters.gemini_request import chat_request_to_gemini
from tollway.providers.adapters.gemini_response import (
    GeminiStreamToChat,
    gemini_error_to_anthropic,
    gemini_error_to_openai,
    gemini_response_to_chat,
    google_error_from,
    usage_from_gemini,
)
from tollway.providers.client import Api
from tollway.proxy.metering import _output_bytes
from tollway.proxy.worst_case import analyse, with_cap
from tollway.usage import Usage

types = pytest.importorskip("google.genai.types", reason="google-genai is a test extra")

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def valid_request(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` after checking each part against google-genai's types (extra fields refused)."""
    for content in body["contents"]:
        types.Content.model_validate(content)
    if "systemInstruction" in body:
        types.Content.model_validate(body["systemInstruction"])
    if "generationConfig" in body:
        types.GenerationConfig.model_validate(body["generationConfig"])
    for tool in body.get("tools", ()):
        types.Tool.model_validate(tool)
    if "toolConfig" in body:
        types.ToolConfig.model_validate(body["toolConfig"])
    assert set(body) <= {"contents", "systemInstruction", "generationConfig", "tools", "toolConfig"}
    return body


def valid_response(body: dict[str, Any]) -> dict[str, Any]:
    types.GenerateContentResponse.model_validate(body)
    return body


# --- chat → Gemini ------------------------------------------------------------------------------

def test_a_chat_request_becomes_contents_system_and_generation_config() -> None:
    body = valid_request(chat_request_to_gemini({
        "model": "gemini-2.0-flash", "max_completion_tokens": 100, "n": 2, "temperature": 0.5, "top_p": 0.9,
        "stop": "END", "seed": 7, "presence_penalty": 0.1, "frequency_penalty": 0.2, "reasoning_effort": "medium",
        "messages": [{"role": "system", "content": "Be brief"}, {"role": "developer", "content": "Use French"},
                     {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                                  {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}}]},
                     {"role": "assistant", "content": "Une image."}, {"role": "user", "content": "Merci"}]}))
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief"}, {"text": "Use French"}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "What is this?"}, {"inlineData": {"mimeType": "image/png", "data": "aGk="}}]},
        {"role": "model", "parts": [{"text": "Une image."}]},
        {"role": "user", "parts": [{"text": "Merci"}]}]
    assert body["generationConfig"] == {
        "maxOutputTokens": 100, "candidateCount": 2, "temperature": 0.5, "topP": 0.9, "presencePenalty": 0.1,
        "frequencyPenalty": 0.2, "seed": 7, "stopSequences": ["END"], "thinkingConfig": {"thinkingBudget": 8192}}


def test_tool_calls_and_results_become_function_call_and_response_parts() -> None:
    body = valid_request(chat_request_to_gemini({"tools": [TOOL], "tool_choice": {"type": "function", "function": {
        "name": "get_weather"}}, "messages": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "c2", "content": "sunny"}]}))
    assert body["contents"][1] == {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]}
    # Both results answer the one model turn: one user turn, one part each.
    assert body["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
        {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}]}
    assert body["tools"] == [{"functionDeclarations": [{"name": "get_weather", "description": "Weather",
                                                        "parametersJsonSchema": TOOL["function"]["parameters"]}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}


@pytest.mark.parametrize(("choice", "mode"), [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")])
def test_tool_choice_modes(choice: str, mode: str) -> None:
    body = valid_request(chat_request_to_gemini({"messages": [{"role": "user", "content": "x"}], "tools": [TOOL],
                                                 "tool_choice": choice}))
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": mode}}


def test_a_json_schema_response_format_is_asked_for_as_json() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = valid_request(chat_request_to_gemini({"messages": [{"role": "user", "content": "x"}], "response_format": {
        "type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}}))
    assert body["generationConfig"] == {"responseMimeType": "application/json", "responseJsonSchema": schema}


@pytest.mark.parametrize(("extra", "field"), [
    ({"logit_bias": {"1": 2}}, "logit_bias"), ({"made_up": 1}, "made_up"), ({"parallel_tool_calls": False},
                                                                            "parallel_tool_calls"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort"), ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"response_format": {"type": "xml"}}, "response_format"), ({"tools": [{"type": "web_search"}]}, "tools"),
])
def test_what_gemini_cannot_take_is_refused_naming_the_field(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(TranslationError) as caught:
        chat_request_to_gemini({"messages": [{"role": "user", "content": "x"}], **extra})
    assert caught.value.field == field


def test_neutral_values_of_refused_fields_pass() -> None:
    body = chat_request_to_gemini({"messages": [{"role": "user", "content": "x"}], "logprobs": False,
                                   "parallel_tool_calls": True, "store": False, "user": "u1"})
    assert set(body) == {"contents"}


@pytest.mark.parametrize("message", [
    {"role": "tool", "tool_call_id": "nowhere", "content": "x"},  # a result without its call
    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
    {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]},
    {"role": "critic", "content": "x"},
])
def test_messages_gemini_cannot_take_are_refused(message: dict[str, Any]) -> None:
    with pytest.raises(TranslationError) as caught:
        chat_request_to_gemini({"messages": [{"role": "user", "content": "x"}, message]})
    assert caught.value.field == "messages"


# --- Gemini → chat ------------------------------------------------------------------------------

ANSWER = valid_response({
    "candidates": [{"content": {"role": "model", "parts": [{"text": "thinking...", "thought": True},
                                                           {"text": "Hello"}, {"text": " there"}]},
                    "finishReason": "STOP", "index": 0}],
    "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 2, "totalTokenCount": 20,
                      "cachedContentTokenCount": 4, "thoughtsTokenCount": 8, "toolUsePromptTokenCount": 1},
    "modelVersion": "gemini-2.5-flash", "responseId": "r1"})


def test_a_response_becomes_a_chat_completion_without_its_thoughts() -> None:
    chat = gemini_response_to_chat(ANSWER, "fallback", created=1)
    assert chat["id"] == "chatcmpl-r1" and chat["model"] == "gemini-2.5-flash" and chat["created"] == 1
    assert chat["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello there"},
                                "finish_reason": "stop", "logprobs": None}]
    assert chat["usage"] == {"prompt_tokens": 11, "completion_tokens": 10, "total_tokens": 21,
                             "prompt_tokens_details": {"cached_tokens": 4},
                             "completion_tokens_details": {"reasoning_tokens": 8}}


def test_usage_counts_cached_prompt_and_thinking_output() -> None:
    assert usage_from_gemini(ANSWER["usageMetadata"]) == Usage(prompt_tokens=11, completion_tokens=10,
                                                               cached_tokens=4, reasoning_tokens=8)
    assert usage_from_gemini({"promptTokenCount": 3}) == Usage(prompt_tokens=3)
    assert usage_from_gemini(None) is None


def test_function_calls_become_tool_calls() -> None:
    chat = gemini_response_to_chat(valid_response({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"id": "given", "name": "get_weather", "args": {"city": "Rome"}}}]},
        "finishReason": "STOP"}]}), "m")
    message = chat["choices"][0]["message"]
    assert chat["choices"][0]["finish_reason"] == "tool_calls" and message["content"] is None
    assert [(c["id"], c["function"]["arguments"]) for c in message["tool_calls"]] == [
        ("call_0_0", '{"city":"Paris"}'), ("given", '{"city":"Rome"}')]


@pytest.mark.parametrize(("reason", "finish"), [("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
                                                ("RECITATION", "content_filter"), ("OTHER", "stop")])
def test_finish_reasons(reason: str, finish: str) -> None:
    chat = gemini_response_to_chat({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}, "m")
    assert chat["choices"][0]["finish_reason"] == finish


def test_a_blocked_prompt_is_a_content_filter_answer() -> None:
    chat = gemini_response_to_chat(valid_response({"promptFeedback": {"blockReason": "SAFETY"},
                                                   "usageMetadata": {"promptTokenCount": 5}}), "m")
    assert chat["choices"][0]["finish_reason"] == "content_filter" and chat["usage"]["prompt_tokens"] == 5


def test_a_stream_becomes_chat_chunks_with_the_usage_last() -> None:
    translator = GeminiStreamToChat("gemini-2.0-flash", wants_usage=True)
    chunks = [valid_response({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}],
                              "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1}, "responseId": "s"}),
              valid_response({"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]},
                                              "finishReason": "MAX_TOKENS", "index": 0}],
                              "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2,
                                                "thoughtsTokenCount": 3}})]
    out = [c for chunk in chunks for c in translator.feed(chunk)] + translator.finish()
    deltas = [c["choices"][0] for c in out if c["choices"]]
    assert [d["delta"] for d in deltas] == [{"role": "assistant", "content": "Hel"}, {"content": "lo"}, {}]
    assert [d["finish_reason"] for d in deltas] == [None, None, "length"]
    assert out[-1]["choices"] == [] and out[-1]["usage"]["completion_tokens"] == 5
    assert {c["id"] for c in out} == {"chatcmpl-s"} and translator.usage == Usage(5, 5, reasoning_tokens=3)


def test_streamed_function_calls_are_indexed_per_candidate() -> None:
    translator = GeminiStreamToChat("m", wants_usage=False)
    call = {"functionCall": {"name": "f", "args": {}}}
    first = translator.feed({"candidates": [{"content": {"parts": [call]}}]})
    second = translator.feed({"candidates": [{"content": {"parts": [call]}, "finishReason": "STOP"}]})
    indexes = [tc["index"] for c in first + second for tc in c["choices"][0]["delta"].get("tool_calls", ())]
    assert indexes == [0, 1] and second[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert translator.finish() == []


def test_an_error_inside_a_stream_raises() -> None:
    with pytest.raises(UpstreamStreamError) as caught:
        GeminiStreamToChat("m", True).feed({"error": {"code": 500, "message": "boom", "status": "INTERNAL"}})
    assert caught.value.message == "boom" and caught.value.error_type == "INTERNAL"


# --- errors ---------------------------------------------------------------------------------------

GOOGLE_429 = orjson.dumps({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}})


def test_google_errors_in_openai_and_anthropic_shape() -> None:
    assert orjson.loads(gemini_error_to_openai(429, GOOGLE_429)) == {"error": {
        "message": "Quota exceeded", "type": "resource_exhausted", "param": None, "code": "RESOURCE_EXHAUSTED"}}
    assert orjson.loads(gemini_error_to_anthropic(429, GOOGLE_429)) == {"type": "error", "error": {
        "type": "rate_limit_error", "message": "Quota exceeded"}}
    assert gemini_error_to_openai(500, b"not json") is None


def test_gateway_errors_in_googles_shape_keep_their_fields() -> None:
    openai_shaped = GatewayError(400, "invalid_request_error", "bad thing", code="invalid_request").openai_body()
    error = orjson.loads(google_error_from(400, openai_shaped))["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT" and error["message"] == "bad thing"
    assert error["details"][0]["reason"] == "invalid_request"
    assert google_error_from(429, GOOGLE_429) == GOOGLE_429  # already Google's: as it is
    text = orjson.loads(google_error_from(502, b"upstream broke"))["error"]
    assert text["status"] == "UNAVAILABLE" and text["message"] == "upstream broke"


# --- reservations read Gemini's caps -------------------------------------------------------------

def test_the_worst_case_reads_max_output_tokens_and_candidate_count() -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
            "generationConfig": {"maxOutputTokens": 100, "candidateCount": 3}}
    worst = analyse(Api.GENERATE_CONTENT, body, "m")
    assert (worst.cap, worst.generations, worst.output_tokens(100)) == (100, 3, 300)
    assert worst.prompt_tokens >= len("Hi")
    assert with_cap(worst, Api.GENERATE_CONTENT, body, 10) == "generationConfig.maxOutputTokens"
    assert body["generationConfig"] == {"maxOutputTokens": 10, "candidateCount": 3}


def test_a_thinking_budget_beside_the_cap_is_reserved_too() -> None:
    body = {"contents": [], "generationConfig": {"maxOutputTokens": 100, "thinkingConfig": {"thinkingBudget": 500}}}
    assert analyse(Api.GENERATE_CONTENT, body, "m").output_tokens(100) == 600


@pytest.mark.parametrize(("config", "field"), [
    ({"maxOutputTokens": 0}, "generationConfig.maxOutputTokens"), ({"maxOutputTokens": "9"},
                                                                   "generationConfig.maxOutputTokens"),
    ({"candidateCount": 0}, "generationConfig.candidateCount"), ({"candidateCount": True},
                                                                 "generationConfig.candidateCount"),
])
def test_caps_that_would_dodge_the_reservation_are_refused(config: dict[str, Any], field: str) -> None:
    with pytest.raises(GatewayError) as caught:
        analyse(Api.GENERATE_CONTENT, {"contents": [], "generationConfig": config}, "m")
    assert caught.value.status == 400 and caught.value.param == field


def test_a_generation_config_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(GatewayError) as caught:
        analyse(Api.GENERATE_CONTENT, {"contents": [], "generationConfig": [1]}, "m")
    assert caught.value.param == "generationConfig"


def test_the_stream_meter_counts_gemini_output() -> None:
    event = orjson.dumps({"candidates": [{"content": {"parts": [{"text": "héllo"}]}},
                                         {"content": {"parts": [{"functionCall": {"name": "f", "args": {"a": "xy"}}}]}}]})
    assert _output_bytes(event) == len("héllo".encode()) + len("f") + len("xy")
