"""Bedrock routes of the mock upstream (bedrock-runtime, and STS for assumed roles):
`POST /model/{modelId}/converse`, `/converse-stream` (AWS event-stream framing),
`/invoke` (Titan and Cohere embeddings), `/count-tokens` (CountTokens of a Converse
request, Anthropic models only), `POST /` with `Action=AssumeRole` (STS), and the
control route `/_mock/bedrock` (GET/POST: `sts_duration_s`, `stream_exception_after`,
`stream_exception`; the answer also lists the access keys STS `issued`; `/_mock/reset`
leaves these as they are).

Every API request must be signed with SigV4 for a key the mock knows
(`mock_bedrock_auth.MOCK_ACCESS_KEY_ID`, or one STS issued), verified as AWS does. Unknown
Converse fields are refused as Bedrock refuses them (ValidationException), so a gateway
that leaves an OpenAI field in a body is caught. Content follows `mock_content`'s rules
(text blocks read like chat messages); a tool is used when `toolChoice` is `any` / `tool`,
or the last user turn asks about the weather. Usage: `inputTokens` leaves out the cached
part (`cacheReadInputTokens`, from the `cached_tokens` setting), as Bedrock does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson
from aiohttp import web

from tollway.providers.adapters.bedrock_eventstream import encode_event, encode_exception
from tollway.testing import mock_content as content
from tollway.testing.mock_bedrock_auth import (
    AuthFailure,
    AwsAccount,
    SignedRequest,
    assume_role_xml,
    sts_error_xml,
    verify,
)
from tollway.testing.mock_http import MockCall, endpoint, send_json, send_sse

EVENT_STREAM = "application/vnd.amazon.eventstream"
_FIELDS = frozenset({"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
                     "additionalModelRequestFields", "promptVariables", "additionalModelResponseFieldPaths",
                     "requestMetadata", "performanceConfig"})
_INFERENCE = frozenset({"maxTokens", "temperature", "topP", "stopSequences"})
_COUNTED = frozenset({"messages", "system", "toolConfig", "additionalModelRequestFields"})  # ConverseTokensRequest


@dataclass
class BedrockMock:
    """The Bedrock part of the mock's state: the AWS account, and stream exceptions to inject."""

    account: AwsAccount
    stream_exception_after: int | None = None  # events sent before an exception message
    stream_exception: str = "throttlingException"

    def to_dict(self) -> dict[str, Any]:
        return {"sts_duration_s": self.account.sts_duration_s, "stream_exception_after": self.stream_exception_after,
                "stream_exception": self.stream_exception, "issued": list(self.account.issued)}


ACCOUNT_KEY: web.AppKey[BedrockMock] = web.AppKey("tollway_mock_bedrock", BedrockMock)


def aws_error(status: int, error_type: str, message: str) -> web.Response:
    """An error as bedrock-runtime answers it: the type in `x-amzn-ErrorType`, `{"message"}`."""
    return web.Response(status=status, body=orjson.dumps({"message": message}), content_type="application/json",
                        headers={"x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"})


def _validation(message: str) -> web.Response:
    return aws_error(400, "ValidationException", message)


def _signed(call: MockCall) -> SignedRequest:
    request = call.request
    return SignedRequest(request.method, request.raw_path,
                         {name.lower(): value for name, value in request.headers.items()}, call.raw)


async def model_call(call: MockCall) -> web.StreamResponse:
    """`POST /model/{modelId}/{operation}`, signed for the service `bedrock`."""
    try:
        verify(_signed(call), call.request.app[ACCOUNT_KEY].account, "bedrock")
    except AuthFailure as failure:
        return aws_error(403, failure.error_type, failure.message)
    model = unquote(call.request.match_info["model"])
    operation = call.request.match_info["operation"]
    if "." not in model:
        return _validation("The provided model identifier is invalid.")
    if call.body_invalid or not isinstance(call.body, dict):
        return aws_error(400, "SerializationException", "Expected a JSON object as the request body")
    if operation == "invoke":
        return await _invoke(call, model, call.body)
    if operation == "count-tokens":
        return await _count_tokens(call, model, call.body)
    problem = _converse_problem(call.body)
    if problem is not None:
        return problem
    answer = _answer(call, model, call.body)
    if operation == "converse":
        return await send_json(call, answer.response())
    if operation == "converse-stream":
        return await send_sse(call, _events(answer, call.request.app[ACCOUNT_KEY]), {"Content-Type": EVENT_STREAM})
    return aws_error(404, "UnknownOperationException", f"unknown operation {operation!r}")


def _converse_problem(body: dict[str, Any]) -> web.Response | None:
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        return _validation(f"Malformed input request: extraneous key [{unknown[0]}] is not permitted, please "
                           "reformat your input and try again.")
    config = body.get("inferenceConfig") or {}
    if not isinstance(config, dict) or set(config) - _INFERENCE:
        return _validation("Malformed input request: inferenceConfig holds an unknown key")
    if "maxTokens" in config and (not isinstance(config["maxTokens"], int) or config["maxTokens"] < 1):
        return _validation("1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to satisfy "
                           "constraint: Member must have value greater than or equal to 1")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _validation("A conversation must start with a user message. Try again with a conversation that "
                           "starts with a user message.")
    return _messages_problem(messages, isinstance(body.get("toolConfig"), dict))


def _messages_problem(messages: list[Any], has_tools: bool) -> web.Response | None:
    expected = "user"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") != expected:
            return _validation("A conversation must alternate between user and assistant roles. Make sure the "
                               f"conversation alternates between user and assistant roles and try again. (messages.{i})")
        blocks = message.get("content")
        if not isinstance(blocks, list) or not blocks:
            return _validation(f"The content field in the Message object at messages.{i} is empty.")
        for block in blocks:
            if not isinstance(block, dict) or len(block) != 1:
                return _validation(f"messages.{i}: a content block holds exactly one member")
            if ("toolUse" in block or "toolResult" in block) and not has_tools:
                return _validation("The toolConfig field must be defined when using toolUse and toolResult content "
                                   "blocks.")
            if "text" in block and not block["text"]:
                return _validation(f"The text field in the ContentBlock object at messages.{i} is blank.")
        expected = "assistant" if expected == "user" else "user"
    return None


def _prompt_tokens(body: dict[str, Any]) -> int:
    turns = [*body["messages"], *([{"content": body["system"]}] if isinstance(body.get("system"), list) else [])]
    return sum(sum(content.text_tokens(block["text"]) for block in turn.get("content") or ()
                   if isinstance(block, dict) and isinstance(block.get("text"), str)) + content.MESSAGE_OVERHEAD_TOKENS
               for turn in turns)


@dataclass(slots=True, frozen=True)
class _Answer:
    number: int
    count: int
    capped: bool
    prompt: int
    cached: int
    tool: dict[str, Any] | None

    def usage(self) -> dict[str, Any]:
        usage = {"inputTokens": self.prompt - self.cached, "outputTokens": self.count,
                 "totalTokens": self.prompt + self.count}
        if self.cached:
            usage["cacheReadInputTokens"] = self.cached
            usage["cacheWriteInputTokens"] = 0
        return usage

    @property
    def stop_reason(self) -> str:
        return "tool_use" if self.tool else "max_tokens" if self.capped else "end_turn"

    def response(self) -> dict[str, Any]:
        block = {"toolUse": self.tool} if self.tool else {"text": content.answer_text(self.count)}
        return {"output": {"message": {"role": "assistant", "content": [block]}}, "stopReason": self.stop_reason,
                "usage": self.usage(), "metrics": {"latencyMs": 1}}


def _answer(call: MockCall, model: str, body: dict[str, Any]) -> _Answer:
    settings = call.state.settings
    config = body.get("inferenceConfig") or {}
    cap = None if settings.ignore_max_tokens else config.get("maxTokens")
    count, capped = content.answer_tokens(cap, settings.completion_tokens)
    prompt = _prompt_tokens(body)
    tool = _tool_use(body, call.state.next_id())
    return _Answer(call.state.next_id(), count, capped, prompt, content.cached_part(prompt, settings.cached_tokens), tool)


def _tool_use(body: dict[str, Any], number: int) -> dict[str, Any] | None:
    config: dict[str, Any] = body["toolConfig"] if isinstance(body.get("toolConfig"), dict) else {}
    specs = [t["toolSpec"] for t in config.get("tools") or () if isinstance(t, dict) and isinstance(t.get("toolSpec"), dict)]
    if not specs:
        return None
    choice = config.get("toolChoice") or {"auto": {}}
    last = body["messages"][-1]
    texts = [b["text"] for b in last.get("content") or () if isinstance(b, dict) and isinstance(b.get("text"), str)]
    asks = last.get("role") == "user" and content.asks_for_weather([{"role": "user", "content": " ".join(texts)}])
    if "auto" in choice and not asks:
        return None
    wanted = (choice.get("tool") or {}).get("name")
    for spec in specs:
        if wanted is None or spec.get("name") == wanted:
            schema = (spec.get("inputSchema") or {}).get("json")
            return {"toolUseId": f"tooluse_mock{number}", "name": spec["name"], "input": content.tool_arguments(schema)}
    return None


def _events(answer: _Answer, bedrock: BedrockMock) -> Iterator[bytes]:
    for index, event in enumerate(_event_payloads(answer)):
        if index == bedrock.stream_exception_after:
            yield encode_exception(bedrock.stream_exception, orjson.dumps({"message": "Too many requests, please "
                                                                                      "wait before trying again."}))
            return
        yield encode_event(*event)


def _event_payloads(answer: _Answer) -> Iterator[tuple[str, bytes]]:
    yield "messageStart", orjson.dumps({"role": "assistant"})
    if answer.tool:
        start = {"toolUse": {"toolUseId": answer.tool["toolUseId"], "name": answer.tool["name"]}}
        yield "contentBlockStart", orjson.dumps({"contentBlockIndex": 0, "start": start})
        arguments = orjson.dumps(answer.tool["input"]).decode()
        for piece in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2:]):  # JSON cut in two
            yield "contentBlockDelta", orjson.dumps({"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}})
    else:
        for word in content.answer_words(answer.count):
            yield "contentBlockDelta", orjson.dumps({"contentBlockIndex": 0, "delta": {"text": word}})
    yield "contentBlockStop", orjson.dumps({"contentBlockIndex": 0})
    yield "messageStop", orjson.dumps({"stopReason": answer.stop_reason})
    yield "metadata", orjson.dumps({"usage": answer.usage(), "metrics": {"latencyMs": 1}})


async def _invoke(call: MockCall, model: str, body: dict[str, Any]) -> web.StreamResponse:
    dims = call.state.settings.embedding_dims
    if "amazon.titan-embed-text" in model:
        if set(body) - {"inputText", "dimensions", "normalize", "embeddingTypes"} or not isinstance(
                body.get("inputText"), str):
            return _validation("Malformed input request: expected inputText, please reformat your input")
        text = body["inputText"]
        vector = content.embedding_vector(text, body.get("dimensions") or dims)
        return await send_json(call, {"embedding": vector, "inputTextTokenCount": content.text_tokens(text)})
    if "cohere.embed" in model:
        texts = body.get("texts")
        allowed = {"texts", "input_type", "truncate", "embedding_types", "output_dimension", "images"}
        if set(body) - allowed or not isinstance(texts, list) or not body.get("input_type"):
            return _validation("Malformed input request: #: required key [input_type] not found, please reformat "
                               "your input")
        vectors = [content.embedding_vector(text, body.get("output_dimension") or dims) for text in texts]
        embeddings: Any = {"float": vectors} if body.get("embedding_types") else vectors
        return await send_json(call, {"id": f"mock-{call.state.next_id()}", "texts": texts, "embeddings": embeddings,
                                      "response_type": "embeddings_by_type" if body.get("embedding_types")
                                      else "embeddings_floats"})
    return _validation("The mock's InvokeModel serves embedding models only (amazon.titan-embed-text-*, "
                       "cohere.embed-*)")


async def _count_tokens(call: MockCall, model: str, body: dict[str, Any]) -> web.StreamResponse:
    """CountTokens of a Converse request, for Anthropic models (as Bedrock serves it): the
    prompt counted as Converse's `inputTokens` would count it, the tools' JSON added."""
    if ".anthropic." not in f".{model}":
        return _validation("The provided model doesn't support counting tokens.")
    converse = (body.get("input") or {}).get("converse") if set(body) == {"input"} else None
    if not isinstance(converse, dict) or set(converse) - _COUNTED:
        return _validation("Malformed input request: input must hold converse with messages, system, toolConfig "
                           "or additionalModelRequestFields")
    problem = _messages_problem(converse.get("messages") or [], isinstance(converse.get("toolConfig"), dict))
    if problem is not None or not converse.get("messages"):
        return problem or _validation("A conversation must start with a user message.")
    tools = content.text_tokens(orjson.dumps(converse["toolConfig"]).decode()) if converse.get("toolConfig") else 0
    return await send_json(call, {"inputTokens": _prompt_tokens(converse) + tools})


async def sts(request: web.Request) -> web.StreamResponse:
    """STS `AssumeRole` (query protocol: a form body, an XML answer), signed for `sts`."""
    bedrock = request.app[ACCOUNT_KEY]
    raw = await request.read()
    form = {name: values[0] for name, values in parse_qs(raw.decode()).items()}
    signed = SignedRequest(request.method, request.raw_path,
                           {name.lower(): value for name, value in request.headers.items()}, raw)
    try:
        verify(signed, bedrock.account, "sts")
    except AuthFailure as failure:
        return web.Response(status=403, text=sts_error_xml(failure.error_type, failure.message), content_type="text/xml")
    if form.get("Action") != "AssumeRole" or not form.get("RoleArn") or not form.get("RoleSessionName"):
        return web.Response(status=400, text=sts_error_xml("ValidationError", "the mock's STS serves AssumeRole only"),
                            content_type="text/xml")
    access_key, identity = bedrock.account.assume_role(form["RoleArn"], form["RoleSessionName"], time.time())
    return web.Response(text=assume_role_xml(access_key, identity, form["RoleArn"], form["RoleSessionName"]),
                        content_type="text/xml")


async def control(request: web.Request) -> web.Response:
    """`GET|POST /_mock/bedrock`: read or change the Bedrock settings."""
    bedrock = request.app[ACCOUNT_KEY]
    if request.method == "POST":
        changes = orjson.loads(await request.read() or b"{}")
        unknown = set(changes) - {"sts_duration_s", "stream_exception_after", "stream_exception"}
        if unknown:
            return web.Response(status=400, text=f"unknown Bedrock settings: {sorted(unknown)}")
        if "sts_duration_s" in changes:
            bedrock.account.sts_duration_s = int(changes["sts_duration_s"])
        if "stream_exception_after" in changes:
            bedrock.stream_exception_after = changes["stream_exception_after"]
        if "stream_exception" in changes:
            bedrock.stream_exception = str(changes["stream_exception"])
    return web.Response(body=orjson.dumps(bedrock.to_dict()), content_type="application/json")


def add_bedrock_routes(app: web.Application) -> None:
    app[ACCOUNT_KEY] = BedrockMock(AwsAccount())
    app.router.add_post("/model/{model}/{operation}", endpoint(model_call, "bedrock"))
    app.router.add_post("/", sts)
    app.router.add_route("*", "/_mock/bedrock", control)
