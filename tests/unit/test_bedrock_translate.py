"""Chat ⇄ Converse translation, both ways, checked against botocore's own service model of
bedrock-runtime (the request shapes it would send, the response shapes it parses); the
embedding bodies; and the worst case read from a Converse body."""

from __future__ import annotations

from typing import Any

import pytest

from tollway.errors import GatewayError
from tollway.pricing import PriceCatalog
from tollway.providers._translate_common import TranslationError, UpstreamStreamError
from tollway.providers.adapters.bedrock_embeddings import embeddings_request, embeddings_response, model_family
from tollway.providers.adapters.bedrock_request import CHAT_TO_CONVERSE, chat_request_to_converse
from tollway.providers.adapters.bedrock_response import (
    ConverseStreamToChat,
    bedrock_error_to_anthropic,
    bedrock_error_to_openai,
    converse_response_to_chat,
    stream_exception,
    usage_from_converse,
)
from tollway.providers.apis import Api
from tollway.proxy.worst_case import analyse, with_cap

botocore_session = pytest.importorskip("botocore.session", reason="botocore is the bedrock extra")
from botocore.validate import ParamValidator  # noqa: E402

SERVICE = botocore_session.get_session().get_service_model("bedrock-runtime")
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "The weather",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
PNG = "data:image/png;base64,iVBORw0KGgo="


def assert_valid_converse(body: dict[str, Any]) -> None:
    """``body`` is a Converse request botocore would accept (its shapes, types and enums)."""
    report = ParamValidator().validate({"modelId": "us.anthropic.claude-3-5-haiku-20241022-v1:0", **body},
                                       SERVICE.operation_model("Converse").input_shape)
    assert not report.has_errors(), report.generate_report()


def test_a_full_chat_request_becomes_a_valid_converse_request() -> None:
    body = chat_request_to_converse({
        "model": "m", "max_completion_tokens": 100, "temperature": 0.2, "top_p": 0.9, "stop": "STOP", "stream": True,
        "stream_options": {"include_usage": True}, "tools": [TOOL], "tool_choice": "required", "user": "u1",
        "messages": [{"role": "system", "content": "Be brief"}, {"role": "developer", "content": "Use tools"},
                     {"role": "user", "content": [{"type": "text", "text": "Look"},
                                                  {"type": "image_url", "image_url": {"url": PNG}}]},
                     {"role": "assistant", "content": "Checking", "tool_calls": [
                         {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                         {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]},
                     {"role": "tool", "tool_call_id": "c1", "content": '{"t": 21}'},
                     {"role": "tool", "tool_call_id": "c2", "content": "sunny"},
                     {"role": "user", "content": "And tomorrow?"}]})
    assert_valid_converse(body)
    assert body["system"] == [{"text": "Be brief"}, {"text": "Use tools"}]
    assert body["inferenceConfig"] == {"maxTokens": 100, "temperature": 0.2, "topP": 0.9, "stopSequences": ["STOP"]}
    assert body["toolConfig"]["toolChoice"] == {"any": {}}
    assert body["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}
    # Both results answer one assistant turn together, then the next user text joins them: roles alternate.
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "c1", "content": [{"json": {"t": 21}}]}},
        {"toolResult": {"toolUseId": "c2", "content": [{"text": "sunny"}]}}, {"text": "And tomorrow?"}]


@pytest.mark.parametrize(("choice", "expected"), [("auto", {"auto": {}}), ("required", {"any": {}}),
                                                  ({"type": "function", "function": {"name": "f"}}, {"tool": {"name": "f"}})])
def test_tool_choices(choice: Any, expected: dict[str, Any]) -> None:
    body = chat_request_to_converse({"messages": [{"role": "user", "content": "hi"}], "tools": [TOOL], "tool_choice": choice})
    assert body["toolConfig"]["toolChoice"] == expected
    assert_valid_converse(body)


def test_tool_choice_none_leaves_the_tools_out_unless_the_history_needs_them() -> None:
    body = chat_request_to_converse({"messages": [{"role": "user", "content": "hi"}], "tools": [TOOL],
                                     "tool_choice": "none"})
    assert "toolConfig" not in body
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "x"}]
    with pytest.raises(TranslationError) as caught:
        chat_request_to_converse({"messages": history, "tools": [TOOL], "tool_choice": "none"})
    assert caught.value.field == "tool_choice"
    with pytest.raises(TranslationError) as caught:  # tool calls in the history, no tools: Converse would refuse
        chat_request_to_converse({"messages": history})
    assert caught.value.field == "tools"


@pytest.mark.parametrize(("field", "value"), [("logit_bias", {"1": 2}), ("n", 2), ("seed", 1), ("frequency_penalty", 1),
                                              ("response_format", {"type": "json_object"}), ("reasoning_effort", "low"),
                                              ("unknown_field", 1)])
def test_fields_converse_cannot_take_are_refused_by_name(field: str, value: Any) -> None:
    with pytest.raises(TranslationError) as caught:
        chat_request_to_converse({"messages": [{"role": "user", "content": "hi"}], field: value})
    assert caught.value.field == field


CLAUDE = "us.anthropic.claude-sonnet-4-20250514-v1:0"


def test_reasoning_effort_is_claudes_thinking_with_max_tokens_above_the_budget() -> None:
    hi = [{"role": "user", "content": "hi"}]
    body = chat_request_to_converse({"messages": hi, "max_tokens": 100, "reasoning_effort": "low"}, CLAUDE)
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert body["inferenceConfig"]["maxTokens"] == 2148
    assert_valid_converse(body)
    roomy = chat_request_to_converse({"messages": hi, "max_tokens": 9000, "reasoning_effort": "medium"}, CLAUDE)
    assert roomy["inferenceConfig"]["maxTokens"] == 9000
    assert "additionalModelRequestFields" not in chat_request_to_converse({"messages": hi, "reasoning_effort": "none"},
                                                                          CLAUDE)


@pytest.mark.parametrize(("extra", "model", "field"), [
    ({}, "amazon.nova-pro-v1:0", "reasoning_effort"),
    ({"reasoning_effort": "extreme"}, CLAUDE, "reasoning_effort"),
    ({"temperature": 0.3}, CLAUDE, "temperature"),
    ({"top_p": 0.5}, CLAUDE, "top_p"),
    ({"tools": [TOOL], "tool_choice": "required"}, CLAUDE, "tool_choice"),
])
def test_thinking_that_claude_cannot_do_is_refused(extra: dict[str, Any], model: str, field: str) -> None:
    with pytest.raises(TranslationError) as caught:
        chat_request_to_converse({"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "low", **extra},
                                 model)
    assert caught.value.field == field


def test_neutral_values_of_refused_fields_pass() -> None:
    body = chat_request_to_converse({"messages": [{"role": "user", "content": "hi"}], "n": 1, "presence_penalty": 0,
                                     "response_format": {"type": "text"}, "logprobs": False})
    assert body == {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}


def test_every_rule_says_why() -> None:
    assert all(rule.reason for rule in CHAT_TO_CONVERSE.values())


@pytest.mark.parametrize(("messages", "field"), [
    ([{"role": "system", "content": "only system"}], "messages"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}], "messages"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}], "messages"),
    ([{"role": "user", "content": [{"type": "input_audio"}]}], "messages"),
    ([{"role": "assistant", "content": ""}], "messages"),
])
def test_messages_converse_cannot_take_are_refused(messages: list[Any], field: str) -> None:
    with pytest.raises(TranslationError) as caught:
        chat_request_to_converse({"messages": messages})
    assert caught.value.field == field


def test_more_than_four_stop_sequences_are_refused() -> None:
    with pytest.raises(TranslationError) as caught:
        chat_request_to_converse({"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]})
    assert caught.value.field == "stop"


# --- Converse → chat ----------------------------------------------------------------------------

def converse_response(**fields: Any) -> dict[str, Any]:
    response = {"output": {"message": {"role": "assistant", "content": [{"text": "Hi"}]}}, "stopReason": "end_turn",
                "usage": {"inputTokens": 10, "outputTokens": 3, "totalTokens": 13}, "metrics": {"latencyMs": 5},
                **fields}
    # The shape botocore parses: every member known to the service model.
    assert set(response) <= set(SERVICE.operation_model("Converse").output_shape.members)
    return response


def test_a_converse_response_becomes_a_chat_completion() -> None:
    chat = converse_response_to_chat(converse_response(), "m", created=1)
    assert chat["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "logprobs": None,
                                "finish_reason": "stop"}]
    assert chat["usage"]["prompt_tokens"] == 10 and chat["usage"]["completion_tokens"] == 3


def test_a_tool_use_becomes_a_tool_call() -> None:
    chat = converse_response_to_chat(converse_response(stopReason="tool_use", output={"message": {
        "role": "assistant", "content": [{"text": "Let me look."}, {"reasoningContent": {"reasoningText": {"text": "x"}}},
                                         {"toolUse": {"toolUseId": "tu1", "name": "get_weather", "input": {"city": "Rome"}}}]}}),
                                     "m")
    message = chat["choices"][0]["message"]
    assert chat["choices"][0]["finish_reason"] == "tool_calls" and message["content"] == "Let me look."
    assert message["tool_calls"] == [{"id": "tu1", "type": "function",
                                      "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]


@pytest.mark.parametrize(("reason", "finish"), [("max_tokens", "length"), ("stop_sequence", "stop"),
                                                ("guardrail_intervened", "content_filter"),
                                                ("content_filtered", "content_filter")])
def test_stop_reasons(reason: str, finish: str) -> None:
    assert converse_response_to_chat(converse_response(stopReason=reason), "m")["choices"][0]["finish_reason"] == finish


def test_usage_counts_cache_reads_and_writes_in_the_prompt() -> None:
    usage = usage_from_converse({"inputTokens": 10, "outputTokens": 3, "cacheReadInputTokens": 100,
                                 "cacheWriteInputTokens": 50})
    assert (usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens, usage.completion_tokens) == (160, 100, 50, 3)
    assert usage_from_converse(None) is None


def test_stream_events_become_chat_chunks_with_usage_last() -> None:
    stream = ConverseStreamToChat("m", wants_usage=True)
    chunks = [*stream.feed("messageStart", {"role": "assistant"}),
              *stream.feed("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
              *stream.feed("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "lo"}}),
              *stream.feed("contentBlockStop", {"contentBlockIndex": 0}),
              *stream.feed("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {
                  "toolUseId": "tu1", "name": "f"}}}),
              *stream.feed("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"a"'}}}),
              *stream.feed("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": ":1}"}}}),
              *stream.feed("messageStop", {"stopReason": "tool_use"}),
              *stream.feed("metadata", {"usage": {"inputTokens": 4, "outputTokens": 7}, "metrics": {"latencyMs": 1}}),
              *stream.finish()]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant"} and "".join(d.get("content", "") for d in deltas) == "Hello"
    calls = [call for d in deltas for call in d.get("tool_calls", ())]
    assert calls[0] == {"index": 0, "id": "tu1", "type": "function", "function": {"name": "f", "arguments": ""}}
    assert "".join(c["function"]["arguments"] for c in calls) == '{"a":1}'
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 7 and chunks[-1]["choices"] == []


def test_a_tool_delta_without_its_start_is_a_stream_error() -> None:
    with pytest.raises(UpstreamStreamError):
        ConverseStreamToChat("m", False).feed("contentBlockDelta", {"contentBlockIndex": 3, "delta": {"toolUse": {
            "input": "{}"}}})


def test_errors_in_each_clients_shape() -> None:
    assert stream_exception("throttlingException", b'{"message": "slow down"}').error_type == "rate_limit_error"
    openai_body = bedrock_error_to_openai(400, b'{"message": "Malformed input request"}')
    assert openai_body is not None and b'"invalid_request_error"' in openai_body and b"Malformed" in openai_body
    anthropic_body = bedrock_error_to_anthropic(403, b'{"Message": "denied"}')
    assert anthropic_body is not None and b'"permission_error"' in anthropic_body
    assert bedrock_error_to_openai(500, b'{"error": {"message": "an OpenAI-shaped error"}}') is None
    assert bedrock_error_to_openai(500, b"not json") is None


# --- embeddings ---------------------------------------------------------------------------------

def test_embedding_bodies_by_model_family() -> None:
    assert embeddings_request({"input": "hi", "dimensions": 512}, "amazon.titan-embed-text-v2:0") == {
        "inputText": "hi", "dimensions": 512}
    assert embeddings_request({"input": ["a", "b"]}, "eu.cohere.embed-multilingual-v3") == {
        "texts": ["a", "b"], "input_type": "search_document", "embedding_types": ["float"]}
    assert model_family("us.amazon.titan-embed-text-v1") == "titan-v1"
    for body, model, field in [({"input": ["a", "b"]}, "amazon.titan-embed-text-v2:0", "input"),
                               ({"input": "a", "dimensions": 300}, "amazon.titan-embed-text-v2:0", "dimensions"),
                               ({"input": [[1, 2]]}, "cohere.embed-english-v3", "input"),
                               ({"input": "a"}, "anthropic.claude-3-haiku-20240307-v1:0", "model"),
                               ({"input": "a", "encoding_format": "int8"}, "cohere.embed-english-v3", "encoding_format")]:
        with pytest.raises(TranslationError) as caught:
            embeddings_request(body, model)
        assert caught.value.field == field


def test_embedding_answers_with_usage_where_the_model_reports_it() -> None:
    titan = embeddings_response({"embedding": [0.5, 0.25], "inputTextTokenCount": 3})
    assert titan is not None and titan[0]["data"][0]["embedding"] == [0.5, 0.25] and titan[1].prompt_tokens == 3
    cohere = embeddings_response({"embeddings": {"float": [[1.0], [2.0]]}, "id": "x"})
    assert cohere is not None and [d["index"] for d in cohere[0]["data"]] == [0, 1] and cohere[1] is None
    assert embeddings_response({"unexpected": 1}) is None


# --- worst case ---------------------------------------------------------------------------------

def test_the_worst_case_of_a_converse_body_is_its_max_tokens() -> None:
    body = chat_request_to_converse({"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 50})
    worst = analyse(Api.CONVERSE, body, "m")
    assert worst.cap == 50 and worst.cap_field == "inferenceConfig.maxTokens" and worst.prompt_tokens >= 400
    with_tools = analyse(Api.CONVERSE, chat_request_to_converse({"messages": [{"role": "user", "content": "x"}],
                                                                 "tools": [TOOL]}), "m")
    assert with_tools.prompt_tokens > 530 and with_tools.cap is None  # Anthropic's tool prompt, at most


def test_strict_writes_the_cap_into_inference_config() -> None:
    body = chat_request_to_converse({"messages": [{"role": "user", "content": "hi"}], "temperature": 1})
    assert with_cap(analyse(Api.CONVERSE, body, "m"), Api.CONVERSE, body, 7) == "inferenceConfig.maxTokens"
    assert body["inferenceConfig"] == {"temperature": 1, "maxTokens": 7}
    assert_valid_converse(body)


def test_a_bad_cap_is_a_400_naming_it() -> None:
    with pytest.raises(GatewayError) as caught:
        analyse(Api.CONVERSE, {"messages": [], "inferenceConfig": {"maxTokens": 0}}, "m")
    assert caught.value.param == "inferenceConfig.maxTokens"


# --- price catalog --------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["us.anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic.claude-3-5-haiku-20241022-v1:0",
                                   "amazon.nova-lite-v1:0", "us.amazon.nova-lite-v1:0", "amazon.titan-embed-text-v2:0"])
def test_bedrock_model_ids_are_priced_from_the_aws_catalog(model: str) -> None:
    price = PriceCatalog().price_for("bedrock", "my-bedrock", model)
    assert price is not None and price.input > 0
